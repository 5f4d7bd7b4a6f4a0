package endpoint

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// check is one readiness policy. It returns ok, or the reason and message of the Ready
// condition saying why not. Messages name Secrets and keys, never their values.
type check func(in *inputs) (reason, message string, ok bool)

// readinessChecks run in order and the first failure is reported: the resolver's
// judgement (the same the dispatcher acts on), then what only the dispatcher knows.
var readinessChecks = []check{
	resolved,
	notDisabled,
	dispatcherDelivers,
}

// evaluate runs the checks and returns the Ready reason and message.
func evaluate(in *inputs) (reason, message string) {
	for _, c := range readinessChecks {
		if reason, message, ok := c(in); !ok {
			return reason, message
		}
	}
	return heraldv1.ReasonReady, in.result.Message
}

// resolved reports dispatcher/resolve's judgement on the spec and the Secrets.
func resolved(in *inputs) (string, string, bool) {
	r := in.result
	if r.Ready() {
		return "", "", true
	}
	msg := r.Message
	if r.Reason == heraldv1.ReasonSecretNotFound && in.generateErr != nil {
		msg = fmt.Sprintf("signing Secret %s does not exist and could not be generated: %v", in.endpoint.SigningSecretRef().Name, in.generateErr)
	}
	return r.Reason, msg, false
}

// notDisabled mirrors the dispatcher's Disabled condition into Ready, so that tools
// that read only Ready (kstatus, Argo CD, kubectl wait) see an auto-disabled endpoint.
func notDisabled(in *inputs) (string, string, bool) {
	c := meta.FindStatusCondition(in.endpoint.Status.Conditions, heraldv1.ConditionDisabled)
	if c == nil || c.Status != metav1.ConditionTrue {
		return "", "", true
	}
	return heraldv1.ReasonDisabled, fmt.Sprintf("auto-disabled by the dispatcher (%s); deliveries are held. Re-enable with "+
		"kubectl annotate whe %s %s=$(date +%%s) --overwrite, or edit the spec", c.Message, in.endpoint.Name, heraldv1.AnnotationReenable), false
}

// dispatcherDelivers mirrors the dispatcher's Delivering condition into Ready: when the
// dispatcher holds deliveries, for whatever reason (its view of a Secret lagging behind
// ours, most often, for a few seconds), the endpoint is not Ready, with its reason.
func dispatcherDelivers(in *inputs) (string, string, bool) {
	c := meta.FindStatusCondition(in.endpoint.Status.Conditions, heraldv1.ConditionDelivering)
	if c == nil || c.Status != metav1.ConditionFalse {
		return "", "", true
	}
	return c.Reason, "the dispatcher holds deliveries: " + c.Message, false
}
