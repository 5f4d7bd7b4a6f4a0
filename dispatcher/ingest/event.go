package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/herald-dev/herald/pkg/wire"
)

// Event is one validated event, in the form the engine stores and routes it. Every
// input form (Herald JSON, CloudEvents structured, binary and batch) ends up here.
type Event struct {
	// ID is the producer's id, or "evt_" + a ULID when the producer sent none. The
	// engine deduplicates on it.
	ID string
	// Type is what subscriptions match on: 1 to 256 characters of [A-Za-z0-9._-].
	Type string
	// Source is the producer's source URI-reference (CloudEvents), or whatever the
	// producer sent as "source" in Herald JSON; it may be empty for Herald JSON.
	Source string
	// CreatedAt is the producer's timestamp (created_at or CloudEvents time) in UTC,
	// or the time ingest received the event, in whole seconds, when the producer sent
	// none.
	CreatedAt time.Time
	// CreatedAtText is the producer's timestamp exactly as written, delivered byte for
	// byte; empty when ingest stamped the event (receivers then get CreatedAt written
	// as the reference documents write it: 2024-01-15T10:30:00Z).
	CreatedAtText string
	// Data is the payload exactly as the producer wrote it (whitespace included). It is
	// always one valid JSON value: non-JSON data is refused with 415 rather than
	// re-encoded, so what a receiver gets is byte-for-byte what was published.
	Data json.RawMessage
	// DataContentType is the media type of Data: "application/json" for Herald JSON,
	// the CloudEvents datacontenttype (or the binary-mode Content-Type) otherwise.
	DataContentType string
	// TraceParent and TraceState are the producer's W3C trace context: the CloudEvents
	// distributed-tracing extension's attributes, else the request's traceparent and
	// tracestate headers. Stored with the event and sent on every attempt; empty when
	// the producer sent none (or an invalid one, which the W3C says to ignore).
	TraceParent, TraceState string
	// Attributes are a CloudEvent's other attributes (subject, dataschema, its
	// extensions) as a JSON object of strings, numbers and booleans in name order, nil
	// when it has none (and for Herald JSON events). Endpoints that speak CloudEvents
	// send them on.
	Attributes json.RawMessage
}

// Result is what the engine did with one event: the answer the ingest API sends for
// it (one per event of a batch, in order).
type Result = wire.PublishResult

// Acceptor stores events durably and routes them. Accept returns only once the events
// are stored, with one Result per event in the same order; the handler answers 202
// after that and not before.
//
// A batch is not atomic: when Accept fails part-way, some events may have been
// stored. Producers retry the whole batch, which is safe because ids deduplicate.
type Acceptor interface {
	Accept(ctx context.Context, namespace string, events []Event) ([]Result, error)
}

// Errors an Acceptor returns (wrapped or not) to get a specific answer. Any other
// error becomes 500 with no details for the producer.
var (
	// ErrQueueFull means the queue is at its limit: 429 with Retry-After.
	ErrQueueFull = errors.New("queue is full")
	// ErrUnavailable means storage cannot be reached right now: 503 with Retry-After.
	ErrUnavailable = errors.New("event storage is unavailable")
)
