package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats.go/jetstream"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
)

// Thresholds tells the tracker each endpoint's failure threshold (0 = never disable).
type Thresholds interface {
	FailureThreshold(k delivery.Key) (int32, int64, bool)
}

// Tracker is the engine's Observer. It counts outcomes per endpoint, keeps the shared
// consecutive-failure count and disabled flag, and marks endpoints whose status needs
// writing. Disabling is decided by compare-and-set on the shared state, so exactly one
// replica performs the transition and emits its Event.
type Tracker struct {
	store      *queue.Store
	states     states
	thresholds Thresholds
	log        logr.Logger
	notify     func(delivery.Key) // asks the watch to rebuild an endpoint's config
	events     *EventSink
	now        func() time.Time

	mu    sync.Mutex
	local map[delivery.Key]*local
	known map[delivery.Key]State // last state seen in the bucket
}

// local is what this replica observed since its last flush.
type local struct {
	delivered, failed, dead int64
	lastAttempt             *heraldv1.DeliveryAttempt
	lastSuccess             time.Time
	dirty                   bool
}

// NewTracker returns a tracker over the store's state bucket.
func NewTracker(store *queue.Store, thresholds Thresholds, events *EventSink, notify func(delivery.Key), log logr.Logger) *Tracker {
	return &Tracker{
		store:      store,
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
	key := stateKey(a.Endpoint.Namespace, a.Endpoint.Name)
	if a.Outcome.OK() {
		if known.ConsecutiveFailures == 0 {
			return // nothing to reset; spare the bucket a write per delivery
		}
		st, _, err := t.states.update(ctx, key, func(s *State) bool {
			if s.ConsecutiveFailures == 0 {
				return false
			}
			s.ConsecutiveFailures = 0
			return true
		})
		t.remember(a.Endpoint, st, err)
		return
	}
	threshold, generation, _ := t.thresholds.FailureThreshold(a.Endpoint)
	var transitioned bool
	st, _, err := t.states.update(ctx, key, func(s *State) bool {
		s.ConsecutiveFailures++
		transitioned = false
		if threshold > 0 && s.ConsecutiveFailures >= threshold && !s.Disabled {
			s.Disabled, transitioned = true, true
			s.DisabledAt = t.now().UTC().Truncate(time.Second)
			s.DisabledReason = heraldv1.ReasonConsecutiveFailures
			s.DisabledMessage = fmt.Sprintf("%d consecutive failed attempts; last: %s", s.ConsecutiveFailures, at.Error)
			s.DisabledGeneration = generation
		}
		return true
	})
	t.remember(a.Endpoint, st, err)
	if err == nil && transitioned {
		t.log.Info("endpoint disabled", "endpoint", a.Endpoint.String(), "failures", st.ConsecutiveFailures)
		t.events.warning(a.Endpoint, heraldv1.EventEndpointDisabled, "Disable", st.DisabledMessage+
			"; deliveries are held until it is re-enabled (annotate "+heraldv1.AnnotationReenable+" with a new value, or edit the spec)")
		t.notify(a.Endpoint)
	}
}

// DeadLettered implements delivery.Observer.
func (t *Tracker) DeadLettered(k delivery.Key, dl *queue.DeadLetter) {
	t.mu.Lock()
	l := t.entry(k)
	l.dead++
	l.dirty = true
	t.mu.Unlock()
	last := dl.Error
	if dl.StatusCode != 0 {
		last = fmt.Sprintf("HTTP %d", dl.StatusCode)
	}
	t.events.deadLetter(k, fmt.Sprintf("event %s (type %s) dead-lettered after %d attempts (%s); last: %s",
		dl.EventID, dl.EventType, dl.Attempt, dl.Reason, truncate(last, 200)))
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

// Disabled reports whether an endpoint is disabled, as last seen in the shared state.
func (t *Tracker) Disabled(k delivery.Key) (State, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.known[k]
	return st, st.Disabled
}

// Load reads an endpoint's shared state into the tracker's view.
func (t *Tracker) Load(ctx context.Context, k delivery.Key) (State, error) {
	st, err := t.states.get(ctx, stateKey(k.Namespace, k.Name))
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

// Reenable clears the disabled flag and the failure count. token is the re-enable
// annotation's value (empty for a spec change or an API call). It reports whether this
// call made the transition.
func (t *Tracker) Reenable(ctx context.Context, k delivery.Key, token, why string) (bool, error) {
	var transitioned bool
	st, _, err := t.states.update(ctx, stateKey(k.Namespace, k.Name), func(s *State) bool {
		transitioned = s.Disabled
		changed := s.Disabled || s.ConsecutiveFailures != 0 || (token != "" && s.LastReenable != token)
		s.Disabled, s.DisabledAt, s.DisabledReason, s.DisabledMessage, s.DisabledGeneration = false, time.Time{}, "", "", 0
		s.ConsecutiveFailures = 0
		if token != "" {
			s.LastReenable = token
		}
		return changed
	})
	if err != nil {
		return false, err
	}
	t.remember(k, st, nil)
	if transitioned {
		t.log.Info("endpoint re-enabled", "endpoint", k.String(), "why", why)
		t.events.normal(k, heraldv1.EventEndpointEnabled, "Enable", "re-enabled ("+why+"); held deliveries flow again, oldest first")
		// The shared-state watch would notice too, but this replica already remembers
		// the new state, so it would see no change: rebuild the configuration now.
		t.notify(k)
	}
	return transitioned, nil
}

// MarkReplay records the replay annotation value as handled; it reports false when it
// was already handled (by this or another replica).
func (t *Tracker) MarkReplay(ctx context.Context, k delivery.Key, token string) (bool, error) {
	st, changed, err := t.states.update(ctx, stateKey(k.Namespace, k.Name), func(s *State) bool {
		if s.LastReplay == token {
			return false
		}
		s.LastReplay = token
		return true
	})
	if err != nil {
		return false, err
	}
	t.remember(k, st, nil)
	return changed, nil
}

// Forget drops a deleted endpoint's local figures.
func (t *Tracker) Forget(k delivery.Key) {
	t.mu.Lock()
	delete(t.local, k)
	delete(t.known, k)
	t.mu.Unlock()
	t.events.forget(k)
	// A WebhookEndpoint created later under the same name starts afresh.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.states.kv.Delete(ctx, stateKey(k.Namespace, k.Name)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.log.Error(err, "forgetting endpoint state", "endpoint", k.String())
	}
}

// State loads an endpoint's shared state; it serves the watch.
func (t *Tracker) State(ctx context.Context, k delivery.Key) (bool, int64, string, string, error) {
	st, err := t.Load(ctx, k)
	return st.Disabled, st.DisabledGeneration, st.LastReenable, st.LastReplay, err
}

// Replay replays every dead letter of the endpoint once per new token (the value of
// the replay annotation); the token is claimed by compare-and-set first, so of several
// replicas exactly one replays.
func (t *Tracker) Replay(ctx context.Context, k delivery.Key, token string) error {
	claimed, err := t.MarkReplay(ctx, k, token)
	if err != nil || !claimed {
		return err
	}
	n, err := t.store.ReplayDeadLetters(ctx, k.Namespace, k.Name, queue.DeadLetterFilter{})
	if err != nil {
		t.events.warning(k, heraldv1.EventDeadLettersReplayed, "Replay", fmt.Sprintf("replay %q stopped after %d dead letters: %v", token, n, err))
		return err
	}
	t.log.Info("dead letters replayed", "endpoint", k.String(), "count", n, "token", token)
	t.events.normal(k, heraldv1.EventDeadLettersReplayed, "Replay", fmt.Sprintf("replayed %d dead letters (annotation %s=%s)", n, heraldv1.AnnotationReplayDeadLetters, token))
	return nil
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
			ns, name, ok := parseStateKey(e.Key())
			if !ok {
				continue
			}
			k := delivery.Key{Namespace: ns, Name: name}
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
