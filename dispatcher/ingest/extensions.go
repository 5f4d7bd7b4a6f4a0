package ingest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// The attributes of a CloudEvent that Herald maps to its own fields (or, for data and
// the media type, that make up the payload). Every other attribute of a producer's
// CloudEvent (subject, dataschema and its extensions) is carried to the receivers of
// endpoints that speak CloudEvents, unchanged.
var ceMapped = map[string]bool{
	"specversion": true, "id": true, "source": true, "type": true, "time": true,
	"datacontenttype": true, "data": true, "data_base64": true,
	"traceparent": true, "tracestate": true,
}

// Bounds on the carried attributes: they travel in the stored delivery's headers and in
// the receivers' request headers, where a few kilobytes are plenty.
const (
	maxCarriedAttributes    = 32
	maxAttributeNameLength  = 20
	maxAttributeValueLength = 1024
)

// structuredAttributes returns the carried attributes of a structured CloudEvent as a
// compact JSON object in name order, nil when it has none. A value is a string, a
// number or a boolean (the JSON forms of every CloudEvents type); null means absent.
func structuredAttributes(m map[string]json.RawMessage) (json.RawMessage, *apiError) {
	var names []string
	for k, v := range m {
		if !ceMapped[k] && string(v) != "null" {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	slices.Sort(names)
	if err := checkAttributeCount(names); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, name := range names {
		if err := checkAttributeName(name, name); err != nil {
			return nil, err
		}
		raw := bytes.TrimSpace(m[name])
		switch {
		case len(raw) == 0:
		case raw[0] == '"':
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return nil, badEvent(name, "%s must be a string, a number or a boolean", name)
			}
			if err := checkAttributeValue(s, name); err != nil {
				return nil, err
			}
		case raw[0] == '{' || raw[0] == '[':
			return nil, badEvent(name, "CloudEvents attribute %s must be a string, a number or a boolean", name)
		default:
			if len(raw) > maxAttributeValueLength {
				return nil, badEvent(name, "%s is longer than %d characters", name, maxAttributeValueLength)
			}
		}
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(name)
		b.Write(kb)
		b.WriteByte(':')
		if err := json.Compact(&b, raw); err != nil {
			return nil, badEvent(name, "%s is not a valid JSON value", name)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// binaryAttributes returns the carried attributes of a binary-mode CloudEvent (ce-*
// headers, percent-decoded) as a compact JSON object of strings in name order, nil when
// it has none.
func binaryAttributes(h http.Header) (json.RawMessage, *apiError) {
	var names []string
	for k := range h {
		if len(k) > 3 && strings.EqualFold(k[:3], "ce-") {
			if name := strings.ToLower(k[3:]); !ceMapped[name] {
				names = append(names, k)
			}
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	if err := checkAttributeCount(names); err != nil {
		return nil, err
	}
	values := make(map[string]string, len(names))
	order := make([]string, 0, len(names))
	for _, k := range names {
		name := strings.ToLower(k[3:])
		field := "ce-" + name
		if err := checkAttributeName(name, field); err != nil {
			return nil, err
		}
		v, err := url.PathUnescape(h.Get(k))
		if err != nil {
			return nil, badEvent(field, "header %s is not validly percent-encoded", field)
		}
		if aerr := checkAttributeValue(v, field); aerr != nil {
			return nil, aerr
		}
		if _, dup := values[name]; !dup {
			order = append(order, name)
		}
		values[name] = v
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, name := range order {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(name)
		vb, _ := json.Marshal(values[name])
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func checkAttributeCount(names []string) *apiError {
	if len(names) > maxCarriedAttributes {
		return badEvent("", "the CloudEvent has %d attributes beyond the required ones; at most %d are accepted", len(names), maxCarriedAttributes)
	}
	return nil
}

// checkAttributeName applies the CloudEvents naming rule (lowercase ASCII letters and
// digits) and its recommended length.
func checkAttributeName(name, field string) *apiError {
	if name == "" || len(name) > maxAttributeNameLength {
		return badEvent(field, "CloudEvents attribute name %q must be 1 to %d characters long", truncate(name), maxAttributeNameLength)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return badEvent(field, "CloudEvents attribute name %q may only contain lowercase letters a-z and digits", truncate(name))
		}
	}
	return nil
}

func checkAttributeValue(v, field string) *apiError {
	if len(v) > maxAttributeValueLength {
		return badEvent(field, "%s is %d characters long; at most %d are allowed", field, len(v), maxAttributeValueLength)
	}
	if !utf8.ValidString(v) {
		return badEvent(field, "%s is not valid UTF-8", field)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return badEvent(field, "%s must not contain control characters", field)
		}
	}
	return nil
}
