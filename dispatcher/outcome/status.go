package outcome

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/config"
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
	// Store counts each endpoint's pending deliveries and tells which delivery blocks
	// an ordered endpoint.
	Store interface {
		PendingDeliveries(ctx context.Context, ep queue.Endpoint) (int64, error)
		BlockingHead(ctx context.Context, ep queue.Endpoint) (queue.Head, bool, error)
	}
	Lookup Lookup
	// Holds reports why the engine holds an endpoint's deliveries ("" when they flow),
	// for the Delivering condition.
	Holds func(k delivery.Key) (reason, message string)
	// Pace reports the endpoint's pacing on this replica (status.throttle); nil reports
	// none.
	Pace     func(k delivery.Key) delivery.Pace
	Interval time.Duration
	Log      logr.Logger
}

// Run writes status until ctx ends.
func (w *StatusWriter) Run(ctx context.Context) error {
	s := config.Status{Interval: w.Interval}
	s.SetDefaults()
	w.Interval = s.Interval
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

func (w *StatusWriter) flush(ctx context.Context, all bool) {
	for _, k := range w.Tracker.takeDirty(all) {
		if err := w.write(ctx, k); err != nil {
			w.Log.Error(err, "writing endpoint status; will retry", "endpoint", k.String())
			w.Tracker.markDirty(k)
		}
	}
}

func (w *StatusWriter) write(ctx context.Context, k delivery.Key) error {
	ep, ok := w.Lookup(k)
	if !ok {
		w.Tracker.Forget(k)
		return nil
	}
	st, tally, err := w.Tracker.refresh(ctx, k)
	if err != nil {
		return err
	}
	pending, err := w.Store.PendingDeliveries(ctx, k)
	if err != nil {
		return err
	}
	var blocked *heraldv1.BlockingDelivery
	if ep.Spec.Ordered() {
		h, ok, err := w.Store.BlockingHead(ctx, k)
		if err != nil {
			return err
		}
		if ok {
			blocked = blocking(h)
		}
	}
	hold, holdMessage := w.Holds(k)
	var pace delivery.Pace
	if w.Pace != nil {
		pace = w.Pace(k)
	}
	want := desired(ep, st, tally, pending, blocked, hold, holdMessage)
	want.pace(ep, st, pace)
	want.transform(ep, st)
	if apiequality.Semantic.DeepEqual(want, current(ep)) {
		return nil
	}
	return statusapply.Apply(ctx, w.Client, "WebhookEndpoint", k.Namespace, k.Name, &want, FieldManager)
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
	BlockedBy           *heraldv1.BlockingDelivery `json:"blockedBy,omitempty"`
	Replay              *heraldv1.ReplayStatus     `json:"replay,omitempty"`
	State               string                     `json:"state,omitempty"`
	Throttle            *heraldv1.ThrottleStatus   `json:"throttle,omitempty"`
	TransformErrors     int64                      `json:"transformErrors,omitempty"`
}

// DeliveryState is an endpoint's one-word state (status.state, the herald_endpoint_state
// metric, the Argo CD health check): what its receiver's answers mean for its
// deliveries. Disabled wins; a receiver pacing Herald is Throttled rather than Failing.
func DeliveryState(st State, throttled bool) string {
	switch {
	case st.Disabled:
		return heraldv1.DeliveryDisabled
	case throttled:
		return heraldv1.DeliveryThrottled
	case st.ConsecutiveFailures > 0:
		return heraldv1.DeliveryFailing
	}
	return heraldv1.DeliveryHealthy
}

// pace adds the state and the throttle of this replica's pacing.
func (o *ownedStatus) pace(ep *heraldv1.WebhookEndpoint, st State, p delivery.Pace) {
	o.State = DeliveryState(st, p.Throttled)
	if !p.Throttled {
		return
	}
	o.Throttle = &heraldv1.ThrottleStatus{
		RequestsPerSecond: strconv.FormatFloat(p.RequestsPerSecond, 'f', -1, 64),
		MaxInFlight:       int32(p.MaxInFlight),
		Reason:            p.Reason,
		Since:             metaTime(p.Since),
	}
	if !p.PausedUntil.IsZero() {
		o.Throttle.PausedUntil = ptrTime(p.PausedUntil)
	}
}

// transform adds the transform's errors and its TransformHealthy condition, for an
// endpoint with a transform. Errors counted at an older generation are not this
// transform's.
func (o *ownedStatus) transform(ep *heraldv1.WebhookEndpoint, st State) {
	if ep.Spec.Payload.Transform == "" {
		return
	}
	c := metav1.Condition{
		Type: heraldv1.ConditionTransformHealthy, Status: metav1.ConditionTrue, Reason: heraldv1.ReasonTransformEvaluated,
		Message:            fmt.Sprintf("no evaluation error since generation %d", ep.Generation),
		ObservedGeneration: ep.Generation,
	}
	if st.TransformErrors > 0 && st.TransformGeneration == ep.Generation {
		o.TransformErrors = st.TransformErrors
		c.Status, c.Reason = metav1.ConditionFalse, heraldv1.ReasonTransformFailed
		c.Message = "the transform failed on " + st.LastTransformError + "; the event was dead-lettered (reason TransformFailed): " +
			"fix spec.payload.transform, then replay the dead letters"
	}
	o.Conditions = append(o.Conditions, statusapply.Condition(ep.Status.Conditions, c))
}

// blocking is what status says of an ordered endpoint's failing head.
func blocking(h queue.Head) *heraldv1.BlockingDelivery {
	return &heraldv1.BlockingDelivery{
		EventID:         h.EventID,
		DeliveryID:      h.DeliveryID,
		Since:           metaTime(h.Since),
		FailedAttempts:  int32(h.Attempt - 1),
		NextAttemptTime: ptrTime(h.NotBefore),
	}
}

// desired computes the owned status from the shared state, the tally, the pending count
// and the engine's hold. The counters are the tally's, plus those a release before
// layout 2 kept in the state, plus the failed attempts of an ordered endpoint's blocking
// head (counted with the head once it is settled).
func desired(ep *heraldv1.WebhookEndpoint, st State, tally queue.Tally, pending int64, blocked *heraldv1.BlockingDelivery, hold, holdMessage string) ownedStatus {
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
	counters := &heraldv1.DeliveryCounters{
		Delivered:      st.Delivered + tally.Delivered,
		FailedAttempts: st.FailedAttempts + tally.FailedAttempts,
		DeadLettered:   st.DeadLettered + tally.DeadLettered,
		Pending:        pending,
	}
	if blocked != nil {
		counters.FailedAttempts += int64(blocked.FailedAttempts)
	}
	lastAttempt, lastSuccess := st.LastAttempt, st.LastSuccess
	if a := tally.LastAttempt; a != nil {
		lastAttempt = &heraldv1.DeliveryAttempt{
			Time: metaTime(a.Time), EventID: a.EventID, DeliveryID: a.DeliveryID, StatusCode: int32(a.StatusCode),
			LatencyMilliseconds: a.Latency / 1000, Error: a.Error,
		}
	}
	if tally.LastSuccess.After(lastSuccess) {
		lastSuccess = tally.LastSuccess
	}
	out := ownedStatus{
		Conditions: []metav1.Condition{
			statusapply.Condition(ep.Status.Conditions, cond),
			statusapply.Condition(ep.Status.Conditions, delivering),
		},
		ConsecutiveFailures: st.ConsecutiveFailures,
		LastAttempt:         lastAttempt,
		DisabledReason:      st.DisabledReason,
		Counters:            counters,
		LastHandledReenable: st.LastReenable,
		LastHandledReplay:   st.LastReplay,
		BlockedBy:           blocked,
		Replay:              st.Replay,
	}
	if !lastSuccess.IsZero() {
		out.LastSuccessTime = ptrTime(lastSuccess)
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
		BlockedBy:           s.BlockedBy,
		Replay:              s.Replay,
		State:               s.State,
		Throttle:            s.Throttle,
		TransformErrors:     s.TransformErrors,
	}
	for _, t := range []string{heraldv1.ConditionDisabled, heraldv1.ConditionDelivering, heraldv1.ConditionTransformHealthy} {
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
