package lifecycle

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/internal/statusapply"
)

// FieldManager is the dispatcher's server-side apply field manager. It owns the
// delivery part of WebhookEndpoint status and never touches what the manager owns
// (observedGeneration, secretName, the Ready condition).
const FieldManager = "herald-dispatcher"

// StatusWriter writes the delivery part of endpoint status, coalesced: each endpoint
// is written at most once per Interval, and only when something changed.
type StatusWriter struct {
	Client  client.Client
	Tracker *Tracker
	Store   *queue.Store
	Lookup  Lookup
	// Holds reports why the engine holds an endpoint's deliveries ("" when they flow),
	// for the Delivering condition.
	Holds    func(k delivery.Key) (reason, message string)
	Interval time.Duration
	Log      logr.Logger
}

// Run writes status until ctx ends.
func (w *StatusWriter) Run(ctx context.Context) error {
	if w.Interval <= 0 {
		w.Interval = 5 * time.Second
	}
	tick := time.NewTicker(w.Interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			w.Flush(context.Background())
			return nil
		case <-tick.C:
			// Pending counts move without attempts (ingest, holds): refresh every
			// endpoint now and then, not only those with news.
			w.flush(ctx, n%6 == 0)
		}
	}
}

// Flush writes every endpoint with news now.
func (w *StatusWriter) Flush(ctx context.Context) { w.flush(ctx, false) }

type delta struct {
	delivered, failed, dead int64
	lastAttempt             *heraldv1.DeliveryAttempt
	lastSuccess             time.Time
}

func (w *StatusWriter) flush(ctx context.Context, all bool) {
	w.Tracker.events.flush()
	t := w.Tracker
	t.mu.Lock()
	work := map[delivery.Key]delta{}
	for k, l := range t.local {
		if !l.dirty && !all {
			continue
		}
		work[k] = delta{l.delivered, l.failed, l.dead, l.lastAttempt, l.lastSuccess}
		l.delivered, l.failed, l.dead, l.lastAttempt, l.lastSuccess, l.dirty = 0, 0, 0, nil, time.Time{}, false
	}
	t.mu.Unlock()
	for k, d := range work {
		if err := w.write(ctx, k, d); err != nil {
			w.Log.Error(err, "writing endpoint status; will retry", "endpoint", k.String())
			t.mu.Lock()
			l := t.entry(k)
			l.delivered += d.delivered
			l.failed += d.failed
			l.dead += d.dead
			if l.lastAttempt == nil {
				l.lastAttempt = d.lastAttempt
			}
			if l.lastSuccess.IsZero() {
				l.lastSuccess = d.lastSuccess
			}
			l.dirty = true
			t.mu.Unlock()
		}
	}
}

func (w *StatusWriter) write(ctx context.Context, k delivery.Key, d delta) error {
	ep, ok := w.Lookup(k)
	if !ok {
		w.Tracker.Forget(k)
		return nil
	}
	// Fold this replica's figures into the shared ones, so every replica writes the
	// same totals.
	st, _, err := w.Tracker.states.update(ctx, stateKey(k.Namespace, k.Name), func(s *State) bool {
		s.Delivered += d.delivered
		s.FailedAttempts += d.failed
		s.DeadLettered += d.dead
		if d.lastAttempt != nil && (s.LastAttempt == nil || !d.lastAttempt.Time.Before(&s.LastAttempt.Time)) {
			s.LastAttempt = d.lastAttempt
		}
		if d.lastSuccess.After(s.LastSuccess) {
			s.LastSuccess = d.lastSuccess.UTC().Truncate(time.Second)
		}
		return d.delivered != 0 || d.failed != 0 || d.dead != 0 || d.lastAttempt != nil || !d.lastSuccess.IsZero()
	})
	if err != nil {
		return err
	}
	w.Tracker.remember(k, st, nil)
	pending, err := w.Store.PendingDeliveries(ctx, k.Namespace, k.Name)
	if err != nil {
		return err
	}
	hold, holdMessage := w.Holds(k)
	want := desired(ep, st, pending, hold, holdMessage)
	if apiequality.Semantic.DeepEqual(want, current(ep)) {
		return nil
	}
	if err := statusapply.Apply(ctx, w.Client, "WebhookEndpoint", k.Namespace, k.Name, &want, FieldManager); err != nil {
		return err
	}
	return nil
}

