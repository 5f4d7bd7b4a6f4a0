// Package endpoint reconciles the readiness of WebhookEndpoints: it checks the URL
// against the outbound policy, resolves the signing Secret (generating it when it does
// not exist) and the previous Secret of a rotation, and reports the outcome as the Ready
// condition. For ed25519 endpoints it publishes the public keys, in status and in the
// ConfigMap <endpoint>-public-key.
//
// The reconciler follows cert-manager's readiness controller: fetch the endpoint, gather
// its inputs (the Secrets), run a chain of small checks that each return a reason and a
// message, set one condition, and write status only when it differs from what is there.
//
// Status is shared with the dispatcher, which owns the delivery half (failures, counters,
// the Disabled condition). This controller therefore writes only observedGeneration,
// secretName and the Ready condition, by server-side apply under its own field manager,
// so neither writer can erase the other's fields.
package endpoint

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/index"
	"github.com/herald-dev/herald/internal/outbound"
)

const (
	// FieldManager is the server-side apply field manager of the manager's status writes.
	FieldManager = "herald-manager"

	// secretNamesIndex indexes WebhookEndpoints by the names of the Secrets they
	// reference (signing and previous), so a Secret event finds its endpoints without a
	// scan of every endpoint in the namespace.
	secretNamesIndex = "herald.spec.secretNames"

	// Event actions (events.k8s.io "action": what the controller was doing).
	actionCheckReadiness = "CheckReadiness"
	actionGenerateSecret = "GenerateSecret"

	// serviceRecheck is how often an endpoint waiting for its Service looks again.
	serviceRecheck = 30 * time.Second
)

// Reconciler reconciles the readiness of WebhookEndpoints.
type Reconciler struct {
	// Client reads WebhookEndpoints from the manager's cache and writes status and
	// generated Secrets.
	Client client.Client
	// APIReader reads Secrets straight from the API server. The manager watches Secrets
	// as metadata only, so their contents (every Secret in the cluster) never sit in its
	// cache.
	APIReader client.Reader
	// Recorder records Events on the endpoints.
	Recorder events.EventRecorder
	// Policy decides which URLs are allowed.
	Policy outbound.Policy
}

// +kubebuilder:rbac:groups=hooks.herald.dev,resources=webhookendpoints,verbs=get;list;watch
// +kubebuilder:rbac:groups=hooks.herald.dev,resources=webhookendpoints/status,verbs=get;patch;update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create
// The Services endpoints name (spec.service) are read from the API server, never cached.
// +kubebuilder:rbac:groups="",resources=services,verbs=get
// The public-key ConfigMaps are read from the API server, never watched or listed.
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;create;update;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the reconciler, its Secret index and its watches.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	err := mgr.GetFieldIndexer().IndexField(context.Background(), &heraldv1.WebhookEndpoint{}, secretNamesIndex,
		func(o client.Object) []string {
			return o.(*heraldv1.WebhookEndpoint).ReferencedSecretNames()
		})
	if err != nil {
		return fmt.Errorf("indexing WebhookEndpoints by Secret name: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("webhookendpoint").
		// Only spec changes: the dispatcher updates status often (counters, last
		// attempt), and each reconcile reads Secrets from the API server. Our own status
		// writes would otherwise come back as events too.
		// The status changes that matter are the dispatcher's Disabled and Delivering
		// conditions, mirrored into Ready.
		For(&heraldv1.WebhookEndpoint{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, dispatcherViewChanged))).
		// Generated Secrets: metadata only, like every Secret this manager watches.
		Owns(&corev1.Secret{}, builder.OnlyMetadata).
		// Any Secret an endpoint references, including ones a person creates or fixes
		// after the endpoint; a key added later flips Ready at once.
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(index.Referrers(r.Client,
			func() client.ObjectList { return &heraldv1.WebhookEndpointList{} }, secretNamesIndex))).
		Complete(r)
}

// Reconcile brings one endpoint's Ready condition up to date.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)

	ep := &heraldv1.WebhookEndpoint{}
	if err := r.Client.Get(ctx, req.NamespacedName, ep); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ep.DeletionTimestamp.IsZero() {
		// Generated Secrets go with the endpoint through their owner reference; there is
		// nothing to report on an object on its way out.
		return ctrl.Result{}, nil
	}

	in, gatherErr := r.gatherInputs(ctx, ep)
	if gatherErr != nil && in == nil {
		return ctrl.Result{}, gatherErr
	}

	reason, message := evaluate(in)
	readyChanged, err := r.applyStatus(ctx, ep, in, reason, message)
	if err != nil {
		return ctrl.Result{}, err
	}
	if readyChanged {
		r.recordReadiness(ep, reason, message)
	}
	if err := r.publishPublicKey(ctx, ep, in.result); err != nil {
		return ctrl.Result{}, err
	}
	log.V(1).Info("reconciled endpoint", "reason", reason, "readyChanged", readyChanged)
	if reason == heraldv1.ReasonServiceNotFound && gatherErr == nil {
		// The dispatcher, which watches Services, brings the endpoint back as soon as
		// the Service appears (its Delivering condition); this is for when none runs.
		return ctrl.Result{RequeueAfter: serviceRecheck}, nil
	}
	// A failed Secret generation is reported in status and retried with backoff.
	return ctrl.Result{}, gatherErr
}

// recordReadiness records an Event for a change of the Ready condition, Warning with
// the condition's reason when the endpoint is not ready.
func (r *Reconciler) recordReadiness(ep *heraldv1.WebhookEndpoint, reason, message string) {
	eventType := corev1.EventTypeWarning
	if reason == heraldv1.ReasonReady {
		eventType = corev1.EventTypeNormal
	}
	r.Recorder.Eventf(ep, nil, eventType, reason, actionCheckReadiness, "%s", message)
}

// dispatcherViewChanged passes updates that change what the dispatcher reports: the
// Disabled condition's status, or the Delivering condition's status or reason.
var dispatcherViewChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		was, okOld := e.ObjectOld.(*heraldv1.WebhookEndpoint)
		now, okNew := e.ObjectNew.(*heraldv1.WebhookEndpoint)
		if !okOld || !okNew {
			return false
		}
		if meta.IsStatusConditionTrue(was.Status.Conditions, heraldv1.ConditionDisabled) !=
			meta.IsStatusConditionTrue(now.Status.Conditions, heraldv1.ConditionDisabled) {
			return true
		}
		a := meta.FindStatusCondition(was.Status.Conditions, heraldv1.ConditionDelivering)
		b := meta.FindStatusCondition(now.Status.Conditions, heraldv1.ConditionDelivering)
		switch {
		case a == nil || b == nil:
			return (a == nil) != (b == nil)
		default:
			return a.Status != b.Status || a.Reason != b.Reason || a.Message != b.Message
		}
	},
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}
