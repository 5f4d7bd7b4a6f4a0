// Package statusapply writes the part of a Herald object's status that one component
// owns, by server-side apply on the status subresource. The manager and the dispatcher
// share the WebhookEndpoint status; applying only their own fields under their own
// field manager lets the API server keep the two apart, including the entries of the
// conditions list (a map keyed by type).
package statusapply

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// Condition returns c as it is to be applied next to the conditions the object has now:
// its lastTransitionTime is the one it has when the status does not change (so an
// unchanged condition compares equal and is not written again), or now.
func Condition(have []metav1.Condition, c metav1.Condition) metav1.Condition {
	conds := []metav1.Condition{}
	if old := meta.FindStatusCondition(have, c.Type); old != nil {
		conds = append(conds, *old)
	}
	meta.SetStatusCondition(&conds, c)
	return conds[0]
}

// Apply applies status (a struct holding exactly the owned fields) to the named object
// of kind (WebhookEndpoint, WebhookSubscription) as fieldManager, taking ownership by
// force: the fields are the component's by design. A vanished object is not an error.
func Apply(ctx context.Context, c client.Client, kind, namespace, name string, status any, fieldManager string) error {
	return apply(ctx, c, kind, namespace, name, "", status, fieldManager)
}

// ApplyAt is Apply on the condition that the object is still at resourceVersion: a
// status computed from what the object held (a count added to) is refused with a
// Conflict, rather than lost, when another writer changed the object meanwhile.
func ApplyAt(ctx context.Context, c client.Client, kind, namespace, name, resourceVersion string, status any, fieldManager string) error {
	return apply(ctx, c, kind, namespace, name, resourceVersion, status, fieldManager)
}

func apply(ctx context.Context, c client.Client, kind, namespace, name, resourceVersion string, status any, fieldManager string) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(status)
	if err != nil {
		return fmt.Errorf("encoding status of %s %s/%s: %w", kind, namespace, name, err)
	}
	patch := &unstructured.Unstructured{Object: map[string]any{"status": m}}
	patch.SetGroupVersionKind(heraldv1.GroupVersion.WithKind(kind))
	patch.SetNamespace(namespace)
	patch.SetName(name)
	patch.SetResourceVersion(resourceVersion)
	if err := c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(patch),
		client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return nil
		}
		return fmt.Errorf("applying status of %s %s/%s: %w", kind, namespace, name, err)
	}
	return nil
}
