package endpoint

import (
	"context"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/statusapply"
)

// managedStatus is the part of WebhookEndpointStatus this controller owns. Applying
// exactly these fields makes the API server record them under FieldManager and leave
// every other field, including other entries of the conditions map, to their owners.
type managedStatus struct {
	ObservedGeneration int64              `json:"observedGeneration"`
	SecretName         string             `json:"secretName,omitempty"`
	PublicKey          string             `json:"publicKey,omitempty"`
	PreviousPublicKey  string             `json:"previousPublicKey,omitempty"`
	Conditions         []metav1.Condition `json:"conditions"`
}

// desiredStatus computes the owned fields from the outcome of the checks, keeping the
// Ready condition's lastTransitionTime when its status does not change.
func desiredStatus(ep *heraldv1.WebhookEndpoint, in *inputs, reason, message string) managedStatus {
	status := metav1.ConditionFalse
	if reason == heraldv1.ReasonReady {
		status = metav1.ConditionTrue
	}
	ready := statusapply.Condition(ep.Status.Conditions, metav1.Condition{
		Type:               heraldv1.ConditionReady,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: ep.Generation,
	})

	out := managedStatus{ObservedGeneration: ep.Generation, Conditions: []metav1.Condition{ready}}
	// secretName reports a Secret the signing secret can actually be read from.
	out.SecretName = in.result.SigningSecret
	out.PublicKey, out.PreviousPublicKey = in.result.PublicKey, in.result.PreviousPublicKey
	return out
}

// currentStatus extracts the owned fields as they are now.
func currentStatus(ep *heraldv1.WebhookEndpoint) managedStatus {
	out := managedStatus{ObservedGeneration: ep.Status.ObservedGeneration, SecretName: ep.Status.SecretName,
		PublicKey: ep.Status.PublicKey, PreviousPublicKey: ep.Status.PreviousPublicKey}
	if c := meta.FindStatusCondition(ep.Status.Conditions, heraldv1.ConditionReady); c != nil {
		out.Conditions = []metav1.Condition{*c}
	}
	return out
}

// applyStatus writes the owned status fields by server-side apply when they differ from
// the current ones, and reports whether the Ready condition's status or reason changed
// (the moments worth an Event). Skipping equal writes keeps the object's resourceVersion
// still once settled, so watchers such as Argo CD and kstatus see no churn.
func (r *Reconciler) applyStatus(ctx context.Context, ep *heraldv1.WebhookEndpoint, in *inputs, reason, message string) (readyChanged bool, err error) {
	want := desiredStatus(ep, in, reason, message)
	have := currentStatus(ep)
	if apiequality.Semantic.DeepEqual(want, have) {
		return false, nil
	}
	readyChanged = len(have.Conditions) == 0 ||
		have.Conditions[0].Status != want.Conditions[0].Status ||
		have.Conditions[0].Reason != want.Conditions[0].Reason

	// Force: these fields are the manager's by design; if another writer took one of
	// them (say a person with kubectl), the manager takes it back.
	if err := statusapply.Apply(ctx, r.Client, "WebhookEndpoint", ep.Namespace, ep.Name, &want, FieldManager); err != nil {
		return false, err
	}
	return readyChanged, nil
}
