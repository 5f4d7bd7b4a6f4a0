package wire

// Error codes of the JSON error body of every dispatcher HTTP API (ingest and the
// endpoint API). They are part of the API: clients may branch on them, so they only ever
// get added to.
const (
	CodeInvalidJSON          = "invalid_json"
	CodeInvalidEvent         = "invalid_event"
	CodeInvalidRequest       = "invalid_request"
	CodeTooManyEvents        = "too_many_events"
	CodeUnauthenticated      = "unauthenticated"
	CodeForbidden            = "forbidden"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodePayloadTooLarge      = "payload_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeQueueFull            = "queue_full"
	CodeTooManyRequests      = "too_many_requests"
	CodeRequestTimeout       = "request_timeout"
	CodeUnavailable          = "unavailable"
	CodeInternal             = "internal"
	CodeConflict             = "conflict"
	// CodeUnknownEventType (422): the namespace declares WebhookEventTypes and not this
	// one.
	CodeUnknownEventType = "unknown_event_type"
	// CodeSchemaViolation (422): the event's data does not validate against its type's
	// schema; Pointer, Rule and SchemaPath say where and why.
	CodeSchemaViolation = "schema_violation"
)

// ErrorResponse is the body of every non-2xx answer:
//
//	{"error": {"code": "invalid_event", "message": "event 3: type is required", "field": "type", "index": 3}}
type ErrorResponse struct {
	Error Error `json:"error"`
}

// Error says what was wrong with a request.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the offending event attribute ("type", "created_at", "data", ...),
	// header ("ce-id", "Content-Type"), path parameter ("namespace") or request field
	// ("limit", "since").
	Field string `json:"field,omitempty"`
	// Index is the position of the offending event in a batch.
	Index *int `json:"index,omitempty"`
	// Offset locates a JSON syntax error: the offending byte is the Offset-th byte of
	// the request body, counting from 1 (encoding/json's SyntaxError.Offset).
	Offset *int64 `json:"offset,omitempty"`
	// Pointer, with schema_violation, is the JSON pointer (RFC 6901) of the failing
	// value within the event's data ("" for the data itself, "/amount").
	Pointer string `json:"pointer,omitempty"`
	// Rule, with schema_violation, is the schema keyword the value breaks ("minimum",
	// "required", "type", ...), and SchemaPath where that keyword is in the event
	// type's schema ("#/properties/amount/minimum").
	Rule       string `json:"rule,omitempty"`
	SchemaPath string `json:"schemaPath,omitempty"`
}
