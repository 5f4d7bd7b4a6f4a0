package outcome

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/replay"
)

// AnnotationState is what the value of a request annotation (re-enable, replay) means
// for an endpoint now. Annotation is the one judge of "is this value new?".
type AnnotationState string

const (
	// AnnotationAbsent: the annotation is not set (or empty); nothing is asked.
	AnnotationAbsent AnnotationState = "Absent"
	// AnnotationHandled: this value was acted on already, by any replica.
	AnnotationHandled AnnotationState = "Handled"
	// AnnotationNew: a value not acted on yet, to act on once.
	AnnotationNew AnnotationState = "New"
)

// Annotation judges an annotation's value against the value last handled (from the
// endpoint's shared state).
func Annotation(value, handled string) AnnotationState {
	switch {
	case value == "":
		return AnnotationAbsent
	case value == handled:
		return AnnotationHandled
	}
	return AnnotationNew
}

// Replayer runs replays (package replay).
type Replayer interface {
	Start(ctx context.Context, k delivery.Key, req replay.Request) (int64, error)
}

// Identify names who set an annotation of an endpoint, for the log; "" when that cannot
// be told.
type Identify func(ctx context.Context, k delivery.Key, annotation string) string

// Requests acts on what people ask of an endpoint through the resource: re-enable (the
// annotation, or a spec edit after auto-disable) and replay (the annotation), each once
// per value across replicas. The watch hands it every change of an endpoint; it reads
// the shared state through the tracker and gives replays to the replayer it is built
// with, so the decision and the action sit together and nothing comes back to the watch
// but whether the endpoint is disabled.
type Requests struct {
	tracker  *Tracker
	replayer Replayer
	identify Identify
	now      func() time.Time
}

// NewRequests returns the requests handler. identify may be nil; now is the clock of
// relative times in a replay's selection ("since=2h"), time.Now when nil.
func NewRequests(t *Tracker, r Replayer, identify Identify, now func() time.Time) *Requests {
	if now == nil {
		now = time.Now
	}
	return &Requests{tracker: t, replayer: r, identify: identify, now: now}
}

// Handle acts on the endpoint's requests and reports whether it is disabled.
func (q *Requests) Handle(ctx context.Context, k delivery.Key, ep *heraldv1.WebhookEndpoint) (disabled bool, err error) {
	st, err := q.tracker.Load(ctx, k)
	if err != nil {
		return false, fmt.Errorf("reading endpoint state: %w", err)
	}
	disabled = st.Disabled
	reenable := ep.Annotations[heraldv1.AnnotationReenable]
	switch {
	case Annotation(reenable, st.LastReenable) == AnnotationNew:
		if _, err := q.tracker.Reenable(ctx, k, reenable, "annotation "+heraldv1.AnnotationReenable+"="+reenable); err != nil {
			return disabled, fmt.Errorf("re-enabling: %w", err)
		}
		disabled = false
	case disabled && ep.Generation > st.DisabledGeneration:
		if _, err := q.tracker.Reenable(ctx, k, "", fmt.Sprintf("spec changed to generation %d", ep.Generation)); err != nil {
			return disabled, fmt.Errorf("re-enabling: %w", err)
		}
		disabled = false
	}
	if token := ep.Annotations[heraldv1.AnnotationReplayDeadLetters]; Annotation(token, st.LastReplay) == AnnotationNew {
		if err := q.replay(ctx, k, token); err != nil {
			return disabled, err
		}
	}
	return disabled, nil
}

// replay starts the replay a new value of the annotation asks for, once: the value is
// claimed by compare-and-set first, so of several replicas exactly one starts it. A
// value that selects nothing valid, or a replay that cannot start (another one runs),
// is reported on the resource and not retried: a new value asks again.
func (q *Requests) replay(ctx context.Context, k delivery.Key, token string) error {
	const annotation = heraldv1.AnnotationReplayDeadLetters
	claimed, err := q.tracker.claimReplay(ctx, k, token)
	if err != nil {
		return fmt.Errorf("claiming the replay annotation: %w", err)
	}
	if !claimed {
		return nil
	}
	by := "annotation " + annotation
	if q.identify != nil {
		if who := q.identify(ctx, k, annotation); who != "" {
			by += " by " + who
		}
	}
	sel, err := replay.ParseAnnotation(token, q.now())
	if err == nil {
		_, err = q.replayer.Start(ctx, k, replay.Request{ID: token, Selection: sel, By: by})
	}
	if err != nil {
		q.tracker.log.Info("replay not started", "endpoint", k.String(), "replay", token, "by", by, "error", err.Error())
		q.tracker.events.warning(k, heraldv1.EventReplayFailed, "Replay", fmt.Sprintf("replay %q (annotation %s) not started: %v", token, annotation, err))
	}
	return nil
}

// AnnotationManager identifies who set an annotation by the endpoint's managedFields,
// read from the API server (the dispatcher's cache strips them): the field manager that
// owns the annotation, how and when. Kubernetes records which client wrote a field
// (kubectl-annotate, herald, argocd-controller), not which user: the user is in the API
// server's audit log, at that time.
func AnnotationManager(r client.Reader) Identify {
	return func(ctx context.Context, k delivery.Key, annotation string) string {
		var ep heraldv1.WebhookEndpoint
		if err := r.Get(ctx, types.NamespacedName{Namespace: k.Namespace, Name: k.Name}, &ep); err != nil || string(ep.UID) != k.UID {
			return ""
		}
		return annotationManager(ep.ManagedFields, annotation)
	}
}

func annotationManager(entries []metav1.ManagedFieldsEntry, annotation string) string {
	var owner *metav1.ManagedFieldsEntry
	for i := range entries {
		m := &entries[i]
		if m.FieldsV1 == nil {
			continue
		}
		var f struct {
			Metadata struct {
				Annotations map[string]json.RawMessage `json:"f:annotations"`
			} `json:"f:metadata"`
		}
		if json.Unmarshal(m.FieldsV1.Raw, &f) != nil {
			continue
		}
		if _, ok := f.Metadata.Annotations["f:"+annotation]; ok && (owner == nil || (m.Time != nil && owner.Time != nil && owner.Time.Before(m.Time))) {
			owner = m
		}
	}
	if owner == nil {
		return ""
	}
	who := fmt.Sprintf("field manager %q (%s", owner.Manager, owner.Operation)
	if owner.Time != nil {
		who += " at " + owner.Time.UTC().Format(time.RFC3339)
	}
	return who + ")"
}
