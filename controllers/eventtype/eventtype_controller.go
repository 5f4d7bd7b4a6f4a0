// Package eventtype validates WebhookEventTypes and reports the verdict as their Ready
// condition: the schema compiles within Herald's bounds (internal/eventschema, the same
// judge the dispatcher enforces with), every example validates against it, and no older
// WebhookEventType of the namespace declares the same type.
//
// It reads like the subscription controller: fetch, gather inputs, run a chain of small
// checks each returning a reason and a message, set one condition, and write status only
// when it changed.
package eventtype

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/eventschema"
	"github.com/herald-dev/herald/internal/statusapply"
)

const (
	// FieldManager is the server-side apply field manager of the manager's status writes.
	FieldManager = "herald-manager"

	// TypeIndex indexes WebhookEventTypes by spec.type.
	TypeIndex = "herald.spec.type"

	actionValidate = "Validate"
)

// Reconciler validates WebhookEventTypes.
type Reconciler struct {
	// Client reads WebhookEventTypes from the manager's cache and writes status.
	Client client.Client
	// Recorder records Events on the WebhookEventTypes.
	Recorder events.EventRecorder
}

// +kubebuilder:rbac:groups=hooks.herald.dev,resources=webhookeventtypes,verbs=get;list;watch
// +kubebuilder:rbac:groups=hooks.herald.dev,resources=webhookeventtypes/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the reconciler, its type index and its watches.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	err := mgr.GetFieldIndexer().IndexField(context.Background(), &heraldv1.WebhookEventType{}, TypeIndex,
		func(o client.Object) []string { return []string{o.(*heraldv1.WebhookEventType).Spec.Type} })
	if err != nil {
		return fmt.Errorf("indexing WebhookEventTypes by type: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("webhookeventtype").
		For(&heraldv1.WebhookEventType{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A duplicate becomes the owner when the older declaration goes or changes type.
		Watches(&heraldv1.WebhookEventType{}, handler.EnqueueRequestsFromMapFunc(r.sameType),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
}

// sameType enqueues the other WebhookEventTypes of the namespace declaring the same type.
func (r *Reconciler) sameType(ctx context.Context, o client.Object) []reconcile.Request {
	et, ok := o.(*heraldv1.WebhookEventType)
	if !ok {
		return nil
	}
	var list heraldv1.WebhookEventTypeList
	if err := r.Client.List(ctx, &list, client.InNamespace(et.Namespace), client.MatchingFields{TypeIndex: et.Spec.Type}); err != nil {
		logf.FromContext(ctx).Error(err, "listing WebhookEventTypes of the same type")
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		if list.Items[i].Name != et.Name {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: et.Namespace, Name: list.Items[i].Name}})
		}
	}
	return out
}

// inputs are what the checks look at.
type inputs struct {
	eventType *heraldv1.WebhookEventType
	// olderDuplicate is the WebhookEventType that owns the same type, if any.
	olderDuplicate string
	// schema is the compiled schema, or compileErr why not.
	schema     *eventschema.Schema
	compileErr error
}

type check func(in *inputs) (reason, message string, ok bool)

// checks run in order; the first failure is the reason, every failure is in the message.
var checks = []check{schemaCompiles, examplesValidate, notDuplicate}

// Reconcile brings one WebhookEventType's Ready condition up to date.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	et := &heraldv1.WebhookEventType{}
	if err := r.Client.Get(ctx, req.NamespacedName, et); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !et.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	in, err := r.gatherInputs(ctx, et)
	if err != nil {
		return ctrl.Result{}, err
	}
	reason, message := validate(in)
	changed, err := r.applyStatus(ctx, et, reason, message)
	if err != nil {
		return ctrl.Result{}, err
	}
	if changed {
		eventType := corev1.EventTypeWarning
		if reason == heraldv1.ReasonReady {
			eventType = corev1.EventTypeNormal
		}
		r.Recorder.Eventf(et, nil, eventType, reason, actionValidate, "%s", message)
	}
	logf.FromContext(ctx).V(1).Info("reconciled event type", "type", et.Spec.Type, "reason", reason, "readyChanged", changed)
	return ctrl.Result{}, nil
}

