package outcome

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go/jetstream"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
)

// Store is what the tracker needs of the queue: the shared state bucket.
type Store interface {
	StateBucket() jetstream.KeyValue
}

// Thresholds tells the tracker each endpoint's failure threshold (0 = never disable).
type Thresholds interface {
	FailureThreshold(k delivery.Key) (int32, int64, bool)
}

// Tracker is the engine's Observer. It counts outcomes per endpoint, keeps the shared
// consecutive-failure count and disabled flag, and marks endpoints whose status needs
// writing. Disabling is decided by compare-and-set on the shared state, so exactly one
// replica performs the transition and emits its Event.
type Tracker struct {
	states     states
	thresholds Thresholds
	log        logr.Logger
	notify     func(delivery.Key) // asks the watch to rebuild an endpoint's config
	events     *EventSink
	now        func() time.Time
	ops        *Operational // nil publishes no operational events

	mu    sync.Mutex
	local map[delivery.Key]*local
	known map[delivery.Key]State // last state seen in the bucket
}

// local is what this replica observed since its last flush.
type local struct {
	delivered, failed, dead int64
	lastAttempt             *heraldv1.DeliveryAttempt
	lastSuccess             time.Time
	transform               transformNews
	dirty                   bool
}

// transformNews are the transform failures this replica saw at one generation of the
// endpoint.
type transformNews struct {
	errors     int64
	generation int64
	last       string
}

// NewTracker returns a tracker over the store's state bucket.
func NewTracker(store Store, thresholds Thresholds, events *EventSink, notify func(delivery.Key), log logr.Logger) *Tracker {
	return &Tracker{
		states:     states{kv: store.StateBucket()},
		thresholds: thresholds,
		log:        log,
		notify:     notify,
		events:     events,
		now:        time.Now,
		local:      map[delivery.Key]*local{},
		known:      map[delivery.Key]State{},
	}
}

func (t *Tracker) entry(k delivery.Key) *local {
	l := t.local[k]
	if l == nil {
		l = &local{}
		t.local[k] = l
	}
	return l
}

// Attempted implements delivery.Observer.
func (t *Tracker) Attempted(a delivery.Attempt) {
	at := &heraldv1.DeliveryAttempt{
		Time:                metaTime(t.now().Add(-a.Outcome.Latency)),
		EventID:             a.Delivery.EventID,
		DeliveryID:          a.Delivery.DeliveryID,
		StatusCode:          int32(a.Outcome.StatusCode),
		LatencyMilliseconds: a.Outcome.Latency.Milliseconds(),
	}
	if a.Outcome.Err != nil {
		at.Error = truncate(a.Outcome.Err.Error(), 256)
	}
	t.mu.Lock()
	l := t.entry(a.Endpoint)
	l.lastAttempt, l.dirty = at, true
	known := t.known[a.Endpoint]
	if a.Outcome.OK() {
		l.delivered++
		l.lastSuccess = t.now()
	} else {
		l.failed++
	}
	t.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key := stateKey(a.Endpoint)
	if a.Outcome.OK() {
		if known.ConsecutiveFailures == 0 {
			return // nothing to reset; spare the bucket a write per delivery
		}
		var failed int32
		st, _, err := t.states.update(ctx, key, func(s *State) bool {
			failed = s.ConsecutiveFailures
			if s.ConsecutiveFailures == 0 {
				return false
			}
			s.ConsecutiveFailures = 0
			return true
		})
		t.remember(a.Endpoint, st, err)
		if err == nil && failed > 0 && !isOperational(a.Delivery) {
			t.ops.endpointRecovered(a.Endpoint, failed)
		}
		return
	}
	if a.Throttled {
		// The receiver paces Herald (429 to an endpoint with adaptive limits): counted as
		// a failed attempt, never towards auto-disable.
		return
	}
	threshold, generation, _ := t.thresholds.FailureThreshold(a.Endpoint)
	var transitioned bool
	st, _, err := t.states.update(ctx, key, func(s *State) bool {
		s.ConsecutiveFailures++
		transitioned = false
		gone := a.Outcome.StatusCode == http.StatusGone
		if !s.Disabled && (gone || (threshold > 0 && s.ConsecutiveFailures >= threshold)) {
			s.Disabled, transitioned = true, true
			s.DisabledAt = t.now().UTC().Truncate(time.Second)
			s.DisabledReason = heraldv1.ReasonConsecutiveFailures
			s.DisabledMessage = fmt.Sprintf("%d consecutive failed attempts; last: %s", s.ConsecutiveFailures, at.Error)
			if gone {
				// The receiver asked to stop (Standard Webhooks): no count applies.
				s.DisabledReason = heraldv1.ReasonGone
				s.DisabledMessage = fmt.Sprintf("the receiver answered 410 Gone to event %s", at.EventID)
			}
			s.DisabledGeneration = generation
		}
		return true
	})
	t.remember(a.Endpoint, st, err)
	if err == nil && transitioned {
		t.log.Info("endpoint disabled", "endpoint", a.Endpoint.String(), "failures", st.ConsecutiveFailures)
		t.events.warning(a.Endpoint, heraldv1.EventEndpointDisabled, "Disable", st.DisabledMessage+
			"; deliveries are held until it is re-enabled (annotate "+heraldv1.AnnotationReenable+" with a new value, or edit the spec)")
		t.ops.endpointDisabled(a.Endpoint, st)
		t.notify(a.Endpoint)
	}
}

