package ingest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"time"
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

// Result is what the engine did with one event.
type Result struct {
	// ID is the event's id (the generated one if the producer sent none).
	ID string `json:"id"`
	// Matched is the number of endpoints the event was routed to.
	Matched int `json:"matched"`
	// Duplicate is true when this id was already accepted within the dedupe window;
	// Matched is then the first acceptance's and nothing new is delivered.
	Duplicate bool `json:"duplicate"`
}

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

// Crockford's base32 alphabet: no I, L, O, U, so ids survive being read aloud or
// retyped, and it sorts in the same order as the bytes it encodes.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewID returns "evt_" followed by a 26-character ULID: 48 bits of Unix milliseconds
// then 80 bits from crypto/rand, in Crockford base32. Ids sort by creation time
// (to the millisecond) and two ids collide only if they are made in the same
// millisecond and draw the same 80 random bits (a chance of about n²/2⁸¹ for n ids
// in one millisecond), so they are unique across dispatcher replicas without
// coordination.
func NewID(now time.Time) string {
	var b [16]byte
	ms := uint64(now.UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	// crypto/rand.Read never fails on supported platforms (it panics instead).
	_, _ = rand.Read(b[6:])

	var out [4 + 26]byte
	copy(out[:], "evt_")
	// 128 bits into 26 characters of 5 bits: the first character carries only the
	// top 3 bits, as in the ULID spec.
	hi := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
	lo := uint64(b[8])<<56 | uint64(b[9])<<48 | uint64(b[10])<<40 | uint64(b[11])<<32 |
		uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15])
	for i := 25; i >= 0; i-- {
		out[4+i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
