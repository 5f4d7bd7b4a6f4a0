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

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
)

// Thresholds tells the tracker each endpoint's failure threshold (0 = never disable).
type Thresholds interface {
	FailureThreshold(k delivery.Key) (int32, int64, bool)
}

// Tracker is the engine's Observer. It keeps the shared consecutive-failure count and
// disabled flag, and marks endpoints whose status needs writing. Disabling is decided by
// compare-and-set on the shared state, so exactly one replica performs the transition
// and emits its Event. The counters are the queue's (queue.Tally): counted as each
// delivery is settled, exact across crashes.
type Tracker struct {
	states     states
	thresholds Thresholds
	log        logr.Logger
	notify     func(delivery.Key) // asks the watch to rebuild an endpoint's config
	events     *EventSink
	now        func() time.Time
	ops        *Operational // nil publishes no operational events

	mu sync.Mutex
	// dirty are the endpoints whose status may have changed since it was last written.
	dirty map[delivery.Key]bool
	known map[delivery.Key]State // last state seen in the bucket
}

// NewTracker returns a tracker over the store's shared state.
func NewTracker(store SharedState, thresholds Thresholds, events *EventSink, notify func(delivery.Key), log logr.Logger) *Tracker {
	return &Tracker{
		states:     states{store: store},
		thresholds: thresholds,
		log:        log,
		notify:     notify,
		events:     events,
		now:        time.Now,
		dirty:      map[delivery.Key]bool{},
		known:      map[delivery.Key]State{},
	}
}

func (t *Tracker) markDirty(k delivery.Key) {
	t.mu.Lock()
	t.dirty[k] = true
	t.mu.Unlock()
}

// Attempted implements delivery.Observer.
func (t *Tracker) Attempted(a delivery.Attempt) {
	var errText string
	if a.Outcome.Err != nil {
		errText = truncate(a.Outcome.Err.Error(), 256)
	}
	t.mu.Lock()
	t.dirty[a.Endpoint] = true
	known := t.known[a.Endpoint]
	t.mu.Unlock()

	if a.Outcome.OK() && known.ConsecutiveFailures == 0 {
		return // nothing to reset; spare the bucket a write per delivery
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key := stateKey(a.Endpoint)
	if a.Outcome.OK() {
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
			s.DisabledMessage = fmt.Sprintf("%d consecutive failed attempts; last: %s", s.ConsecutiveFailures, errText)
			if gone {
				// The receiver asked to stop (Standard Webhooks): no count applies.
				s.DisabledReason = heraldv1.ReasonGone
				s.DisabledMessage = fmt.Sprintf("the receiver answered 410 Gone to event %s", a.Delivery.EventID)
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
	t.markDirty(k)
	if dl.Reason == heraldv1.DeadLetterTransformFailed {
		t.transformFailed(k, dl)
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

// transformFailed counts an event the endpoint's transform failed on in the shared
// state, at the endpoint's generation (a spec change starts the count afresh), and says
// so in a Warning Event.
func (t *Tracker) transformFailed(k delivery.Key, dl *queue.DeadLetter) {
	_, generation, _ := t.thresholds.FailureThreshold(k)
	what := fmt.Sprintf("event %s (type %s): %s", dl.EventID, dl.EventType, truncate(dl.Error, 300))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, _, err := t.states.update(ctx, stateKey(k), func(s *State) bool {
		if generation < s.TransformGeneration {
			return false // counted under an older spec, whose transform this was not
		}
		if generation > s.TransformGeneration {
			s.TransformErrors, s.TransformGeneration = 0, generation
		}
		s.TransformErrors++
		s.LastTransformError = what
		return true
	})
	t.remember(k, st, err)
	t.events.deadLetter(k, heraldv1.EventTransformFailed, fmt.Sprintf(
		"spec.payload.transform failed on event %s (type %s), which was dead-lettered (replay it once the transform is fixed): %s",
		dl.EventID, dl.EventType, truncate(dl.Error, 300)))
}

func (t *Tracker) remember(k delivery.Key, st State, err error) {
	if err != nil {
		t.log.Error(err, "updating endpoint state", "endpoint", k.String())
		return
	}
	t.mu.Lock()
	t.known[k] = st
	t.dirty[k] = true
	t.mu.Unlock()
}

// takeDirty hands over, and clears, the endpoints whose status may have changed (every
// endpoint known when all is set).
func (t *Tracker) takeDirty(all bool) []delivery.Key {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []delivery.Key
	if all {
		for k := range t.known {
			out = append(out, k)
		}
		for k := range t.dirty {
			if _, ok := t.known[k]; !ok {
				out = append(out, k)
			}
		}
	} else {
		for k := range t.dirty {
			out = append(out, k)
		}
	}
	clear(t.dirty)
	return out
}

// refresh reads an endpoint's shared state and tally for its status; a replay whose
// dispatcher stopped without saying so is marked Failed on the way.
func (t *Tracker) refresh(ctx context.Context, k delivery.Key) (State, queue.Tally, error) {
	var orphaned bool
	st, _, err := t.states.update(ctx, stateKey(k), func(s *State) bool {
		orphaned = t.orphaned(s)
		return orphaned
	})
	if err != nil {
		return st, queue.Tally{}, err
	}
	if orphaned {
		t.events.warning(k, heraldv1.EventReplayFailed, "Replay", fmt.Sprintf("replay %s: %s", st.Replay.ID, st.Replay.Message))
	}
	t.mu.Lock()
	t.known[k] = st
	t.mu.Unlock()
	tally, err := t.states.store.TallyOf(ctx, k)
	return st, tally, err
}

// PaceChanged hears of an endpoint whose limits began or stopped adapting to its
// receiver (delivery.Options.PaceChanged, with the pacing as it is now): its status is
// rewritten soon, and a Normal Event says what changed. Pacing is per replica, so each
// replica that paces the endpoint says so.
func (t *Tracker) PaceChanged(k delivery.Key, p delivery.Pace) {
	t.markDirty(k)
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
	t.dirty[k] = true
	t.mu.Unlock()
	return st, nil
}

// Forget drops a deleted endpoint's local figures. Its shared state is keyed by its
// UID, so an endpoint created later under its name starts afresh; the state goes with
// the rest of its data (queue.Store.Reclaim).
func (t *Tracker) Forget(k delivery.Key) {
	t.mu.Lock()
	delete(t.dirty, k)
	delete(t.known, k)
	t.mu.Unlock()
	t.events.forget(k)
	t.ops.forget(k)
}

// Watch follows the shared state so that a transition made by another replica (disable,
// re-enable) takes effect here within moments, and a tally changed by any replica's
// settlements gets the endpoint's status written.
func (t *Tracker) Watch(ctx context.Context) error {
	return t.states.store.WatchState(ctx, []string{stateKind, queue.TallyKind}, func(kind string, k queue.Endpoint, value []byte) {
		if kind == queue.TallyKind {
			t.markDirty(k)
			return
		}
		var st State
		if value != nil {
			if err := json.Unmarshal(value, &st); err != nil {
				return
			}
		}
		t.mu.Lock()
		prev := t.known[k]
		t.known[k] = st
		t.dirty[k] = true
		t.mu.Unlock()
		if prev.Disabled != st.Disabled {
			t.notify(k)
		}
	})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
