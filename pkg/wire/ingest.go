package wire

import (
	"crypto/rand"
	"encoding/json"
	"time"
)

// Event is one event as a producer publishes it in Herald's JSON form (the ingest API
// also takes CloudEvents, structured and binary).
type Event struct {
	// ID is what receivers and the dispatcher deduplicate on: a repeated id within the
	// dedupe window (24 h by default) is accepted once and answers as the first time,
	// so a publish can always be retried under the same id. Empty lets the dispatcher
	// generate one (NewEventID), which makes a retry a second event.
	ID string `json:"id,omitempty"`
	// Type is what subscriptions match on: 1 to 256 characters of [A-Za-z0-9._-]; types
	// starting with "herald." are Herald's own.
	Type string `json:"type"`
	// Source optionally names the producer, e.g. a service name.
	Source string `json:"source,omitempty"`
	// CreatedAt is the producer's timestamp, delivered as written; the zero value lets
	// the dispatcher stamp the time it received the event.
	CreatedAt time.Time `json:"created_at,omitzero"`
	// Data is the payload, any JSON value. Receivers get it byte for byte.
	Data json.RawMessage `json:"data"`
}

// PublishResult is the 202 answer to one event, and one entry of a batch's answer.
type PublishResult struct {
	// ID is the event's id (the generated one if the producer sent none).
	ID string `json:"id"`
	// Matched is the number of endpoints the event was routed to.
	Matched int `json:"matched"`
	// Duplicate is true when this id was already accepted within the dedupe window;
	// Matched is then the first acceptance's and nothing new is delivered.
	Duplicate bool `json:"duplicate"`
}

// BatchRequest is the body of RouteEventsBatch: at most the dispatcher's
// --max-batch-events (100 by default) events, validated together (one invalid event
// refuses the whole batch).
type BatchRequest struct {
	Events []Event `json:"events"`
}

// BatchResult is the 202 answer to a batch: one result per event, in input order.
type BatchResult struct {
	Results []PublishResult `json:"results"`
}

// Crockford's base32 alphabet: no I, L, O, U, so ids survive being read aloud or
// retyped, and it sorts in the same order as the bytes it encodes.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewEventID returns "evt_" followed by a 26-character ULID: 48 bits of Unix
// milliseconds then 80 bits from crypto/rand, in Crockford base32. Ids sort by creation
// time (to the millisecond) and two ids collide only if they are made in the same
// millisecond and draw the same 80 random bits (a chance of about n²/2⁸¹ for n ids in
// one millisecond), so they are unique across dispatcher replicas and producers without
// coordination. The dispatcher gives one to an event published without an id; the
// client gives one to every event before its first attempt, so retries repeat it.
func NewEventID(now time.Time) string {
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
