package queue

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The history of deliveries, kept in JetStream (never in etcd) and bounded by age and
// bytes: the delivered deliveries, retained so that they can be re-sent by selection,
// and one small record per attempt, the attempt log. The journal writes both in
// batches: per flush, one message per endpoint and bucket of event ids (historyBuckets
// of them) holding every record of that bucket, instead of one message per record. The
// buckets let the history of one event be read from 1/16 of its namespace's, and keep
// the server's subject index at 16 subjects per endpoint (a subject per event took
// 80 MB of the dispatcher's heap after 110,000 events, bench a). Releases before layout
// 2 wrote one message per record, on 256 buckets (and before that on a subject per
// event); those are read as they are until they age out.
const (
	DeliveredStream = "HERALD_DELIVERED"
	AttemptsStream  = "HERALD_ATTEMPTS"

	deliveredSubjectPrefix = "herald.done."
	attemptSubjectPrefix   = "herald.att."

	// hdrDeliveredAt is when a retained delivery of the layouts before 2 was delivered.
	hdrDeliveredAt = "Herald-Delivered-At"

	historyBuckets = 16
)

// eventBucket16 maps an event id (any characters, chosen by producers) onto one of the
// 16 subject tokens of the history's batches: one hex digit.
func eventBucket16(eventID string) string {
	sum := sha256.Sum256([]byte(eventID))
	return hex.EncodeToString(sum[:1])[:1]
}

// eventBucket is the token of the 256 buckets records had before layout 2.
func eventBucket(eventID string) string {
	sum := sha256.Sum256([]byte(eventID))
	return hex.EncodeToString(sum[:1])
}

// legacyEventToken is the token records written before the buckets had: one per event.
// They are read until they age out.
func legacyEventToken(eventID string) string {
	sum := sha256.Sum256([]byte(eventID))
	return hex.EncodeToString(sum[:16])
}

// historySubjects are the subjects holding the history q selects: one endpoint's (by
// its UID) or every endpoint's of the namespace, of one event (its batches' bucket, and
// the subjects older records of it are on) or of all.
func historySubjects(prefix string, q HistoryQuery) []string {
	base := prefix + q.Namespace + ".*.*."
	if q.Endpoint.UID != "" {
		base = prefix + q.Endpoint.tokens() + "."
	}
	if q.EventID == "" {
		return []string{base + "*"}
	}
	return []string{base + eventBucket16(q.EventID), base + eventBucket(q.EventID), base + legacyEventToken(q.EventID)}
}

// historySubject is the subject of the batch holding an event's record at an endpoint.
func historySubject(prefix string, ep Endpoint, eventID string) string {
	return prefix + ep.tokens() + "." + eventBucket16(eventID)
}

// historyEndpoint reads the endpoint a history record belongs to from its subject
// (prefix.namespace.name.uid.bucket), which is what Purge removes by.
func historyEndpoint(subject string) (Endpoint, bool) {
	t := strings.Split(subject, ".")
	if len(t) != 6 {
		return Endpoint{}, false
	}
	return endpointOfTokens(t[2], t[3], t[4]), true
}

func (s *jsStore) ensureHistory(ctx context.Context, replicas int) error {
	var err error
	if s.delivered, err = s.historyStream(ctx, replicas, DeliveredStream,
		"Herald deliveries that reached their receiver, retained for replay by selection",
		deliveredSubjectPrefix, s.opts.RetainDeliveredMaxAge, s.opts.RetainDeliveredMaxBytes); err != nil {
		return err
	}
	s.attempts, err = s.historyStream(ctx, replicas, AttemptsStream,
		"Herald attempt log: one record per HTTP attempt (no payloads, no secrets)",
		attemptSubjectPrefix, s.opts.AttemptLogMaxAge, s.opts.AttemptLogMaxBytes)
	return err
}

// historyStream makes one of the two history streams: bounded by age and bytes, oldest
// records dropped first.
func (s *jsStore) historyStream(ctx context.Context, replicas int, name, description, prefix string, maxAge time.Duration, maxBytes int64) (jetstream.Stream, error) {
	st, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: description,
		Subjects:    []string{prefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxAge:      maxAge,
		MaxBytes:    maxBytes,
		Discard:     jetstream.DiscardOld,
		// Batches carry no message id: each is written once, by the replica that made
		// the attempts or the deliveries, so a duplicate window would only cost memory.
		// The smallest there is.
		Duplicates: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("creating stream %s: %w", name, err)
	}
	return st, nil
}

