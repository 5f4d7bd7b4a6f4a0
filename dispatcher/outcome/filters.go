package outcome

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/statusapply"
)

// FilterReporter makes a subscription's CEL filter failures visible to its owner: a
// filter that fails to evaluate on an event (a field the event lacks, a type mismatch)
// routes nothing for that event, which would otherwise be silent. Each failure is
// counted on status.filterErrors, the FilterHealthy condition names the last event
// that failed, and a Warning Event FilterFailed names it too, at most one per
// subscription per EventInterval, with the number held back in the next one.
type FilterReporter struct {
	Client client.Client
	Events *EventSink
	// EventInterval is the least time between two FilterFailed Events of one
	// subscription (default 1 minute).
	EventInterval time.Duration
	Log           logr.Logger

	mu   sync.Mutex
	subs map[types.NamespacedName]*filterFailures
}

// filterFailures is what one subscription's filter did since the last status write.
type filterFailures struct {
	count        int64 // not yet on status
	sinceEvent   int64 // not yet named by an Event
	lastEventID  string
	lastErr      string
	lastEventAt  time.Time
	eventPending bool
}

// Failed records one failure. It is called on the ingest path and only takes a lock.
func (r *FilterReporter) Failed(namespace, subscription, eventID string, err error) {
	k := types.NamespacedName{Namespace: namespace, Name: subscription}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.subs == nil {
		r.subs = map[types.NamespacedName]*filterFailures{}
	}
	f := r.subs[k]
	if f == nil {
		f = &filterFailures{}
		r.subs[k] = f
	}
	f.count++
	f.sinceEvent++
	f.lastEventID, f.lastErr, f.eventPending = eventID, err.Error(), true
}

// Run writes what was recorded every interval until ctx ends.
func (r *FilterReporter) Run(ctx context.Context, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			r.Flush(ctx)
		}
	}
}

// Flush writes the status of every subscription with new failures, and their Events.
func (r *FilterReporter) Flush(ctx context.Context) {
	if r.EventInterval <= 0 {
		r.EventInterval = time.Minute
	}
	r.mu.Lock()
	work := map[types.NamespacedName]filterFailures{}
	for k, f := range r.subs {
		if f.count > 0 || f.eventPending {
			work[k] = *f
		}
	}
	r.mu.Unlock()
	for k, f := range work {
		r.report(ctx, k, f)
	}
}

func (r *FilterReporter) report(ctx context.Context, k types.NamespacedName, f filterFailures) {
	var sub heraldv1.WebhookSubscription
	if err := r.Client.Get(ctx, k, &sub); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(k)
		}
		return
	}
	msg := fmt.Sprintf("the filter failed on event %s: %s; such events are not routed through this subscription", f.lastEventID, f.lastErr)
	if f.count > 0 {
		want := filterStatus{
			FilterErrors: sub.Status.FilterErrors + f.count,
			Conditions: []metav1.Condition{statusapply.Condition(sub.Status.Conditions, metav1.Condition{
				Type: heraldv1.ConditionFilterHealthy, Status: metav1.ConditionFalse, Reason: heraldv1.ReasonFilterFailed,
				Message: msg, ObservedGeneration: sub.Generation,
			})},
		}
		// At the resourceVersion the count was read from: a concurrent writer (another
		// replica) makes this a conflict, and the count is added again next time.
		if err := statusapply.ApplyAt(ctx, r.Client, "WebhookSubscription", k.Namespace, k.Name, sub.ResourceVersion, &want, FieldManager); err != nil {
			if !apierrors.IsConflict(err) {
				r.Log.Error(err, "writing subscription filter status; will retry", "subscription", k.String())
			}
			return
		}
		r.mu.Lock()
		if cur := r.subs[k]; cur != nil {
			cur.count -= f.count
		}
		r.mu.Unlock()
	}
	r.event(k, &sub, f)
}

// event emits FilterFailed unless one went out for this subscription within the
// interval; the next one counts what was held back.
func (r *FilterReporter) event(k types.NamespacedName, sub *heraldv1.WebhookSubscription, f filterFailures) {
	now := time.Now()
	if !f.eventPending || (!f.lastEventAt.IsZero() && now.Sub(f.lastEventAt) < r.EventInterval) {
		return
	}
	note := fmt.Sprintf("filter failed on event %s: %s; the event was not routed through this subscription", f.lastEventID, f.lastErr)
	if f.sinceEvent > 1 {
		note += fmt.Sprintf(" (%d events failed since the last such Event; status.filterErrors has the total)", f.sinceEvent)
	}
	r.Events.emitRegarding(corev1.ObjectReference{
		APIVersion: heraldv1.GroupVersion.String(), Kind: "WebhookSubscription",
		Namespace: sub.Namespace, Name: sub.Name, UID: sub.UID, ResourceVersion: sub.ResourceVersion,
	}, corev1.EventTypeWarning, heraldv1.EventFilterFailed, "Route", note)
	r.mu.Lock()
	if cur := r.subs[k]; cur != nil {
		cur.sinceEvent -= f.sinceEvent
		cur.lastEventAt, cur.eventPending = now, cur.sinceEvent > 0
	}
	r.mu.Unlock()
}

// Reset starts a subscription's count afresh after a spec change: the new filter has
// not failed yet. It writes only when there is something to clear.
func (r *FilterReporter) Reset(ctx context.Context, sub *heraldv1.WebhookSubscription) error {
	c := meta.FindStatusCondition(sub.Status.Conditions, heraldv1.ConditionFilterHealthy)
	if c == nil || c.ObservedGeneration >= sub.Generation {
		return nil
	}
	r.forget(types.NamespacedName{Namespace: sub.Namespace, Name: sub.Name})
	// filterErrors restarts at 0 with the new generation.
	want := filterStatus{Conditions: []metav1.Condition{statusapply.Condition(sub.Status.Conditions, metav1.Condition{
		Type: heraldv1.ConditionFilterHealthy, Status: metav1.ConditionTrue, Reason: heraldv1.ReasonFilterEvaluated,
		Message:            fmt.Sprintf("no evaluation error since generation %d", sub.Generation),
		ObservedGeneration: sub.Generation,
	})}}
	return statusapply.Apply(ctx, r.Client, "WebhookSubscription", sub.Namespace, sub.Name, &want, FieldManager)
}

func (r *FilterReporter) forget(k types.NamespacedName) {
	r.mu.Lock()
	delete(r.subs, k)
	r.mu.Unlock()
}

// filterStatus is the part of a subscription's status the dispatcher applies.
type filterStatus struct {
	Conditions   []metav1.Condition `json:"conditions"`
	FilterErrors int64              `json:"filterErrors"`
}
