package outcome

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
)

// OperationalEvent is one of Herald's own events (herald.*), about one endpoint. Its data
// follows the built-in type's documented schema (internal/eventschema).
type OperationalEvent struct {
	// ID is stable for one occurrence (a disablement, a dead-letter batch), so that
	// publishing it twice delivers it once.
	ID   string
	Type string
	Data json.RawMessage
	At   time.Time
}

// OperationalPublisher publishes an operational event into a namespace's route like a
// producer's event, except that it is never routed to the endpoint it is about.
type OperationalPublisher interface {
	PublishOperational(ctx context.Context, namespace, about string, e OperationalEvent) error
}

// Operational turns what the tracker observes into Herald's operational events and
// publishes them, asynchronously (a delivery worker never waits for the store) and
// within bounds:
//
//   - each transition is published by the replica that made it (the tracker's
//     compare-and-set decides), once;
//   - dead letters are aggregated per endpoint: the first is published at once, those
//     after it within the interval in one event with their count (per replica);
//   - herald.endpoint.recovered is published at most once per endpoint per interval;
//   - nothing loops: deliveries of operational events never cause operational events
//     (their dead letters and recoveries are not reported), and an event is never
//     delivered to the endpoint it is about. The transitions that remain (disabled,
//     enabled, replay completed) each need a person's act (a re-enable, a replay) before
//     they can happen again, so an alert endpoint failing to receive alerts produces at
//     most one herald.endpoint.disabled about itself, to the other alert endpoints;
//   - at most queueSize events wait to be published; beyond that they are dropped and
//     counted in the log (the Kubernetes Events and the status carry the same news).
type Operational struct {
	pub      OperationalPublisher
	interval time.Duration
	log      logr.Logger
	now      func() time.Time
	queue    chan queued
	// Published, when set, hears of every event published (metrics).
	published func(namespace, eventType string)

	mu        sync.Mutex
	dead      map[delivery.Key]*deadBatch
	lastDead  map[delivery.Key]time.Time
	recovered map[delivery.Key]time.Time
	dropped   int
}

type queued struct {
	key delivery.Key
	ev  OperationalEvent
}

type deadBatch struct {
	count        int
	since, until time.Time
	events       []deadLetterRef
}

type deadLetterRef struct {
	EventID        string `json:"eventId"`
	EventType      string `json:"eventType"`
	Attempts       int    `json:"attempts"`
	Reason         string `json:"reason"`
	LastStatusCode int    `json:"lastStatusCode,omitempty"`
	LastError      string `json:"lastError,omitempty"`
}

const (
	queueSize = 1024
	// maxListed dead letters are named in one herald.delivery.dead_lettered; count has
	// them all.
	maxListed = 10
)

// NewOperational returns a publisher of operational events aggregating over interval
// (0: the default of status.operationalEventsInterval, package config). Run it.
func NewOperational(pub OperationalPublisher, interval time.Duration, published func(namespace, eventType string), log logr.Logger) *Operational {
	s := config.Status{OperationalEventsInterval: interval}
	s.SetDefaults()
	interval = s.OperationalEventsInterval
	return &Operational{
		pub: pub, interval: interval, log: log, now: time.Now, queue: make(chan queued, queueSize), published: published,
		dead: map[delivery.Key]*deadBatch{}, lastDead: map[delivery.Key]time.Time{}, recovered: map[delivery.Key]time.Time{},
	}
}

// SetOperational makes the tracker report its transitions as operational events.
func (t *Tracker) SetOperational(o *Operational) { t.ops = o }

// Run publishes queued events and flushes the dead-letter batches until ctx ends.
func (o *Operational) Run(ctx context.Context) error {
	tick := time.NewTicker(max(o.interval/4, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			o.flush(false)
		case q := <-o.queue:
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := o.pub.PublishOperational(pctx, q.key.Namespace, q.key.Name, q.ev)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					o.log.Error(err, "publishing an operational event", "type", q.ev.Type, "endpoint", q.key.String())
				}
				continue
			}
			if o.published != nil {
				o.published(q.key.Namespace, q.ev.Type)
			}
		}
	}
}

// isOperational reports whether a delivery carries an operational event: what happens
// to it never causes another.
func isOperational(d *queue.Delivery) bool {
	return d != nil && heraldv1.IsOperationalEventType(d.EventType)
}

func (o *Operational) emit(k delivery.Key, typ, id string, at time.Time, data map[string]any) {
	data["namespace"], data["endpoint"] = k.Namespace, k.Name
	raw, err := json.Marshal(data)
	if err != nil {
		o.log.Error(err, "encoding an operational event", "type", typ)
		return
	}
	select {
	case o.queue <- queued{k, OperationalEvent{ID: id, Type: typ, Data: raw, At: at}}:
	default:
		o.mu.Lock()
		o.dropped++
		n := o.dropped
		o.mu.Unlock()
		o.log.Info("operational event dropped: too many waiting to be published", "type", typ, "endpoint", k.String(), "droppedSoFar", n)
	}
}