// AttemptRecord is one entry of the attempt log. It holds what the receiver answered,
// never what Herald sent: no payload, no signature, no header that could carry a secret.
type AttemptRecord struct {
	Namespace string `json:"namespace"`
	Endpoint  string `json:"endpoint"`
	// EndpointUID is the UID of the WebhookEndpoint object attempted.
	EndpointUID string    `json:"endpointUid,omitempty"`
	EventID     string    `json:"eventId"`
	EventType   string    `json:"eventType"`
	DeliveryID  string    `json:"deliveryId"`
	Attempt     int       `json:"attempt"`
	Replay      int       `json:"replay,omitempty"`
	Time        time.Time `json:"time"`
	// DurationMicros is how long the attempt took, in microseconds.
	DurationMicros int64 `json:"durationMicros"`
	StatusCode     int   `json:"statusCode,omitempty"`
	// Error is why the attempt failed; empty for a success.
	Error string `json:"error,omitempty"`
	// Headers is a subset of the response headers (see sender.Outcome).
	Headers map[string]string `json:"headers,omitempty"`
	// Body is the start of the response body (at most 4 KiB).
	Body string `json:"body,omitempty"`
	// Final is set on the attempt after which no other followed (delivered or given up).
	Final bool `json:"final,omitempty"`
}

// Failed reports whether the attempt failed.
func (r *AttemptRecord) Failed() bool { return r.Error != "" }

// HistoryWriter hands the history to the store's journal, which writes it in batches
// with the deliveries' settlement (see journal): the delivery workers hand records over
// and go on. A batch whose write fails is counted and logged, never retried: the
// history is a log for people, and a delivery must not wait for it. Every attempt
// handed over is the endpoint's last attempt on its status, whether or not the attempt
// log keeps it (Options.AttemptLog).
type HistoryWriter struct{ j *journal }

// History returns the writer of the history.
func (s *jsStore) History() *HistoryWriter { return &HistoryWriter{j: s.journal} }

// Attempt hands over one attempt record.
func (w *HistoryWriter) Attempt(r *AttemptRecord) { w.j.attempt(r) }

// Delivered retains a delivery that reached its receiver, for replay.
func (w *HistoryWriter) Delivered(d *Delivery, at time.Time) { w.j.retain(d, at) }

// Failed is how many batches of the history could not be written, and the last error.
func (w *HistoryWriter) Failed() (int64, error) {
	w.j.failMu.Lock()
	defer w.j.failMu.Unlock()
	return w.j.failed, w.j.lastErr
}

// Close writes what was handed over so far (and settles what was settled).
func (w *HistoryWriter) Close() { w.j.flushAll() }

// batchMagic starts the body of a history batch of layout 2; records follow, each its
// length (4 bytes, big-endian) and its bytes: an attempt record as JSON, or a retained
// delivery as the time it was delivered (varint, microseconds) and the delivery as
// stored.
var batchMagic = [...]byte{0, 'H', 'B'}

func isBatch(body []byte) bool {
	return len(body) >= len(batchMagic) && [3]byte(body[:3]) == batchMagic
}

// history gathers the records of one endpoint and stream until a flush, per bucket.
type history struct {
	bodies [historyBuckets][]byte
	sealed [][2]string
	full   bool
}

// add appends a record, written by encode at the end of the slice it is given, to its
// bucket's batch, sealing the batch first when it has reached max bytes; it reports
// whether a flush is due for the size.
func (h *history) add(bucket string, max int, encode func([]byte) []byte) bool {
	i := int(hexDigit(bucket[0]))
	b := h.bodies[i]
	if len(b) >= max {
		h.sealed = append(h.sealed, [2]string{bucket, string(b)})
		b = nil
		h.full = true
	}
	if b == nil {
		b = append(make([]byte, 0, 8192), batchMagic[:]...)
	}
	at := len(b)
	b = encode(append(b, 0, 0, 0, 0))
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	h.bodies[i] = b
	return h.full
}

func hexDigit(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}

func (h *history) empty() bool {
	if len(h.sealed) > 0 {
		return false
	}
	for _, b := range h.bodies {
		if len(b) > 0 {
			return false
		}
	}
	return true
}

// take hands over the batches, as (bucket token, body) pairs, and empties h.
func (h *history) take() [][2]string {
	out := h.sealed
	for i, b := range h.bodies {
		if len(b) > 0 {
			out = append(out, [2]string{strconv.FormatUint(uint64(i), 16), string(b)})
			h.bodies[i] = nil
		}
	}
	h.sealed, h.full = nil, false
	return out
}

// records calls fn with each record of a batch body and its index, until fn returns
// false.
func records(body []byte, fn func(i int, rec []byte) bool) error {
	b := body[len(batchMagic):]
	for i := 0; len(b) > 0; i++ {
		if len(b) < 4 {
			return errors.New("malformed history batch")
		}
		n := int(binary.BigEndian.Uint32(b))
		if n > len(b)-4 {
			return errors.New("malformed history batch")
		}
		if !fn(i, b[4:4+n]) {
			return nil
		}
		b = b[4+n:]
	}
	return nil
}

// decodeRetained reads a retained delivery of a batch.
func decodeRetained(rec []byte) (Delivery, time.Time, error) {
	us, k := binary.Varint(rec)
	if k <= 0 {
		return Delivery{}, time.Time{}, errBadDelivery
	}
	d, err := decodeDelivery(rec[k:])
	return d, fromMicro(us), err
}

// Retained is a delivered delivery kept for re-sending.
type Retained struct {
	Delivery
	// Sequence is the stream sequence of the message holding it, Index its place in
	// that message's batch (0 for a message of one delivery, as releases before
	// layout 2 wrote).
	Sequence    uint64
	Index       int
	DeliveredAt time.Time
}

