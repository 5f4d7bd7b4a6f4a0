package watch

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/catalog"
)

// EventTypes feeds WebhookEventTypes into the catalog that ingest checks events
// against; a changed schema is compiled here, once, and replaces the old one.
type EventTypes struct {
	Client  client.Client
	Catalog *catalog.Catalog
}

// SetupWithManager registers the event type watch.
func (w *EventTypes) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("dispatcher-eventtypes").
		For(&heraldv1.WebhookEventType{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(w)
}

// Reconcile updates the catalog's view of one WebhookEventType.
func (w *EventTypes) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var et heraldv1.WebhookEventType
	if err := w.Client.Get(ctx, req.NamespacedName, &et); err != nil {
		if apierrors.IsNotFound(err) {
			w.Catalog.Delete(req.Namespace, req.Name)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("reading event type: %w", err)
	}
	w.Catalog.Set(&et)
	return reconcile.Result{}, nil
}