// eventID is stable for one occurrence: the endpoint, what happened and when (or which
// replay), hashed to a short id of the alphabet event ids allow.
func eventID(k delivery.Key, what string, at time.Time) string {
	return occurrenceID(k, what, strconv.FormatInt(at.UnixNano(), 10))
}

func occurrenceID(k delivery.Key, what, which string) string {
	sum := sha256.Sum256([]byte(k.Namespace + "/" + k.Name + "/" + what + "/" + which))
	return "hop_" + hex.EncodeToString(sum[:16])
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (o *Operational) endpointDisabled(k delivery.Key, st State) {
	if o == nil {
		return
	}
	at := st.DisabledAt
	if at.IsZero() {
		at = o.now()
	}
	o.emit(k, heraldv1.EventTypeEndpointDisabled, eventID(k, "disabled", at), at, map[string]any{
		"reason": st.DisabledReason, "message": st.DisabledMessage,
		"consecutiveFailures": st.ConsecutiveFailures, "disabledAt": stamp(at),
	})
}

func (o *Operational) endpointEnabled(k delivery.Key, cause string) {
	if o == nil {
		return
	}
	at := o.now()
	o.emit(k, heraldv1.EventTypeEndpointEnabled, eventID(k, "enabled", at), at, map[string]any{
		"cause": cause, "enabledAt": stamp(at),
	})
}

func (o *Operational) endpointRecovered(k delivery.Key, failed int32) {
	if o == nil {
		return
	}
	at := o.now()
	o.mu.Lock()
	if last, ok := o.recovered[k]; ok && at.Sub(last) < o.interval {
		o.mu.Unlock()
		return
	}
	o.recovered[k] = at
	o.mu.Unlock()
	o.emit(k, heraldv1.EventTypeEndpointRecovered, eventID(k, "recovered", at), at, map[string]any{
		"failedAttempts": failed, "recoveredAt": stamp(at),
	})
}

func (o *Operational) deadLettered(k delivery.Key, dl *queue.DeadLetter) {
	if o == nil {
		return
	}
	at := o.now()
	ref := deadLetterRef{EventID: dl.EventID, EventType: dl.EventType, Attempts: dl.Attempt, Reason: dl.Reason,
		LastStatusCode: dl.StatusCode, LastError: truncate(dl.Error, 200)}
	o.mu.Lock()
	b := o.dead[k]
	if b == nil {
		b = &deadBatch{since: at}
		o.dead[k] = b
	}
	b.count++
	b.until = at
	if len(b.events) < maxListed {
		b.events = append(b.events, ref)
	}
	// The first dead letter after a quiet interval goes at once; the rest wait for the
	// flush.
	last, sent := o.lastDead[k]
	now := !sent || at.Sub(last) >= o.interval
	o.mu.Unlock()
	if now {
		o.flushOne(k, true)
	}
}

// flush publishes the dead-letter batches whose interval is over (all when force).
func (o *Operational) flush(force bool) {
	o.mu.Lock()
	keys := make([]delivery.Key, 0, len(o.dead))
	for k := range o.dead {
		keys = append(keys, k)
	}
	o.mu.Unlock()
	for _, k := range keys {
		o.flushOne(k, force)
	}
}

func (o *Operational) flushOne(k delivery.Key, force bool) {
	at := o.now()
	o.mu.Lock()
	b := o.dead[k]
	if b == nil || (!force && at.Sub(o.lastDead[k]) < o.interval) {
		o.mu.Unlock()
		return
	}
	delete(o.dead, k)
	o.lastDead[k] = at
	o.mu.Unlock()
	o.emit(k, heraldv1.EventTypeDeliveryDeadLettered, eventID(k, "dead", b.since), at, map[string]any{
		"count": b.count, "since": stamp(b.since), "until": stamp(b.until), "events": b.events,
	})
}

func (o *Operational) replayEnded(k delivery.Key, p heraldv1.ReplayStatus) {
	if o == nil {
		return
	}
	at := o.now()
	data := map[string]any{"replayId": p.ID, "selection": p.Selection, "state": p.State,
		"selected": p.Selected, "resent": p.Resent}
	if p.Message != "" {
		data["message"] = p.Message
	}
	o.emit(k, heraldv1.EventTypeReplayCompleted, occurrenceID(k, "replay", p.ID), at, data)
}

// forget drops what is kept of a deleted endpoint.
func (o *Operational) forget(k delivery.Key) {
	if o == nil {
		return
	}
	o.mu.Lock()
	delete(o.dead, k)
	delete(o.lastDead, k)
	delete(o.recovered, k)
	o.mu.Unlock()
}
