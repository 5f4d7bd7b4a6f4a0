package ingest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/herald-dev/herald/internal/routing"
	"github.com/herald-dev/herald/internal/tracing"
	"github.com/herald-dev/herald/pkg/wire"
)

// Limits on event attributes. Ids and types travel in delivery headers and in the
// signed string of some schemes, hence their strict alphabets. Subscription filters are
// judged against the same limits, so they are declared with the filters.
const (
	maxIDLen     = routing.MaxEventIDLength
	maxTypeLen   = routing.MaxEventTypeLength
	maxSourceLen = routing.MaxEventSourceLength
)

// Media types the ingest API reads.
const (
	mediaJSON            = "application/json"
	mediaCloudEvent      = "application/cloudevents+json"
	mediaCloudEventBatch = "application/cloudevents-batch+json"
)

// decoder turns request bodies into validated Events.
type decoder struct {
	now      func() time.Time
	maxBatch int
}

// single decodes the body of POST .../events. mediaType is the request's Content-Type
// without parameters, lowercased.
func (d *decoder) single(mediaType string, h http.Header, body []byte) (Event, *apiError) {
	switch {
	case mediaType == mediaCloudEvent:
		m, err := decodeObject(body, true)
		if err != nil {
			return Event{}, err
		}
		return d.cloudEvent(m)
	case h.Get("Ce-Specversion") != "":
		// Binary mode: the body is the data, with the data's own media type.
		return d.binaryCloudEvent(mediaType, h, body)
	case mediaType == mediaJSON:
		m, err := decodeObject(body, true)
		if err != nil {
			return Event{}, err
		}
		return d.herald(m)
	default:
		return Event{}, unsupported("Content-Type",
			"Content-Type %q is not accepted here; send %s (Herald event), %s (CloudEvent, structured mode) or JSON data with ce-* headers (CloudEvent, binary mode)",
			mediaType, mediaJSON, mediaCloudEvent)
	}
}

// batch decodes the body of POST .../events:batch: for application/json either
// {"events": [...]} or a bare array of Herald events, for
// application/cloudevents-batch+json an array of structured CloudEvents. Every event
// is validated before any is returned, so one bad event refuses the whole batch.
func (d *decoder) batch(mediaType string, h http.Header, body []byte) ([]Event, *apiError) {
	var (
		parse func(map[string]json.RawMessage) (Event, *apiError)
		array = true
	)
	switch mediaType {
	case mediaJSON:
		if h.Get("Ce-Specversion") != "" {
			return nil, &apiError{status: http.StatusBadRequest, body: wire.Error{
				Code: wire.CodeInvalidRequest, Field: "ce-specversion",
				Message: "binary-mode CloudEvents carry one event; POST them to .../events, or send a batch as " + mediaCloudEventBatch,
			}}
		}
		parse = d.herald
		trimmed := bytes.TrimLeft(body, " \t\r\n")
		array = len(trimmed) > 0 && trimmed[0] == '['
	case mediaCloudEventBatch:
		parse = d.cloudEvent
	default:
		return nil, unsupported("Content-Type",
			"Content-Type %q is not accepted here; send %s (Herald events) or %s (CloudEvents)",
			mediaType, mediaJSON, mediaCloudEventBatch)
	}
	objs, err := decodeBatch(body, array)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, badEvent("events", "the batch holds no events")
	}
	if len(objs) > d.maxBatch {
		return nil, &apiError{status: http.StatusBadRequest, body: wire.Error{
			Code: wire.CodeTooManyEvents, Field: "events",
			Message: fmt.Sprintf("the batch holds %d events; at most %d are accepted per request", len(objs), d.maxBatch),
		}}
	}
	events := make([]Event, len(objs))
	for i, m := range objs {
		if m == nil { // the JSON literal null
			return nil, badEvent("", "an event must be a JSON object").inBatch(i)
		}
		if events[i], err = parse(m); err != nil {
			return nil, err.inBatch(i)
		}
	}
	return events, nil
}

