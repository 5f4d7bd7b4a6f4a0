package sender

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"
)

// The CloudEvents HTTP protocol binding 1.0, as Herald speaks it to receivers:
//
//	id      the event's id           source  the producer's source, or
//	type    the event's type                 /herald/namespaces/<namespace>
//	time    the producer's timestamp as written (RFC 3339), else created_at
//	datacontenttype  application/json (Herald stores JSON data only)
//	subject, dataschema and the producer's extension attributes, as it sent them
//	traceparent, tracestate  the attempt's W3C trace context (distributed tracing
//	        extension), beside the transport's traceparent header
//
// Binary mode puts them in ce-* headers (values percent-encoded as the binding says)
// and the data in the body; structured mode writes one application/cloudevents+json
// document. Either way the body is what is signed.
const (
	ceSpecVersion       = "1.0"
	mediaCloudEventJSON = "application/cloudevents+json; charset=utf-8"
)

// ceSource is the event's CloudEvents source: the producer's, or Herald's name for the
// namespace it was published in (an event published as Herald JSON may have none).
func ceSource(d *Message) string {
	if d.Source != "" {
		return d.Source
	}
	return "/herald/namespaces/" + d.Namespace
}

// ceTime is the event's time as written by its producer, or Herald's stamp.
func ceTime(d *Message) string {
	if d.CreatedAtText != "" {
		return d.CreatedAtText
	}
	return d.CreatedAt.UTC().Format(time.RFC3339)
}

// structuredCloudEvent writes the structured-mode document with data as its data.
func structuredCloudEvent(b *bytes.Buffer, d *Message, data []byte) {
	b.WriteString(`{"specversion":"1.0","id":`)
	writeJSONString(b, d.EventID)
	b.WriteString(`,"source":`)
	writeJSONString(b, ceSource(d))
	b.WriteString(`,"type":`)
	writeJSONString(b, d.EventType)
	b.WriteString(`,"time":`)
	writeJSONString(b, ceTime(d))
	b.WriteString(`,"datacontenttype":"application/json"`)
	if len(d.Attributes) > 2 {
		// A compact JSON object of the producer's other attributes: its members go in
		// as they are (ingest refused any that would collide with the ones above).
		b.WriteByte(',')
		b.Write(d.Attributes[1 : len(d.Attributes)-1])
	}
	if d.TraceParent != "" {
		b.WriteString(`,"traceparent":`)
		writeJSONString(b, d.TraceParent)
		if d.TraceState != "" {
			b.WriteString(`,"tracestate":`)
			writeJSONString(b, d.TraceState)
		}
	}
	b.WriteString(`,"data":`)
	if len(data) == 0 {
		b.WriteString("null")
	} else {
		b.Write(data)
	}
	b.WriteByte('}')
}

// binaryCloudEventHeaders sets the binary-mode ce-* headers of d.
func binaryCloudEventHeaders(h http.Header, d *Message) {
	h["Ce-Specversion"] = []string{ceSpecVersion}
	h["Ce-Id"] = []string{ceHeaderValue(d.EventID)}
	h["Ce-Source"] = []string{ceHeaderValue(ceSource(d))}
	h["Ce-Type"] = []string{ceHeaderValue(d.EventType)}
	h["Ce-Time"] = []string{ceHeaderValue(ceTime(d))}
	if d.TraceParent != "" {
		h["Ce-Traceparent"] = []string{ceHeaderValue(d.TraceParent)}
		if d.TraceState != "" {
			h["Ce-Tracestate"] = []string{ceHeaderValue(d.TraceState)}
		}
	}
	if len(d.Attributes) > 2 {
		var attrs map[string]json.RawMessage
		if json.Unmarshal(d.Attributes, &attrs) != nil {
			return // stored by ingest as a valid object; nothing else writes it
		}
		for name, raw := range attrs {
			h[http.CanonicalHeaderKey("ce-"+name)] = []string{ceHeaderValue(attributeText(raw))}
		}
	}
}

// attributeText is an attribute's value as a header carries it: a string's content,
// a number's or a boolean's literal.
func attributeText(raw json.RawMessage) string {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return string(raw)
}

// ceHeaderValue percent-encodes what the binding says a header value must not carry as
// is: bytes outside printable ASCII, space, '"' and '%' (section 3.1.3.2).
func ceHeaderValue(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hex = "0123456789ABCDEF"
	out := make([]byte, 0, len(s)+16)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == '%' {
			out = append(out, '%', hex[c>>4], hex[c&15])
		} else {
			out = append(out, c)
		}
	}
	return string(out)
}

// knativeRetryable reports whether a CloudEvents receiver's 4xx answer is worth another
// attempt under the Knative Eventing data-plane contract: 404 (the endpoint may appear),
// 408, 409 (processing in progress) and 429 are; every other 4xx says the event will
// never be accepted.
func knativeRetryable(code int) bool {
	switch code {
	case http.StatusNotFound, http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return true
	}
	return code < 400 || code >= 500
}
