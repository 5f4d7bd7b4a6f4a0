// Package subscription validates WebhookSubscriptions and reports the verdict as their
// Ready condition: the endpoint they route to exists in their namespace, every eventTypes
// pattern is sane, the CEL filter compiles and, in a namespace that declares
// WebhookEventTypes, every exact event type is declared (EventTypesDeclared says which
// are not, or that the namespace has no catalog). It uses the same routing package as the
// dispatcher's router, so a subscription shown Ready is one the router can run.
//
// It follows the shape of cert-manager's readiness controller: fetch, gather inputs, run
// a chain of small checks each returning a reason and a message, set one condition, and
// write status only when it changed.
package subscription

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
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/eventschema"
	"github.com/herald-dev/herald/internal/index"
	"github.com/herald-dev/herald/internal/routing"
	"github.com/herald-dev/herald/internal/statusapply"
)

const (
	// FieldManager is the server-side apply field manager of the manager's status writes.
	FieldManager = "herald-manager"

	// endpointRefIndex indexes WebhookSubscriptions by the endpoint they route to.
	endpointRefIndex = "herald.spec.endpointRef.name"

	actionValidate = "Validate"
)

// Reconciler validates WebhookSubscriptions.
type Reconciler struct {
	// Client reads subscriptions and endpoints from the manager's cache and writes
	// status.
	Client client.Client
	// Recorder records Events on the subscriptions.
	Recorder events.EventRecorder
}

// +kubebuilder:rbac:groups=hooks.herald.dev,resources=webhooksubscriptions,verbs=get;list;watch
// +kubebuilder:rbac:groups=hooks.herald.dev,resources=webhooksubscriptions/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=hooks.herald.dev,resources=webhookendpoints,verbs=get;list;watch
// +kubebuilder:rbac:groups=hooks.herald.dev,resources=webhookeventtypes,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the reconciler, its endpoint index and its watches.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	err := mgr.GetFieldIndexer().IndexField(context.Background(), &heraldv1.WebhookSubscription{}, endpointRefIndex,
		func(o client.Object) []string {
			return []string{o.(*heraldv1.WebhookSubscription).Spec.EndpointRef.Name}
		})
	if err != nil {
		return fmt.Errorf("indexing WebhookSubscriptions by endpoint: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("webhooksubscription").
		// Our own status writes would otherwise come back as events.
		For(&heraldv1.WebhookSubscription{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Only an endpoint's existence matters here. Its updates are skipped: the
		// dispatcher writes endpoint status often and each write would wake every
		// subscription routing to it.
		Watches(&heraldv1.WebhookEndpoint{},
			handler.EnqueueRequestsFromMapFunc(index.Referrers(r.Client,
				func() client.ObjectList { return &heraldv1.WebhookSubscriptionList{} }, endpointRefIndex)),
			builder.WithPredicates(predicate.Funcs{
				UpdateFunc: func(event.UpdateEvent) bool { return false },
			})).
		// The namespace's catalog: a type declared, renamed or deleted changes what the
		// subscriptions of the namespace may name.
		Watches(&heraldv1.WebhookEventType{}, handler.EnqueueRequestsFromMapFunc(r.namespaceSubscriptions),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
}

// namespaceSubscriptions enqueues every subscription of an object's namespace.
func (r *Reconciler) namespaceSubscriptions(ctx context.Context, o client.Object) []reconcile.Request {
	var list heraldv1.WebhookSubscriptionList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		logf.FromContext(ctx).Error(err, "listing the subscriptions of a namespace", "namespace", o.GetNamespace())
		return nil
	}
	out := make([]reconcile.Request, len(list.Items))
	for i := range list.Items {
		out[i] = reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: list.Items[i].Name}}
	}
	return out
}

// inputs are what the checks look at.
type inputs struct {
	subscription *heraldv1.WebhookSubscription
	// endpointFound is whether spec.endpointRef resolves in the same namespace.
	endpointFound bool
	// declared holds the event types the namespace's WebhookEventTypes declare; empty
	// when the namespace has no catalog.
	declared map[string]bool
}

// check is one validation. It returns ok, or the reason and message of the Ready
// condition saying why not.
type check func(in *inputs) (reason, message string, ok bool)

// validationChecks run in order of severity and every failure is reported, the first
// in the reason: problems only a person can fix (patterns, filter) before a missing
// endpoint, which is the one most likely to resolve by itself (applied out of order).
var validationChecks = []check{
	eventTypesValid,
	filterCompiles,
	eventTypesInCatalog,
	endpointExists,
}

// Reconcile brings one subscription's Ready condition up to date.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	sub := &heraldv1.WebhookSubscription{}
	if err := r.Client.Get(ctx, req.NamespacedName, sub); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !sub.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}

	in, err := r.gatherInputs(ctx, sub)
	if err != nil {
		return ctrl.Result{}, err
	}
	reason, message := validate(in)
	declared := catalogCondition(in)

	readyChanged, err := r.applyStatus(ctx, sub, reason, message, declared)
	if err != nil {
		return ctrl.Result{}, err
	}
	if readyChanged {
		eventType := corev1.EventTypeWarning
		if reason == heraldv1.ReasonReady {
			eventType = corev1.EventTypeNormal
		}
		r.Recorder.Eventf(sub, nil, eventType, reason, actionValidate, "%s", message)
	}
	logf.FromContext(ctx).V(1).Info("reconciled subscription", "reason", reason, "readyChanged", readyChanged)
	return ctrl.Result{}, nil
}