func (r *Reconciler) gatherInputs(ctx context.Context, et *heraldv1.WebhookEventType) (*inputs, error) {
	in := &inputs{eventType: et}
	in.schema, in.compileErr = eventschema.Compile(et.Spec.Schema)
	var list heraldv1.WebhookEventTypeList
	if err := r.Client.List(ctx, &list, client.InNamespace(et.Namespace), client.MatchingFields{TypeIndex: et.Spec.Type}); err != nil {
		return nil, fmt.Errorf("listing WebhookEventTypes of type %s in %s: %w", et.Spec.Type, et.Namespace, err)
	}
	var owner *heraldv1.WebhookEventType
	for i := range list.Items {
		o := &list.Items[i]
		if o.Name != et.Name && o.DeletionTimestamp.IsZero() && o.DeclaredBefore(et) && (owner == nil || o.DeclaredBefore(owner)) {
			owner = o
		}
	}
	if owner != nil {
		in.olderDuplicate = owner.Name
	}
	return in, nil
}

func validate(in *inputs) (reason, message string) {
	var problems []string
	for _, c := range checks {
		if rsn, msg, ok := c(in); !ok {
			if reason == "" {
				reason = rsn
			} else {
				msg = rsn + ": " + msg
			}
			problems = append(problems, msg)
		}
	}
	if reason == "" {
		msg := fmt.Sprintf("declares %s; events of this type are validated against its schema", in.eventType.Spec.Type)
		if in.eventType.Spec.Deprecated {
			msg += " (deprecated: accepted with a Warning)"
		}
		return heraldv1.ReasonReady, msg
	}
	return reason, strings.Join(problems, "; also ")
}

func schemaCompiles(in *inputs) (string, string, bool) {
	if in.compileErr != nil {
		return heraldv1.ReasonInvalidSchema, in.compileErr.Error() + " (events of this type are accepted unchecked until it is fixed)", false
	}
	return "", "", true
}

func examplesValidate(in *inputs) (string, string, bool) {
	if in.schema == nil {
		return "", "", true // the schema's own problem is reported
	}
	for i, ex := range in.eventType.Spec.Examples {
		if _, err := in.schema.Example(i, ex); err != nil {
			return heraldv1.ReasonInvalidExample, err.Error(), false
		}
	}
	return "", "", true
}

func notDuplicate(in *inputs) (string, string, bool) {
	if in.olderDuplicate != "" {
		return heraldv1.ReasonDuplicateEventType, fmt.Sprintf("WebhookEventType %s already declares %s in namespace %s; this one is ignored until that one is deleted or changes its type",
			in.olderDuplicate, in.eventType.Spec.Type, in.eventType.Namespace), false
	}
	return "", "", true
}

type managedStatus struct {
	ObservedGeneration int64              `json:"observedGeneration"`
	Conditions         []metav1.Condition `json:"conditions"`
}

// applyStatus writes observedGeneration and Ready when they differ from what is stored
// and reports whether Ready's status or reason changed.
func (r *Reconciler) applyStatus(ctx context.Context, et *heraldv1.WebhookEventType, reason, message string) (bool, error) {
	status := metav1.ConditionFalse
	if reason == heraldv1.ReasonReady {
		status = metav1.ConditionTrue
	}
	want := managedStatus{
		ObservedGeneration: et.Generation,
		Conditions: []metav1.Condition{statusapply.Condition(et.Status.Conditions, metav1.Condition{
			Type: heraldv1.ConditionReady, Status: status, Reason: reason, Message: message, ObservedGeneration: et.Generation,
		})},
	}
	have := managedStatus{ObservedGeneration: et.Status.ObservedGeneration}
	old := meta.FindStatusCondition(et.Status.Conditions, heraldv1.ConditionReady)
	if old != nil {
		have.Conditions = []metav1.Condition{*old}
	}
	if apiequality.Semantic.DeepEqual(want, have) {
		return false, nil
	}
	if err := statusapply.Apply(ctx, r.Client, "WebhookEventType", et.Namespace, et.Name, &want, FieldManager); err != nil {
		return false, err
	}
	return old == nil || old.Status != status || old.Reason != reason, nil
}