// decodeBatch decodes a batch body, an array of event objects or {"events": [...]},
// in one pass. Only when that fails on a type (an element that is not an object) does
// it decode again, element by element, to say which one.
func decodeBatch(body []byte, array bool) ([]map[string]json.RawMessage, *apiError) {
	const wantArray = "a JSON array of events"
	const wantEnvelope = "a JSON object {\"events\": [...]} or a JSON array of events"
	var (
		objs []map[string]json.RawMessage
		env  struct {
			Events []map[string]json.RawMessage `json:"events"`
		}
		err *apiError
	)
	if array {
		err = decodeJSON(body, &objs, wantArray)
	} else if err = decodeJSON(body, &env, wantEnvelope); err == nil {
		objs = env.Events
	}
	if err == nil || err.body.Code != wire.CodeInvalidRequest {
		return objs, err
	}
	var raws []json.RawMessage
	if array {
		_ = json.Unmarshal(body, &raws)
	} else {
		var rawEnv struct {
			Events []json.RawMessage `json:"events"`
		}
		_ = json.Unmarshal(body, &rawEnv)
		raws = rawEnv.Events
	}
	for i, raw := range raws {
		if _, oerr := decodeObject(raw, false); oerr != nil {
			return nil, oerr.inBatch(i)
		}
	}
	return nil, err
}

// herald validates a Herald JSON event: {id?, type, data, created_at?, source?}.
// Unknown attributes are refused so that a typo ("create_at") is not silently
// ignored; accepting more later breaks nobody, the reverse would.
func (d *decoder) herald(m map[string]json.RawMessage) (Event, *apiError) {
	if k := firstUnknown(m); k != "" {
		return Event{}, badEvent(k, "unknown attribute %q; a Herald event has id, type, data, created_at and source", truncate(k))
	}
	var e Event
	var err *apiError
	if e.Type, err = requiredString(m, "type"); err != nil {
		return Event{}, err
	}
	if err = checkType(e.Type, "type"); err != nil {
		return Event{}, err
	}
	data, ok := m["data"]
	if !ok {
		return Event{}, badEvent("data", "data is required (any JSON value)")
	}
	e.Data, e.DataContentType = data, mediaJSON
	id, present, err := optionalString(m, "id")
	if err != nil {
		return Event{}, err
	}
	if present {
		if err = checkID(id, "id"); err != nil {
			return Event{}, err
		}
		e.ID = id
	} else {
		e.ID = wire.NewEventID(d.now())
	}
	if e.CreatedAt, e.CreatedAtText, err = d.timestamp(m, "created_at"); err != nil {
		return Event{}, err
	}
	if e.Source, _, err = optionalString(m, "source"); err != nil {
		return Event{}, err
	}
	if err = checkSource(e.Source, "source", false); err != nil {
		return Event{}, err
	}
	return e, nil
}

// cloudEvent validates a CloudEvents 1.0 event in JSON (structured) format. Extension
// attributes are allowed, as the spec requires; those of the distributed-tracing
// extension (traceparent, tracestate) become the event's trace context, the others
// (and subject, dataschema) are carried to CloudEvents receivers as they came.
func (d *decoder) cloudEvent(m map[string]json.RawMessage) (Event, *apiError) {
	sv, err := requiredString(m, "specversion")
	if err != nil {
		return Event{}, err
	}
	if sv != "1.0" {
		return Event{}, badEvent("specversion", "specversion %q is not supported; use \"1.0\"", truncate(sv))
	}
	var e Event
	if e.ID, err = requiredString(m, "id"); err != nil {
		return Event{}, err
	}
	if err = checkID(e.ID, "id"); err != nil {
		return Event{}, err
	}
	if e.Source, err = requiredString(m, "source"); err != nil {
		return Event{}, err
	}
	if err = checkSource(e.Source, "source", true); err != nil {
		return Event{}, err
	}
	if e.Type, err = requiredString(m, "type"); err != nil {
		return Event{}, err
	}
	if err = checkType(e.Type, "type"); err != nil {
		return Event{}, err
	}
	for _, name := range [...]string{"subject", "dataschema"} {
		if _, _, err = optionalString(m, name); err != nil {
			return Event{}, err
		}
	}
	if _, ok := m["traceparent"]; ok {
		tp, _, err := optionalString(m, "traceparent")
		if err != nil {
			return Event{}, err
		}
		ts, _, err := optionalString(m, "tracestate")
		if err != nil {
			return Event{}, err
		}
		e.TraceParent, e.TraceState = tracing.Parse(tp, ts)
	}
	if e.CreatedAt, e.CreatedAtText, err = d.timestamp(m, "time"); err != nil {
		return Event{}, err
	}
	if e.Attributes, err = structuredAttributes(m); err != nil {
		return Event{}, err
	}
	ct, present, err := optionalString(m, "datacontenttype")
	if err != nil {
		return Event{}, err
	}
	if !present {
		// The JSON event format says a data member without datacontenttype is JSON.
		ct = mediaJSON
	}
	e.DataContentType = ct

	data, hasData := m["data"]
	b64, hasB64 := m["data_base64"]
	switch {
	case hasData && hasB64:
		return Event{}, badEvent("data_base64", "data and data_base64 are mutually exclusive")
	case hasData:
		// Whatever datacontenttype says, the data member is already a JSON value (a
		// string for text), so it is kept verbatim.
		e.Data = data
	case hasB64:
		if !isJSONMediaType(ct) {
			return Event{}, unsupported("datacontenttype",
				"data_base64 with datacontenttype %q is not supported: Herald delivers JSON data only", truncate(ct))
		}
		var s string
		if jerr := json.Unmarshal(b64, &s); jerr != nil {
			return Event{}, badEvent("data_base64", "data_base64 must be a string")
		}
		raw, derr := base64.StdEncoding.DecodeString(s)
		if derr != nil {
			return Event{}, badEvent("data_base64", "data_base64 is not valid base64")
		}
		if !json.Valid(raw) {
			return Event{}, badEvent("data_base64", "data_base64 does not decode to valid JSON, which datacontenttype %q promises", truncate(ct))
		}
		e.Data = raw
	default:
		return Event{}, badEvent("data", "data (or data_base64) is required")
	}
	return e, nil
}