// validate runs every check; the most severe failure gives the reason and the message
// lists every problem, so that fixing one does not reveal the next only then.
func validate(in *inputs) (reason, message string) {
	var problems []string
	for _, c := range validationChecks {
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
		return heraldv1.ReasonReady, fmt.Sprintf("routes to WebhookEndpoint %s", in.subscription.Spec.EndpointRef.Name)
	}
	return reason, strings.Join(problems, "; also ")
}

func (r *Reconciler) gatherInputs(ctx context.Context, sub *heraldv1.WebhookSubscription) (*inputs, error) {
	in := &inputs{subscription: sub}
	ep := &heraldv1.WebhookEndpoint{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: sub.Namespace, Name: sub.Spec.EndpointRef.Name}, ep)
	switch {
	case err == nil:
		in.endpointFound = true
	case client.IgnoreNotFound(err) != nil:
		return nil, fmt.Errorf("reading WebhookEndpoint %s/%s: %w", sub.Namespace, sub.Spec.EndpointRef.Name, err)
	}
	var catalog heraldv1.WebhookEventTypeList
	if err := r.Client.List(ctx, &catalog, client.InNamespace(sub.Namespace)); err != nil {
		return nil, fmt.Errorf("listing the WebhookEventTypes of %s: %w", sub.Namespace, err)
	}
	in.declared = make(map[string]bool, len(catalog.Items))
	for i := range catalog.Items {
		in.declared[catalog.Items[i].Spec.Type] = true
	}
	return in, nil
}

// undeclared lists the exact entries of spec.eventTypes that the namespace's catalog
// (with Herald's built-in operational types) does not declare. Globs are not checked:
// they may name types still to come.
func undeclared(in *inputs) []string {
	var out []string
	for _, p := range in.subscription.Spec.EventTypes {
		if strings.Contains(p, "*") || in.declared[p] {
			continue
		}
		if _, ok := eventschema.Builtin(p); ok {
			continue
		}
		out = append(out, p)
	}
	return out
}

// eventTypesInCatalog fails when the namespace has a catalog that lacks an exact type:
// the dispatcher refuses such events at the door, so the route cannot carry them.
func eventTypesInCatalog(in *inputs) (string, string, bool) {
	if len(in.declared) == 0 {
		return "", "", true
	}
	if missing := undeclared(in); len(missing) > 0 {
		return heraldv1.ReasonUnknownEventType, unknownMessage(in, missing), false
	}
	return "", "", true
}

func unknownMessage(in *inputs, missing []string) string {
	return fmt.Sprintf("no WebhookEventType of namespace %s declares %s, so the dispatcher refuses such events; declare it, or fix the name",
		in.subscription.Namespace, strings.Join(missing, ", "))
}