// DeadLettered implements delivery.Observer.
func (t *Tracker) DeadLettered(k delivery.Key, dl *queue.DeadLetter) {
	transformFailed := dl.Reason == heraldv1.DeadLetterTransformFailed
	var generation int64
	if transformFailed {
		_, generation, _ = t.thresholds.FailureThreshold(k)
	}
	t.mu.Lock()
	l := t.entry(k)
	l.dead++
	l.dirty = true
	if transformFailed {
		if generation != l.transform.generation {
			l.transform = transformNews{generation: generation}
		}
		l.transform.errors++
		l.transform.last = fmt.Sprintf("event %s (type %s): %s", dl.EventID, dl.EventType, truncate(dl.Error, 300))
	}
	t.mu.Unlock()
	if transformFailed {
		t.events.deadLetter(k, heraldv1.EventTransformFailed, fmt.Sprintf(
			"spec.payload.transform failed on event %s (type %s), which was dead-lettered (replay it once the transform is fixed): %s",
			dl.EventID, dl.EventType, truncate(dl.Error, 300)))
		return
	}
	last := dl.Error
	if dl.StatusCode != 0 {
		last = fmt.Sprintf("HTTP %d", dl.StatusCode)
	}
	t.events.deadLetter(k, heraldv1.EventDeliveryFailed, fmt.Sprintf("event %s (type %s) dead-lettered after %d attempts (%s); last: %s",
		dl.EventID, dl.EventType, dl.Attempt, dl.Reason, truncate(last, 200)))
	if !heraldv1.IsOperationalEventType(dl.EventType) {
		t.ops.deadLettered(k, dl)
	}
}

func (t *Tracker) remember(k delivery.Key, st State, err error) {
	if err != nil {
		t.log.Error(err, "updating endpoint state", "endpoint", k.String())
		return
	}
	t.mu.Lock()
	t.known[k] = st
	t.entry(k).dirty = true
	t.mu.Unlock()
}

// news is what this replica observed of one endpoint since its status was last written.
type news struct {
	delivered, failed, dead int64
	lastAttempt             *heraldv1.DeliveryAttempt
	lastSuccess             time.Time
	transform               transformNews
}

// takeNews hands over, and clears, what this replica observed of the endpoints with
// news since the last call (of every endpoint when all is set).
func (t *Tracker) takeNews(all bool) map[delivery.Key]news {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[delivery.Key]news{}
	for k, l := range t.local {
		if !l.dirty && !all {
			continue
		}
		out[k] = news{l.delivered, l.failed, l.dead, l.lastAttempt, l.lastSuccess, l.transform}
		l.delivered, l.failed, l.dead, l.lastAttempt, l.lastSuccess, l.dirty = 0, 0, 0, nil, time.Time{}, false
		l.transform = transformNews{generation: l.transform.generation}
	}
	return out
}

// putBack returns news that could not be written, to go with the next write.
func (t *Tracker) putBack(k delivery.Key, n news) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.entry(k)
	l.delivered += n.delivered
	l.failed += n.failed
	l.dead += n.dead
	if l.lastAttempt == nil {
		l.lastAttempt = n.lastAttempt
	}
	if l.lastSuccess.IsZero() {
		l.lastSuccess = n.lastSuccess
	}
	if n.transform.errors > 0 && n.transform.generation == l.transform.generation {
		l.transform.errors += n.transform.errors
		if l.transform.last == "" {
			l.transform.last = n.transform.last
		}
	}
	l.dirty = true
}