// binaryCloudEvent reads a CloudEvent in HTTP binary mode: attributes in ce-* headers
// (percent-encoded, as the HTTP binding says), data as the body. Only JSON data is
// accepted, so that what is stored is always a JSON value delivered byte-for-byte.
func (d *decoder) binaryCloudEvent(mediaType string, h http.Header, body []byte) (Event, *apiError) {
	attr := func(name string, required bool) (string, *apiError) {
		v := h.Get("Ce-" + name)
		if v == "" {
			if required {
				return "", badEvent("ce-"+name, "header ce-%s is required for a binary-mode CloudEvent", name)
			}
			return "", nil
		}
		dec, err := url.PathUnescape(v)
		if err != nil {
			return "", badEvent("ce-"+name, "header ce-%s is not validly percent-encoded", name)
		}
		return dec, nil
	}
	sv, err := attr("specversion", true)
	if err != nil {
		return Event{}, err
	}
	if sv != "1.0" {
		return Event{}, badEvent("ce-specversion", "ce-specversion %q is not supported; use \"1.0\"", truncate(sv))
	}
	var e Event
	if e.ID, err = attr("id", true); err != nil {
		return Event{}, err
	}
	if err = checkID(e.ID, "ce-id"); err != nil {
		return Event{}, err
	}
	if e.Source, err = attr("source", true); err != nil {
		return Event{}, err
	}
	if err = checkSource(e.Source, "ce-source", true); err != nil {
		return Event{}, err
	}
	if e.Type, err = attr("type", true); err != nil {
		return Event{}, err
	}
	if err = checkType(e.Type, "ce-type"); err != nil {
		return Event{}, err
	}
	// Looked up by its canonical key first: attr builds the key, which costs an
	// allocation on every event, and most events carry no trace context.
	if _, ok := h["Ce-Traceparent"]; ok {
		tp, err := attr("traceparent", false)
		if err != nil {
			return Event{}, err
		}
		state, err := attr("tracestate", false)
		if err != nil {
			return Event{}, err
		}
		e.TraceParent, e.TraceState = tracing.Parse(tp, state)
	}
	ts, err := attr("time", false)
	if err != nil {
		return Event{}, err
	}
	if e.CreatedAt, err = parseTime(ts, "ce-time"); err != nil {
		return Event{}, err
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = d.received()
	} else {
		e.CreatedAtText = ts
	}
	if e.Attributes, err = binaryAttributes(h); err != nil {
		return Event{}, err
	}
	if !isJSONMediaType(mediaType) {
		return Event{}, unsupported("Content-Type",
			"binary-mode CloudEvent data of type %q is not supported: Herald delivers JSON data only (application/json or */*+json)", truncate(mediaType))
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return Event{}, badEvent("data", "the body (the event's data) is empty")
	}
	if !json.Valid(body) {
		return Event{}, syntaxError(body)
	}
	e.Data = body
	e.DataContentType = h.Get("Content-Type")
	return e, nil
}

// decodeObject decodes one event object. top says whether raw is the whole request
// body, in which case syntax errors are reported with their offset; batch elements
// were already checked for syntax with the whole body.
func decodeObject(raw []byte, top bool) (map[string]json.RawMessage, *apiError) {
	var m map[string]json.RawMessage
	if top {
		if err := decodeJSON(raw, &m, "a JSON object"); err != nil {
			return nil, err
		}
	} else if err := json.Unmarshal(raw, &m); err != nil {
		return nil, badEvent("", "an event must be a JSON object")
	}
	if m == nil { // the JSON literal null
		return nil, badEvent("", "an event must be a JSON object")
	}
	return m, nil
}