// catalogCondition is the EventTypesDeclared condition's verdict: whether every exact
// type is declared, or that the namespace has no catalog (which does not touch Ready).
func catalogCondition(in *inputs) metav1.Condition {
	c := metav1.Condition{Type: heraldv1.ConditionEventTypesDeclared, ObservedGeneration: in.subscription.Generation}
	missing := undeclared(in)
	switch {
	case len(missing) == 0:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, heraldv1.ReasonEventTypesDeclared,
			"every exact event type is declared in the namespace's catalog or built in"
	case len(in.declared) == 0:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, heraldv1.ReasonNoCatalog,
			fmt.Sprintf("namespace %s declares no WebhookEventTypes, so events of every type are accepted unchecked", in.subscription.Namespace)
	default:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, heraldv1.ReasonUnknownEventType, unknownMessage(in, missing)
	}
	return c
}

func endpointExists(in *inputs) (string, string, bool) {
	if !in.endpointFound {
		return heraldv1.ReasonEndpointNotFound, fmt.Sprintf("WebhookEndpoint %s does not exist in namespace %s",
			in.subscription.Spec.EndpointRef.Name, in.subscription.Namespace), false
	}
	return "", "", true
}

func eventTypesValid(in *inputs) (string, string, bool) {
	if len(in.subscription.Spec.EventTypes) == 0 {
		// The CRD requires at least one; kept for objects that skipped it.
		return heraldv1.ReasonInvalidEventType, "eventTypes is empty, so nothing would be delivered", false
	}
	for _, p := range in.subscription.Spec.EventTypes {
		if err := routing.ValidPattern(p); err != nil {
			return heraldv1.ReasonInvalidEventType, err.Error(), false
		}
	}
	return "", "", true
}

// filterCompiles asks the filter's judge, the one the dispatcher loads filters with: a
// filter refused here (it does not compile, or its worst case is over the budget) is
// never run, so no event is routed through the subscription until it is fixed.
func filterCompiles(in *inputs) (string, string, bool) {
	if in.subscription.Spec.Filter == "" {
		return "", "", true
	}
	if _, err := routing.CompileFilter(in.subscription.Spec.Filter); err != nil {
		return heraldv1.ReasonInvalidFilter, err.Error() + notRouted, false
	}
	return "", "", true
}

// notRouted ends the message of a refused filter.
const notRouted = "; no event is routed through this subscription until the filter is fixed"

// managedStatus is the status this controller writes, all of it today; applying it by
// server-side apply still keeps the door open for other writers of other conditions.
type managedStatus struct {
	ObservedGeneration int64              `json:"observedGeneration"`
	Conditions         []metav1.Condition `json:"conditions"`
}

// applyStatus writes observedGeneration, the Ready condition and the EventTypesDeclared
// condition when they differ from what is stored, keeping each lastTransitionTime
// unless its status changes, and reports whether Ready's status or reason changed.
func (r *Reconciler) applyStatus(ctx context.Context, sub *heraldv1.WebhookSubscription, reason, message string, declared metav1.Condition) (bool, error) {
	status := metav1.ConditionFalse
	if reason == heraldv1.ReasonReady {
		status = metav1.ConditionTrue
	}
	want := managedStatus{
		ObservedGeneration: sub.Generation,
		Conditions: []metav1.Condition{statusapply.Condition(sub.Status.Conditions, metav1.Condition{
			Type:               heraldv1.ConditionReady,
			Status:             status,
			Reason:             reason,
			Message:            message,
			ObservedGeneration: sub.Generation,
		}), statusapply.Condition(sub.Status.Conditions, declared)},
	}
	have := managedStatus{ObservedGeneration: sub.Status.ObservedGeneration}
	old := meta.FindStatusCondition(sub.Status.Conditions, heraldv1.ConditionReady)
	if old != nil {
		have.Conditions = []metav1.Condition{*old}
	}
	if c := meta.FindStatusCondition(sub.Status.Conditions, heraldv1.ConditionEventTypesDeclared); c != nil {
		have.Conditions = append(have.Conditions, *c)
	}
	if apiequality.Semantic.DeepEqual(want, have) {
		return false, nil
	}

	if err := statusapply.Apply(ctx, r.Client, "WebhookSubscription", sub.Namespace, sub.Name, &want, FieldManager); err != nil {
		return false, err
	}
	return old == nil || old.Status != status || old.Reason != reason, nil
}