// ownedStatus is exactly the part of the status the dispatcher applies.
type ownedStatus struct {
	Conditions          []metav1.Condition         `json:"conditions"`
	ConsecutiveFailures int32                      `json:"consecutiveFailures"`
	LastAttempt         *heraldv1.DeliveryAttempt  `json:"lastAttempt,omitempty"`
	LastSuccessTime     *metav1.Time               `json:"lastSuccessTime,omitempty"`
	DisabledAt          *metav1.Time               `json:"disabledAt,omitempty"`
	DisabledReason      string                     `json:"disabledReason,omitempty"`
	Counters            *heraldv1.DeliveryCounters `json:"counters"`
	LastHandledReenable string                     `json:"lastHandledReenable,omitempty"`
	LastHandledReplay   string                     `json:"lastHandledReplay,omitempty"`
}

// desired computes the owned status from the shared state, the pending count and the
// engine's hold.
func desired(ep *heraldv1.WebhookEndpoint, st State, pending int64, hold, holdMessage string) ownedStatus {
	delivering := metav1.Condition{
		Type:               heraldv1.ConditionDelivering,
		Status:             metav1.ConditionTrue,
		Reason:             heraldv1.ReasonDelivering,
		Message:            "the dispatcher delivers to this endpoint",
		ObservedGeneration: ep.Generation,
	}
	if hold != "" {
		delivering.Status, delivering.Reason, delivering.Message = metav1.ConditionFalse, hold, holdMessage
	}
	cond := metav1.Condition{
		Type:               heraldv1.ConditionDisabled,
		Status:             metav1.ConditionFalse,
		Reason:             heraldv1.ReasonEnabled,
		Message:            "deliveries flow",
		ObservedGeneration: ep.Generation,
	}
	if st.Disabled {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, st.DisabledReason, st.DisabledMessage
	}
	out := ownedStatus{
		Conditions: []metav1.Condition{
			statusapply.Condition(ep.Status.Conditions, cond),
			statusapply.Condition(ep.Status.Conditions, delivering),
		},
		ConsecutiveFailures: st.ConsecutiveFailures,
		LastAttempt:         st.LastAttempt,
		DisabledReason:      st.DisabledReason,
		Counters: &heraldv1.DeliveryCounters{
			Delivered: st.Delivered, FailedAttempts: st.FailedAttempts, DeadLettered: st.DeadLettered, Pending: pending,
		},
		LastHandledReenable: st.LastReenable,
		LastHandledReplay:   st.LastReplay,
	}
	if !st.LastSuccess.IsZero() {
		out.LastSuccessTime = ptrTime(st.LastSuccess)
	}
	if st.Disabled && !st.DisabledAt.IsZero() {
		out.DisabledAt = ptrTime(st.DisabledAt)
	}
	return out
}

func current(ep *heraldv1.WebhookEndpoint) ownedStatus {
	s := ep.Status
	out := ownedStatus{
		ConsecutiveFailures: s.ConsecutiveFailures,
		LastAttempt:         s.LastAttempt,
		LastSuccessTime:     s.LastSuccessTime,
		DisabledAt:          s.DisabledAt,
		DisabledReason:      s.DisabledReason,
		Counters:            s.Counters,
		LastHandledReenable: s.LastHandledReenable,
		LastHandledReplay:   s.LastHandledReplay,
	}
	for _, t := range []string{heraldv1.ConditionDisabled, heraldv1.ConditionDelivering} {
		if c := meta.FindStatusCondition(s.Conditions, t); c != nil {
			out.Conditions = append(out.Conditions, *c)
		}
	}
	return out
}

func metaTime(t time.Time) metav1.Time { return metav1.NewTime(t.UTC().Truncate(time.Second)) }

func ptrTime(t time.Time) *metav1.Time {
	mt := metaTime(t)
	return &mt
}