// decodeJSON unmarshals a whole request body, turning encoding/json's errors into
// answers that say where the problem is.
func decodeJSON(body []byte, v any, want string) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return invalidJSON(0, "the request body is empty; expected %s", want)
	}
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return invalidJSON(syn.Offset, "invalid JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		ae := invalidJSON(typ.Offset, "expected %s, found a JSON %s", want, typ.Value)
		ae.body.Code = wire.CodeInvalidRequest
		ae.body.Field = typ.Field
		return ae
	}
	return invalidJSON(0, "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// syntaxError describes why body, known to be invalid JSON, is invalid. Only called on
// the error path, so it may decode again to find the offset.
func syntaxError(body []byte) *apiError {
	var v any
	return decodeJSON(body, &v, "JSON data")
}

func requiredString(m map[string]json.RawMessage, name string) (string, *apiError) {
	s, present, err := optionalString(m, name)
	if err != nil {
		return "", err
	}
	if !present || s == "" {
		return "", badEvent(name, "%s is required", name)
	}
	return s, nil
}

// optionalString reads a string attribute. JSON null counts as absent.
func optionalString(m map[string]json.RawMessage, name string) (string, bool, *apiError) {
	raw, ok := m[name]
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	// Fast path: the raw value was validated by the JSON decoder, so a quoted value
	// without escapes is the string itself.
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, badEvent(name, "%s must be a string", name)
	}
	return s, true, nil
}

// timestamp reads the producer's timestamp field: the time, and the text as sent (empty
// when absent, and the receipt time stamped instead).
func (d *decoder) timestamp(m map[string]json.RawMessage, name string) (time.Time, string, *apiError) {
	s, present, err := optionalString(m, name)
	if err != nil {
		return time.Time{}, "", err
	}
	if !present {
		return d.received(), "", nil
	}
	t, err := parseTime(s, name)
	if err != nil {
		return time.Time{}, "", err
	}
	if t.IsZero() { // "" was sent
		return time.Time{}, "", badEvent(name, "%s must be an RFC 3339 timestamp such as \"2026-01-02T15:04:05Z\"", name)
	}
	return t, s, nil
}

// received is the timestamp Herald stamps on an event that has none: UTC, whole
// seconds, as the reference documents write created_at.
func (d *decoder) received() time.Time { return d.now().UTC().Truncate(time.Second) }

// parseTime parses an RFC 3339 timestamp; "" gives the zero time.
func parseTime(s, field string) (time.Time, *apiError) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badEvent(field, "%s %q is not an RFC 3339 timestamp such as \"2026-01-02T15:04:05Z\"", field, truncate(s))
	}
	return t.UTC(), nil
}

func checkType(s, field string) *apiError {
	if len(s) > maxTypeLen {
		return badEvent(field, "%s is %d characters long; at most %d are allowed", field, len(s), maxTypeLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return badEvent(field, "%s %q may only contain letters, digits, '.', '_' and '-'", field, truncate(s))
		}
	}
	return nil
}

// checkID allows printable ASCII without spaces: ids go into HTTP headers and signed
// strings, where anything else would need escaping a receiver may get wrong.
func checkID(s, field string) *apiError {
	if s == "" {
		return badEvent(field, "%s must not be empty", field)
	}
	if len(s) > maxIDLen {
		return badEvent(field, "%s is %d characters long; at most %d are allowed", field, len(s), maxIDLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return badEvent(field, "%s may only contain printable ASCII characters without spaces", field)
		}
	}
	return nil
}

func checkSource(s, field string, required bool) *apiError {
	if required && s == "" {
		return badEvent(field, "%s is required", field)
	}
	if len(s) > maxSourceLen {
		return badEvent(field, "%s is %d characters long; at most %d are allowed", field, len(s), maxSourceLen)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return badEvent(field, "%s must not contain control characters", field)
		}
	}
	return nil
}

// isJSONMediaType reports whether a media type (parameters allowed) is JSON:
// application/json, text/json or any */*+json.
func isJSONMediaType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == mediaJSON || mt == "text/json" || (strings.HasSuffix(mt, "+json") && strings.Contains(mt, "/"))
}

// firstUnknown returns the alphabetically first attribute a Herald event does not have,
// or "". Alphabetical so that the answer does not depend on map order.
func firstUnknown(m map[string]json.RawMessage) string {
	var unknown []string
	for k := range m {
		switch k {
		case "id", "type", "data", "created_at", "source":
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return ""
	}
	return slices.Min(unknown)
}

// truncate keeps echoed producer input short in error messages.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
