package queue

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// How a delivery is stored. Since layout 2 (see codec.go) a delivery message is its
// body alone: a short binary header of Herald's fields (the event's id, type, times,
// trace context, delivery id, attempt, retry time) followed by the event's data exactly
// as the producer sent it, and one NATS header, the message id the stream deduplicates
// on. The releases before wrote each field as a NATS header of its own (hdrEventID and
// the rest, below): fourteen headers the server scanned on every write, a third of the
// cost of storing a delivery (BenchmarkPublish_*). Both are read; only layout 2 is
// written. The body is never decoded or re-encoded as JSON between ingest and the
// receiver.
const (
	hdrEventID     = "Herald-Event-Id"
	hdrEventType   = "Herald-Event-Type"
	hdrEventSource = "Herald-Event-Source"
	hdrEventTime   = "Herald-Event-Time"
	// hdrEventTimeText is the producer's timestamp as written, when it sent one.
	hdrEventTimeText = "Herald-Event-Time-Text"
	// hdrTraceParent and hdrTraceState are the event's W3C trace context.
	hdrTraceParent = "Herald-Traceparent"
	hdrTraceState  = "Herald-Tracestate"
	hdrDeliveryID  = "Herald-Delivery-Id"
	hdrNamespace   = "Herald-Namespace"
	hdrEndpoint    = "Herald-Endpoint"
	hdrAttempt     = "Herald-Attempt"
	hdrNotBefore   = "Herald-Not-Before"
	hdrAcceptedAt  = "Herald-Accepted-At"
	hdrReplay      = "Herald-Replay"

	// Dead-letter headers, describing the last attempt (both layouts).
	hdrDeadReason = "Herald-Dead-Reason"
	hdrDeadStatus = "Herald-Dead-Status"
	hdrDeadError  = "Herald-Dead-Error"
	hdrDeadAt     = "Herald-Dead-At"
)

// Delivery is one event on its way to one endpoint.
type Delivery struct {
	Namespace string
	Endpoint  string
	// EndpointUID is the UID of the WebhookEndpoint object the delivery belongs to. It
	// is stored in the subject (see Endpoint), not in a header.
	EndpointUID string

	EventID     string
	EventType   string
	EventSource string
	CreatedAt   time.Time
	// CreatedAtText is the producer's timestamp as written (empty when Herald stamped
	// the event); receivers get it byte for byte.
	CreatedAtText string
	// TraceParent and TraceState are the event's W3C trace context (empty when it has
	// none), continued by every attempt.
	TraceParent, TraceState string
	// Attributes are the producer's other CloudEvents attributes (subject, dataschema,
	// extensions) as a compact JSON object; nil when it sent none.
	Attributes []byte
	Data       []byte

	// DeliveryID is stable for the (event, endpoint) pair across attempts and replays.
	DeliveryID string
	// Attempt is the 1-based number of the next HTTP attempt.
	Attempt int
	// NotBefore delays the attempt (retry wait); zero means now.
	NotBefore time.Time
	// AcceptedAt is when ingest accepted the event, for ingest-to-delivery latency.
	AcceptedAt time.Time
	// Replay counts how often the delivery was replayed from the dead letters; each
	// replay starts its schedule again and is a new message for de-duplication.
	Replay int
}

// DeadLetter is a delivery that was given up on, with why.
type DeadLetter struct {
	Delivery
	Sequence   uint64
	Reason     string
	StatusCode int
	Error      string
	At         time.Time
	// Attempted is set when the delivery is given up on after a failed attempt (its
	// retries exhausted), as opposed to without one (the limits of a held endpoint): the
	// attempt is counted as failed with it. It is not stored.
	Attempted bool
}

// DeliveryID derives the delivery id of an event for an endpoint. Deriving it (instead of
// drawing a random one) makes a retried ingest of the same event publish the same message,
// which the stream's duplicate window then stores once.
func DeliveryID(namespace, eventID, endpoint string) string {
	h := sha256.New()
	h.Write([]byte(namespace))
	h.Write([]byte{0})
	h.Write([]byte(eventID))
	h.Write([]byte{0})
	h.Write([]byte(endpoint))
	var sum [sha256.Size]byte
	return "dlv_" + hex.EncodeToString(h.Sum(sum[:0])[:12])
}

// msgID is the JetStream de-duplication id of one attempt of a delivery: a retry is a new
// message, so the attempt is part of it.
func (d *Delivery) msgID() string {
	if d.Replay > 0 {
		return d.DeliveryID + "/r" + strconv.Itoa(d.Replay) + "/" + strconv.Itoa(d.Attempt)
	}
	return d.DeliveryID + "/" + strconv.Itoa(d.Attempt)
}