// fold adds this replica's news to the shared totals and returns them, so that every
// replica writes the same figures.
func (t *Tracker) fold(ctx context.Context, k delivery.Key, n news) (State, error) {
	var orphaned bool
	st, _, err := t.states.update(ctx, stateKey(k), func(s *State) bool {
		orphaned = t.orphaned(s)
		s.Delivered += n.delivered
		s.FailedAttempts += n.failed
		s.DeadLettered += n.dead
		if n.lastAttempt != nil && (s.LastAttempt == nil || !n.lastAttempt.Time.Before(&s.LastAttempt.Time)) {
			s.LastAttempt = n.lastAttempt
		}
		if n.lastSuccess.After(s.LastSuccess) {
			s.LastSuccess = n.lastSuccess.UTC().Truncate(time.Second)
		}
		if tr := n.transform; tr.errors > 0 && tr.generation >= s.TransformGeneration {
			if tr.generation > s.TransformGeneration {
				s.TransformErrors, s.TransformGeneration = 0, tr.generation
			}
			s.TransformErrors += tr.errors
			s.LastTransformError = tr.last
		}
		return orphaned || n.delivered != 0 || n.failed != 0 || n.dead != 0 || n.lastAttempt != nil || !n.lastSuccess.IsZero() ||
			n.transform.errors > 0
	})
	if err != nil {
		return st, err
	}
	if orphaned {
		t.events.warning(k, heraldv1.EventReplayFailed, "Replay", fmt.Sprintf("replay %s: %s", st.Replay.ID, st.Replay.Message))
	}
	t.remember(k, st, nil)
	return st, nil
}

// Touch marks an endpoint's status for writing: something this replica holds about it
// changed (its pacing).
func (t *Tracker) Touch(k delivery.Key) {
	t.mu.Lock()
	t.entry(k).dirty = true
	t.mu.Unlock()
}

// PaceChanged hears of an endpoint whose limits began or stopped adapting to its
// receiver (delivery.Options.PaceChanged, with the pacing as it is now): its status is
// rewritten soon, and a Normal Event says what changed. Pacing is per replica, so each
// replica that paces the endpoint says so.
func (t *Tracker) PaceChanged(k delivery.Key, p delivery.Pace) {
	t.Touch(k)
	if !p.Throttled {
		t.events.normal(k, heraldv1.EventThrottleLifted, "Pace", "the receiver answers again: the configured limits apply")
		return
	}
	t.events.normal(k, heraldv1.EventThrottled, "Pace", fmt.Sprintf(
		"the receiver answered %s: Herald sends at most %s requests/s with %d in flight until it recovers",
		p.Reason, strconv.FormatFloat(p.RequestsPerSecond, 'f', -1, 64), p.MaxInFlight))
}

// Disabled reports whether an endpoint is disabled, as last seen in the shared state.
func (t *Tracker) Disabled(k delivery.Key) (State, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.known[k]
	return st, st.Disabled
}

// Load reads an endpoint's shared state into the tracker's view.
func (t *Tracker) Load(ctx context.Context, k delivery.Key) (State, error) {
	st, err := t.states.get(ctx, stateKey(k))
	if err != nil {
		return st, err
	}
	t.mu.Lock()
	t.known[k] = st
	// Every endpoint the watch looks at gets its delivery status written, even before
	// its first attempt: a held endpoint's pending count and Disabled=False show at once.
	t.entry(k).dirty = true
	t.mu.Unlock()
	return st, nil
}

// Forget drops a deleted endpoint's local figures. Its shared state is keyed by its
// UID, so an endpoint created later under its name starts afresh; the state goes with
// the rest of its data (queue.Store.Reclaim).
func (t *Tracker) Forget(k delivery.Key) {
	t.mu.Lock()
	delete(t.local, k)
	delete(t.known, k)
	t.mu.Unlock()
	t.events.forget(k)
	t.ops.forget(k)
}

// Watch follows the shared state so that a transition made by another replica (disable,
// re-enable) takes effect here within moments.
func (t *Tracker) Watch(ctx context.Context) error {
	w, err := t.states.kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("watching endpoint state: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e == nil {
				continue
			}
			k, ok := parseStateKey(e.Key())
			if !ok {
				continue
			}
			var st State
			if e.Operation() == jetstream.KeyValuePut {
				if err := json.Unmarshal(e.Value(), &st); err != nil {
					continue
				}
			}
			t.mu.Lock()
			prev := t.known[k]
			t.known[k] = st
			t.entry(k).dirty = true
			t.mu.Unlock()
			if prev.Disabled != st.Disabled {
				t.notify(k)
			}
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
