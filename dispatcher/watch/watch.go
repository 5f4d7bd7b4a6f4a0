// Package watch keeps the dispatcher's view of the cluster current: it watches
// WebhookEndpoints and WebhookSubscriptions through informers, and the Secrets endpoints
// reference through a metadata-only informer and reads of the referenced ones
// (ReferencedSecrets, which holds no other Secret's content), and turns each change into
// the engine's endpoint configuration and the router's subscription table, within
// seconds and without a restart. A rotated secret swaps the endpoint's signer between
// two attempts; no delivery is dropped.
package watch

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/resolve"
	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/internal/index"
	"github.com/herald-dev/herald/internal/outbound"
	"github.com/herald-dev/herald/internal/routing"
)

// secretIndex indexes endpoints by the names of every Secret they read.
const secretIndex = "dispatcher.herald.dev/secrets"

// serviceIndex indexes endpoints by the Service they send to (spec.service).
const serviceIndex = "dispatcher.herald.dev/service"

// Endpoints feeds WebhookEndpoints into the engine.
type Endpoints struct {
	Client client.Client
	Engine *delivery.Engine
	Policy outbound.Policy
	// Egress is the operator's proxy (--egress-proxy) and its no-proxy rules; the zero
	// value sends directly.
	Egress outbound.Egress
	// Secrets reads the Secrets endpoints reference; default a ReferencedSecrets on the
	// manager's cache and API reader.
	Secrets SecretSource
	// Lifecycle acts on re-enable and replay requests; nil leaves them out.
	Lifecycle Lifecycle
	// Notify carries endpoints to look at again (shared state changed elsewhere).
	Notify chan event.GenericEvent
}

// Lifecycle is what the watch needs of the failure lifecycle (outcome.Requests): it
// acts on the endpoint's re-enable and replay requests and says whether the endpoint is
// disabled.
type Lifecycle interface {
	Handle(ctx context.Context, k delivery.Key, ep *heraldv1.WebhookEndpoint) (disabled bool, err error)
}