// HistoryQuery selects history records: those of Endpoint when its UID is set,
// otherwise those of every endpoint of Namespace (whose records of deleted endpoints the
// caller tells apart by their UID); of EventID when set; stored since Since when set.
type HistoryQuery struct {
	Namespace string
	Endpoint  Endpoint
	EventID   string
	Since     time.Time
}

// Attempts calls fn for each attempt record selected, oldest first, until fn returns
// false. The records this dispatcher holds for its next batch are written first.
func (s *jsStore) Attempts(ctx context.Context, q HistoryQuery, fn func(*AttemptRecord) bool) error {
	if err := s.journal.sync(ctx); err != nil {
		return err
	}
	return s.scan(ctx, AttemptsStream, historySubjects(attemptSubjectPrefix, q), q.Since,
		func(_ uint64, msg jetstream.Msg) (bool, error) {
			ep, known := historyEndpoint(msg.Subject())
			one := func(raw []byte) bool {
				var r AttemptRecord
				if err := json.Unmarshal(raw, &r); err != nil {
					return true // a record of another version; skip it
				}
				// The subject says whose record it is (records moved from the layout
				// before UIDs carry none in their body).
				if known {
					r.Namespace, r.Endpoint, r.EndpointUID = ep.Namespace, ep.Name, ep.UID
				}
				if q.EventID != "" && r.EventID != q.EventID {
					return true // another event of the bucket
				}
				return fn(&r)
			}
			if !isBatch(msg.Data()) {
				return one(msg.Data()), nil
			}
			goOn := true
			err := records(msg.Data(), func(_ int, rec []byte) bool { goOn = one(rec); return goOn })
			return goOn, err
		})
}

// Delivered calls fn for each retained delivered delivery selected, oldest first,
// until fn returns false. The deliveries this dispatcher holds for its next batch are
// written first.
func (s *jsStore) Delivered(ctx context.Context, q HistoryQuery, fn func(*Retained) bool) error {
	if err := s.journal.sync(ctx); err != nil {
		return err
	}
	return s.scan(ctx, DeliveredStream, historySubjects(deliveredSubjectPrefix, q), q.Since,
		func(seq uint64, msg jetstream.Msg) (bool, error) {
			ep, known := historyEndpoint(msg.Subject())
			one := func(r *Retained) bool {
				if q.EventID != "" && r.EventID != q.EventID {
					return true
				}
				if known {
					r.EndpointUID = ep.UID
				}
				return fn(r)
			}
			if !isBatch(msg.Data()) {
				d, err := parseDelivery(msg.Subject(), msg.Headers(), msg.Data())
				if err != nil {
					return true, nil
				}
				r := Retained{Delivery: d, Sequence: seq}
				if us, err := strconv.ParseInt(first(msg.Headers(), hdrDeliveredAt), 10, 64); err == nil {
					r.DeliveredAt = time.UnixMicro(us)
				}
				return one(&r), nil
			}
			goOn := true
			err := records(msg.Data(), func(i int, rec []byte) bool {
				d, at, err := decodeRetained(rec)
				if err != nil {
					return true
				}
				goOn = one(&Retained{Delivery: d, Sequence: seq, Index: i, DeliveredAt: at})
				return goOn
			})
			return goOn, err
		})
}

// retainedAt reads the retained delivery at index i of the message raw.
func retainedAt(raw *jetstream.RawStreamMsg, i int) (Delivery, error) {
	if !isBatch(raw.Data) {
		return parseDelivery(raw.Subject, raw.Header, raw.Data)
	}
	var d Delivery
	err := ErrGone
	if rerr := records(raw.Data, func(k int, rec []byte) bool {
		if k != i {
			return true
		}
		d, _, err = decodeRetained(rec)
		return false
	}); rerr != nil {
		return d, rerr
	}
	if err == nil {
		d.EndpointUID = subjectUID(raw.Subject)
	}
	return d, err
}

// scan reads the messages of subjects (wildcards allowed), oldest first, through an
// ephemeral ordered consumer: reading changes and locks nothing.
func (s *jsStore) scan(ctx context.Context, stream string, subjects []string, since time.Time, fn func(seq uint64, msg jetstream.Msg) (bool, error)) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := s.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("reading %s: %w", stream, s.storeError(err))
	}
	for ctx.Err() == nil {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return fmt.Errorf("reading %s: %w", stream, s.storeError(err))
		}
		n := 0
		last := false
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			goOn, err := fn(md.Sequence.Stream, msg)
			if err != nil || !goOn {
				return err
			}
			last = md.NumPending == 0
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("reading %s: %w", stream, s.storeError(err))
		}
		if n == 0 || last {
			return nil
		}
	}
	return ctx.Err()
}

// StreamBytes is the size of one of Herald's streams, for benchmarks and sizing.
func (s *jsStore) StreamBytes(ctx context.Context, name string) (uint64, error) {
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("reading stream %s: %w", name, s.storeError(err))
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading stream %s: %w", name, s.storeError(err))
	}
	return info.State.Bytes, nil
}
