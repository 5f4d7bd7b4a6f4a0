// Package index maps a changed object to the objects that refer to it, through a field
// index of the controller-runtime cache: a Secret to the WebhookEndpoints that read it,
// a WebhookEndpoint to the WebhookSubscriptions that route to it.
package index

import (
	"context"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Referrers returns a map function enqueueing every object of the list's kind, in the
// changed object's namespace, whose field index holds the changed object's name. newList
// makes an empty list of the referring kind.
func Referrers(c client.Reader, newList func() client.ObjectList, field string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		list := newList()
		if err := c.List(ctx, list, client.InNamespace(o.GetNamespace()), client.MatchingFields{field: o.GetName()}); err != nil {
			logf.FromContext(ctx).Error(err, "listing referrers", "index", field, "object", client.ObjectKeyFromObject(o))
			return nil
		}
		var reqs []reconcile.Request
		_ = apimeta.EachListItem(list, func(item runtime.Object) error {
			if m, ok := item.(client.Object); ok {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: m.GetNamespace(), Name: m.GetName()}})
			}
			return nil
		})
		return reqs
	}
}
