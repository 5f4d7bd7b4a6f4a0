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

// Headers of a delivery message. The body of the message is the event's data exactly as
// the producer sent it; everything else travels in headers so that the body is never
// decoded or re-encoded between ingest and the receiver.
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

	// Dead-letter headers, describing the last attempt.
	hdrDeadReason = "Herald-Dead-Reason"
	hdrDeadStatus = "Herald-Dead-Status"
	hdrDeadError  = "Herald-Dead-Error"
	hdrDeadAt     = "Herald-Dead-At"
)

// hdrAttributes are a CloudEvent's carried attributes (Delivery.Attributes), a compact
// JSON object.
const hdrAttributes = "Herald-Event-Attributes"

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

func (d *Delivery) toMsg(subject string) *nats.Msg {
	h := make(nats.Header, 12)
	h[hdrEventID] = []string{d.EventID}
	h[hdrEventType] = []string{d.EventType}
	if d.EventSource != "" {
		h[hdrEventSource] = []string{d.EventSource}
	}
	h[hdrEventTime] = []string{d.CreatedAt.UTC().Format(time.RFC3339Nano)}
	if d.CreatedAtText != "" {
		h[hdrEventTimeText] = []string{d.CreatedAtText}
	}
	if d.TraceParent != "" {
		h[hdrTraceParent] = []string{d.TraceParent}
		if d.TraceState != "" {
			h[hdrTraceState] = []string{d.TraceState}
		}
	}
	if len(d.Attributes) > 0 {
		h[hdrAttributes] = []string{string(d.Attributes)}
	}
	h[hdrDeliveryID] = []string{d.DeliveryID}
	h[hdrNamespace] = []string{d.Namespace}
	h[hdrEndpoint] = []string{d.Endpoint}
	h[hdrAttempt] = []string{strconv.Itoa(d.Attempt)}
	if !d.NotBefore.IsZero() {
		// Microseconds: milliseconds would truncate a wait by up to 1ms, and a retry could
		// then go out before its schedule said.
		h[hdrNotBefore] = []string{strconv.FormatInt(d.NotBefore.UnixMicro(), 10)}
	}
	if !d.AcceptedAt.IsZero() {
		h[hdrAcceptedAt] = []string{strconv.FormatInt(d.AcceptedAt.UnixMicro(), 10)}
	}
	if d.Replay > 0 {
		h[hdrReplay] = []string{strconv.Itoa(d.Replay)}
	}
	h[nats.MsgIdHdr] = []string{d.msgID()}
	return &nats.Msg{Subject: subject, Header: h, Data: d.Data}
}

func first(h nats.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

var errNotADelivery = errors.New("message is not a Herald delivery")

// parseDelivery reads a delivery stored on subject (whose last token is its endpoint's
// UID; none in the layout before UIDs).
func parseDelivery(subject string, h nats.Header, data []byte) (Delivery, error) {
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
	if v := first(h, hdrAttributes); v != "" {
		d.Attributes = []byte(v)
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