// toMsg is the message storing d on subject (layout 2).
func (d *Delivery) toMsg(subject string) *nats.Msg {
	return &nats.Msg{Subject: subject, Header: nats.Header{nats.MsgIdHdr: []string{d.msgID()}}, Data: d.encode(nil)}
}

func first(h nats.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

var errNotADelivery = errors.New("message is not a Herald delivery")

// parseDelivery reads a delivery stored on subject (whose last token is its endpoint's
// UID; none in the layout before UIDs), in either layout.
func parseDelivery(subject string, h nats.Header, data []byte) (Delivery, error) {
	if _, v1 := h[hdrEventID]; v1 {
		return parseHeaderDelivery(subject, h, data)
	}
	d, err := decodeDelivery(data)
	if err != nil {
		return d, err
	}
	d.EndpointUID = subjectUID(subject)
	return d, nil
}

// parseHeaderDelivery reads a delivery of the layouts before 2: Herald's fields in NATS
// headers, the event's data as the body.
func parseHeaderDelivery(subject string, h nats.Header, data []byte) (Delivery, error) {
	d := Delivery{
		Namespace:     first(h, hdrNamespace),
		Endpoint:      first(h, hdrEndpoint),
		EndpointUID:   subjectUID(subject),
		EventID:       first(h, hdrEventID),
		EventType:     first(h, hdrEventType),
		EventSource:   first(h, hdrEventSource),
		CreatedAtText: first(h, hdrEventTimeText),
		TraceParent:   first(h, hdrTraceParent),
		TraceState:    first(h, hdrTraceState),
		DeliveryID:    first(h, hdrDeliveryID),
		Data:          data,
	}
	if d.Namespace == "" || d.Endpoint == "" || d.EventID == "" || d.DeliveryID == "" {
		return d, errNotADelivery
	}
	var err error
	if d.CreatedAt, err = time.Parse(time.RFC3339Nano, first(h, hdrEventTime)); err != nil {
		return d, fmt.Errorf("delivery %s: event time: %w", d.DeliveryID, err)
	}
	if d.Attempt, err = strconv.Atoi(first(h, hdrAttempt)); err != nil || d.Attempt < 1 {
		return d, fmt.Errorf("delivery %s: attempt %q is not a positive number", d.DeliveryID, first(h, hdrAttempt))
	}
	if v := first(h, hdrNotBefore); v != "" {
		us, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return d, fmt.Errorf("delivery %s: not-before %q: %w", d.DeliveryID, v, err)
		}
		d.NotBefore = time.UnixMicro(us)
	}
	if v := first(h, hdrReplay); v != "" {
		d.Replay, _ = strconv.Atoi(v)
	}
	if v := first(h, hdrAcceptedAt); v != "" {
		if us, err := strconv.ParseInt(v, 10, 64); err == nil {
			d.AcceptedAt = time.UnixMicro(us)
		}
	}
	return d, nil
}

func (dl *DeadLetter) toMsg() *nats.Msg {
	m := dl.Delivery.toMsg(DeadLetterSubject(dl.Ref()))
	m.Header[hdrDeadReason] = []string{dl.Reason}
	if dl.StatusCode != 0 {
		m.Header[hdrDeadStatus] = []string{strconv.Itoa(dl.StatusCode)}
	}
	if dl.Error != "" {
		m.Header[hdrDeadError] = []string{dl.Error}
	}
	m.Header[hdrDeadAt] = []string{dl.At.UTC().Format(time.RFC3339Nano)}
	// A dead letter is stored once per attempt that gave up, whichever replica wrote it.
	m.Header[nats.MsgIdHdr] = []string{"dead/" + dl.msgID()}
	return m
}

func parseDeadLetter(seq uint64, subject string, h nats.Header, data []byte) (DeadLetter, error) {
	d, err := parseDelivery(subject, h, data)
	if err != nil {
		return DeadLetter{}, err
	}
	dl := DeadLetter{Delivery: d, Sequence: seq, Reason: first(h, hdrDeadReason), Error: first(h, hdrDeadError)}
	if v := first(h, hdrDeadStatus); v != "" {
		dl.StatusCode, _ = strconv.Atoi(v)
	}
	dl.At, _ = time.Parse(time.RFC3339Nano, first(h, hdrDeadAt))
	return dl, nil
}