// SetupWithManager registers the endpoint watch.
func (w *Endpoints) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &heraldv1.WebhookEndpoint{}, secretIndex,
		func(o client.Object) []string { return o.(*heraldv1.WebhookEndpoint).ReferencedSecretNames() }); err != nil {
		return fmt.Errorf("indexing endpoints by secret: %w", err)
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &heraldv1.WebhookEndpoint{}, serviceIndex,
		func(o client.Object) []string {
			if name := o.(*heraldv1.WebhookEndpoint).ReferencedServiceName(); name != "" {
				return []string{name}
			}
			return nil
		}); err != nil {
		return fmt.Errorf("indexing endpoints by service: %w", err)
	}
	if w.Secrets == nil {
		w.Secrets = NewReferencedSecrets(mgr.GetClient(), mgr.GetAPIReader())
	}
	if rs, ok := w.Secrets.(*ReferencedSecrets); ok && rs.Referenced == nil {
		rs.Referenced = w.referencedSecrets
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("dispatcher-endpoints").
		For(&heraldv1.WebhookEndpoint{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{})))
	b = w.Secrets.watch(b, handler.EnqueueRequestsFromMapFunc(index.Referrers(w.Client,
		func() client.ObjectList { return &heraldv1.WebhookEndpointList{} }, secretIndex)))
	// A Service an endpoint names: created after it, given another cluster IP, deleted.
	b = b.Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(index.Referrers(w.Client,
		func() client.ObjectList { return &heraldv1.WebhookEndpointList{} }, serviceIndex)))
	if w.Notify != nil {
		b = b.WatchesRawSource(source.Channel(w.Notify, &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(w)
}

// referencedSecrets names the Secrets the namespace's endpoints reference.
func (w *Endpoints) referencedSecrets(ctx context.Context, namespace string) ([]string, error) {
	var eps heraldv1.WebhookEndpointList
	if err := w.Client.List(ctx, &eps, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing endpoints: %w", err)
	}
	var names []string
	for i := range eps.Items {
		names = append(names, eps.Items[i].ReferencedSecretNames()...)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// Reconcile rebuilds one endpoint's delivery configuration.
func (w *Endpoints) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var ep heraldv1.WebhookEndpoint
	if err := w.Client.Get(ctx, req.NamespacedName, &ep); err != nil {
		if apierrors.IsNotFound(err) {
			// The engine retires it, and its stored data with it.
			key := delivery.Key{Namespace: req.Namespace, Name: req.Name}
			w.Secrets.Retain(key, nil)
			w.Engine.Remove(key)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("reading endpoint: %w", err)
	}
	// The object, not the name: one created again under a deleted one's name is
	// another endpoint, with none of its data.
	key := delivery.Key{Namespace: req.Namespace, Name: req.Name, UID: string(ep.UID)}
	disabled, err := w.lifecycle(ctx, key, &ep)
	if err != nil {
		return reconcile.Result{}, err
	}
	cfg, err := w.build(ctx, key, &ep)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("resolving endpoint: %w", err)
	}
	if disabled && cfg.Hold == "" {
		cfg.Target = nil
		cfg.Hold, cfg.HoldMessage = heraldv1.ReasonDisabled, "auto-disabled after consecutive failures"
	}
	prev, known := w.Engine.Config(key)
	w.Engine.Upsert(key, cfg)
	log := ctrl.LoggerFrom(ctx)
	switch {
	case cfg.Hold == "":
		log.V(1).Info("endpoint configured", "generation", ep.Generation)
	case known && prev.Hold == cfg.Hold:
		// Already said; the status carries it.
	case slices.Contains(heraldv1.SelfResolvingReasons, cfg.Hold):
		// The manager is about to fix this (it generates the signing Secret): at start-up
		// every new endpoint passes through it for a moment, which is no news.
		log.V(1).Info("deliveries held", "reason", cfg.Hold, "message", cfg.HoldMessage)
	default:
		log.Info("deliveries held", "reason", cfg.Hold, "message", cfg.HoldMessage)
	}
	return reconcile.Result{}, nil
}

// lifecycle hands the endpoint's re-enable and replay requests (annotations, a spec
// edit after auto-disable) to the Lifecycle and reports whether the endpoint is
// disabled; the operator never edits spec.
func (w *Endpoints) lifecycle(ctx context.Context, key delivery.Key, ep *heraldv1.WebhookEndpoint) (bool, error) {
	if w.Lifecycle == nil {
		return false, nil
	}
	return w.Lifecycle.Handle(ctx, key, ep)
}

// build resolves the endpoint into an engine configuration, or a hold saying why not.
// The judgement is dispatcher/resolve's, the same the manager reports as Ready. The
// Secrets it read are the ones kept for the endpoint.
func (w *Endpoints) build(ctx context.Context, key delivery.Key, ep *heraldv1.WebhookEndpoint) (delivery.EndpointConfig, error) {
	var read []types.NamespacedName
	get := func(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
		read = append(read, types.NamespacedName{Namespace: namespace, Name: name})
		return w.Secrets.Get(ctx, namespace, name)
	}
	res, err := resolve.Endpoint(ctx, ep, get, w.Policy, resolve.WithServices(w.service), resolve.WithEgress(w.Egress))
	w.Secrets.Retain(key, read)
	if err != nil {
		return delivery.EndpointConfig{}, err
	}
	return delivery.Resolved(res, ep.Generation), nil
}

// service reads a Service an endpoint names from the informer cache.
func (w *Endpoints) service(ctx context.Context, namespace, name string) (*corev1.Service, error) {
	var svc corev1.Service
	if err := w.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading Service %s/%s: %w", namespace, name, err)
	}
	return &svc, nil
}

// Subscriptions feeds WebhookSubscriptions into the router.
type Subscriptions struct {
	Client client.Client
	Router *router.Table
	// Filters, when set, hears of every subscription seen, so that a changed filter
	// starts its failure count afresh.
	Filters interface {
		Reset(ctx context.Context, sub *heraldv1.WebhookSubscription) error
	}
}

// SetupWithManager registers the subscription watch.
func (w *Subscriptions) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("dispatcher-subscriptions").
		For(&heraldv1.WebhookSubscription{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(w)
}

// Reconcile updates the router's view of one subscription. A subscription whose filter
// does not compile routes nothing (the manager reports why on its status).
func (w *Subscriptions) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var sub heraldv1.WebhookSubscription
	if err := w.Client.Get(ctx, req.NamespacedName, &sub); err != nil {
		if apierrors.IsNotFound(err) {
			w.Router.Delete(req.Namespace, req.Name)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("reading subscription: %w", err)
	}
	if w.Filters != nil {
		if err := w.Filters.Reset(ctx, &sub); err != nil {
			return reconcile.Result{}, fmt.Errorf("resetting the filter status: %w", err)
		}
	}
	s, err := Route(&sub)
	if err != nil {
		w.Router.Delete(req.Namespace, req.Name)
		ctrl.LoggerFrom(ctx).Info("subscription filter does not compile; routing nothing", "error", err.Error())
		return reconcile.Result{}, nil
	}
	w.Router.Set(req.Namespace, s)
	return reconcile.Result{}, nil
}

// Route is the router's entry for a subscription: its event types and its compiled
// filter. A filter that does not compile is an error, and the subscription routes
// nothing (the manager reports it on the subscription's status).
func Route(sub *heraldv1.WebhookSubscription) (router.Subscription, error) {
	s := router.Subscription{Name: sub.Name, Endpoint: sub.Spec.EndpointRef.Name, Patterns: sub.Spec.EventTypes}
	if sub.Spec.Filter != "" {
		f, err := routing.CompileFilter(sub.Spec.Filter)
		if err != nil {
			return router.Subscription{}, fmt.Errorf("compiling the filter of subscription %s/%s: %w", sub.Namespace, sub.Name, err)
		}
		s.Filter = f
	}
	return s, nil
}
