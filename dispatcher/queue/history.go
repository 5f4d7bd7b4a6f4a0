package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The history of deliveries, kept in JetStream (never in etcd) and bounded by age and
// bytes: the delivered deliveries, retained so that they can be re-sent by selection,
// and one small record per attempt, the attempt log. Both use one subject per endpoint
// and bucket of event ids (256 buckets), so that the history of one event is read from
// 1/256 of its namespace's, and the server indexes at most 256 subjects per endpoint
// instead of one per event: with a subject per event, that index took 80 MB of the
// dispatcher's heap after 110,000 events (bench a) and grew with retention.
const (
	DeliveredStream = "HERALD_DELIVERED"
	AttemptsStream  = "HERALD_ATTEMPTS"

	deliveredSubjectPrefix = "herald.done."
	attemptSubjectPrefix   = "herald.att."

	hdrDeliveredAt = "Herald-Delivered-At"
)

// eventBucket maps an event id (any characters, chosen by producers) onto one of 256
// subject tokens.
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
// its UID) or every endpoint's of the namespace, of one event (the bucket's subject, and
// the per-event subject of older records) or of all.
func historySubjects(prefix string, q HistoryQuery) []string {
	base := prefix + q.Namespace + ".*.*."
	if q.Endpoint.UID != "" {
		base = prefix + q.Endpoint.tokens() + "."
	}
	if q.EventID == "" {
		return []string{base + "*"}
	}
	return []string{base + eventBucket(q.EventID), base + legacyEventToken(q.EventID)}
}

// historySubject is the subject a record of an event at an endpoint is written to.
func historySubject(prefix string, ep Endpoint, eventID string) string {
	return prefix + ep.Namespace + "." + subjectToken(ep.Name) + "." + ep.UID + "." + eventBucket(eventID)
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

func (s *Store) ensureHistory(ctx context.Context, replicas int) error {
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
func (s *Store) historyStream(ctx context.Context, replicas int, name, description, prefix string, maxAge time.Duration, maxBytes int64) (jetstream.Stream, error) {
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
		// Records carry no message id: each is written once, by the replica that made
		// the attempt or the delivery (see Delivered), so a duplicate window would only
		// cost memory. The smallest there is.
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

// HistoryWriter publishes the history without waiting for the store: the delivery
// workers hand records over and go on, the acknowledgements are collected by one
// goroutine. A record whose publish fails is counted and logged, never retried: the
// history is a log for people, and a delivery must not wait for it.
type HistoryWriter struct {
	s       *Store
	futures chan jetstream.PubAckFuture
	done    chan struct{}
	// closing guards futures: records handed over after Close are dropped.
	closing sync.RWMutex
	closed  bool
	mu      sync.Mutex
	failed  int64
	lastErr error
}

// History returns the writer of the history. Close stops it.
func (s *Store) History() *HistoryWriter {
	w := &HistoryWriter{s: s, futures: make(chan jetstream.PubAckFuture, 4096), done: make(chan struct{})}
	go w.collect()
	return w
}

func (w *HistoryWriter) collect() {
	defer close(w.done)
	for f := range w.futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			w.fail(err)
		}
	}
}

func (w *HistoryWriter) fail(err error) {
	w.mu.Lock()
	w.failed++
	first := w.lastErr == nil
	w.lastErr = err
	w.mu.Unlock()
	if first {
		w.s.opts.Log.Error(err, "writing delivery history; the attempt log and retention miss records while this lasts")
	}
}

// Failed is how many records could not be written, and the last error.
func (w *HistoryWriter) Failed() (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed, w.lastErr
}

func (w *HistoryWriter) publish(m *nats.Msg) {
	w.closing.RLock()
	defer w.closing.RUnlock()
	if w.closed {
		return
	}
	f, err := w.s.js.PublishMsgAsync(m)
	if err != nil {
		w.fail(err)
		return
	}
	w.futures <- f
}

// Attempt writes one attempt record.
func (w *HistoryWriter) Attempt(r *AttemptRecord) {
	data, err := json.Marshal(r)
	if err != nil {
		w.fail(err)
		return
	}
	ep := Endpoint{Namespace: r.Namespace, Name: r.Endpoint, UID: r.EndpointUID}
	w.publish(&nats.Msg{Subject: historySubject(attemptSubjectPrefix, ep, r.EventID), Data: data})
}

// Delivered retains a delivery that reached its receiver.
func (w *HistoryWriter) Delivered(d *Delivery, at time.Time) {
	m := d.toMsg(historySubject(deliveredSubjectPrefix, d.Ref(), d.EventID))
	m.Header[hdrDeliveredAt] = []string{strconv.FormatInt(at.UnixMicro(), 10)}
	// No message id: the server would remember each one for the duplicate window
	// (≈200 B per delivery, 780,000 of them at 6,500 deliveries/s over two minutes),
	// and a delivery retained twice (delivered twice, at least once) is re-sent by a
	// replay once anyway: replays publish with the delivery's id.
	delete(m.Header, nats.MsgIdHdr)
	w.publish(m)
}

// Close waits for the records handed over so far; later ones are dropped.
func (w *HistoryWriter) Close() {
	w.closing.Lock()
	if !w.closed {
		w.closed = true
		close(w.futures)
	}
	w.closing.Unlock()
	<-w.done
}

// Retained is a delivered delivery kept for re-sending.
type Retained struct {
	Delivery
	Sequence    uint64
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
// false.
func (s *Store) Attempts(ctx context.Context, q HistoryQuery, fn func(*AttemptRecord) bool) error {
	return s.scan(ctx, AttemptsStream, historySubjects(attemptSubjectPrefix, q), q.Since,
		func(_ uint64, msg jetstream.Msg) (bool, error) {
			var r AttemptRecord
			if err := json.Unmarshal(msg.Data(), &r); err != nil {
				return true, nil // a record of another version; skip it
			}
			// The subject says whose record it is (records moved from the layout
			// before UIDs carry none in their body).
			if ep, ok := historyEndpoint(msg.Subject()); ok {
				r.Namespace, r.Endpoint, r.EndpointUID = ep.Namespace, ep.Name, ep.UID
			}
			if q.EventID != "" && r.EventID != q.EventID {
				return true, nil // another event of the bucket
			}
			return fn(&r), nil
		})
}

// Delivered calls fn for each retained delivered delivery selected, oldest first,
// until fn returns false.
func (s *Store) Delivered(ctx context.Context, q HistoryQuery, fn func(*Retained) bool) error {
	return s.scan(ctx, DeliveredStream, historySubjects(deliveredSubjectPrefix, q), q.Since,
		func(seq uint64, msg jetstream.Msg) (bool, error) {
			d, err := parseDelivery(msg.Subject(), msg.Headers(), msg.Data())
			if err != nil || (q.EventID != "" && d.EventID != q.EventID) {
				return true, nil
			}
			if ep, ok := historyEndpoint(msg.Subject()); ok {
				d.EndpointUID = ep.UID
			}
			r := Retained{Delivery: d, Sequence: seq}
			if us, err := strconv.ParseInt(first(msg.Headers(), hdrDeliveredAt), 10, 64); err == nil {
				r.DeliveredAt = time.UnixMicro(us)
			}
			return fn(&r), nil
		})
}

// scan reads the messages of subjects (wildcards allowed), oldest first, through an
// ephemeral ordered consumer: reading changes and locks nothing.
func (s *Store) scan(ctx context.Context, stream string, subjects []string, since time.Time, fn func(seq uint64, msg jetstream.Msg) (bool, error)) error {
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
func (s *Store) StreamBytes(ctx context.Context, name string) (uint64, error) {
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
