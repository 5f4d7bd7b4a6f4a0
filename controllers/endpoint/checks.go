package endpoint

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/outbound"
)

// check is one readiness policy. It returns ok, or the reason and message of the Ready
// condition saying why not. Messages name Secrets and keys, never their values.
type check func(p outbound.Policy, in *inputs) (reason, message string, ok bool)

// readinessChecks run in order and the first failure is reported: the URL first because
// it is the most basic spec error, then the current secret before the one being retired.
var readinessChecks = []check{
	urlAllowed,
	signingSecretExists,
	signingSecretHasKey,
	previousSecretResolves,
	otherSecretsResolve,
	notSuspended,
	notDisabled,
}

// evaluate runs the checks and returns the Ready reason and message.
func (r *Reconciler) evaluate(in *inputs) (reason, message string) {
	for _, c := range readinessChecks {
		if reason, message, ok := c(r.Policy, in); !ok {
			return reason, message
		}
	}
	return ReasonReady, fmt.Sprintf("signing secret %s resolved", in.signingRef.Name)
}

func urlAllowed(p outbound.Policy, in *inputs) (string, string, bool) {
	if err := p.CheckURL(in.endpoint.Spec.URL); err != nil {
		return ReasonInvalidURL, err.Error(), false
	}
	return "", "", true
}

func signingSecretExists(_ outbound.Policy, in *inputs) (string, string, bool) {
	switch {
	case in.signing == nil && in.generateErr != nil:
		msg := fmt.Sprintf("signing Secret %s does not exist and could not be generated", in.signingRef.Name)
		if reason := apierrors.ReasonForError(in.generateErr); reason != "" {
			msg += ": " + string(reason)
		}
		return ReasonSecretNotFound, msg, false
	case in.signing == nil:
		return ReasonSecretNotFound, fmt.Sprintf("signing Secret %s does not exist", in.signingRef.Name), false
	case !in.signing.DeletionTimestamp.IsZero():
		// It is going away; its deletion event brings us back to generate a new one.
		return ReasonSecretNotFound, fmt.Sprintf("signing Secret %s is being deleted", in.signingRef.Name), false
	}
	return "", "", true
}

func signingSecretHasKey(_ outbound.Policy, in *inputs) (string, string, bool) {
	if msg, ok := keyProblem(in.signing, in.signingRef, "signing"); !ok {
		return ReasonSecretKeyMissing, msg, false
	}
	return "", "", true
}

func previousSecretResolves(_ outbound.Policy, in *inputs) (string, string, bool) {
	if in.previousRef == nil {
		return "", "", true
	}
	if in.previous == nil {
		return ReasonPreviousSecretNotFound, fmt.Sprintf("previous signing Secret %s does not exist", in.previousRef.Name), false
	}
	if msg, ok := keyProblem(in.previous, *in.previousRef, "previous signing"); !ok {
		return ReasonPreviousSecretNotFound, msg, false
	}
	return "", "", true
}

// keyProblem describes what is wrong with ref's key in secret, if anything.
func keyProblem(secret *corev1.Secret, ref heraldv1.SecretKeySelector, what string) (string, bool) {
	value, found := secret.Data[ref.Key]
	switch {
	case !found:
		return fmt.Sprintf("%s Secret %s has no key %q", what, ref.Name, ref.Key), false
	case len(value) == 0:
		return fmt.Sprintf("%s Secret %s has an empty value under key %q", what, ref.Name, ref.Key), false
	}
	return "", true
}

// notSuspended: a suspended endpoint holds its deliveries, so it is not Ready, but
// nothing is wrong with it; the reason says it is on purpose.
func notSuspended(_ outbound.Policy, in *inputs) (string, string, bool) {
	if in.endpoint.Spec.Suspend {
		return ReasonSuspended, "spec.suspend is true: deliveries are held until it is set back to false", false
	}
	return "", "", true
}

// notDisabled mirrors the dispatcher's Disabled condition into Ready, so that tools
// that read only Ready (kstatus, Argo CD, kubectl wait) see an auto-disabled endpoint.
func notDisabled(_ outbound.Policy, in *inputs) (string, string, bool) {
	c := meta.FindStatusCondition(in.endpoint.Status.Conditions, heraldv1.ConditionDisabled)
	if c == nil || c.Status != metav1.ConditionTrue {
		return "", "", true
	}
	return ReasonDisabled, fmt.Sprintf("auto-disabled by the dispatcher (%s); deliveries are held. Re-enable with "+
		"kubectl annotate whe %s %s=$(date +%%s) --overwrite, or edit the spec", c.Message, in.endpoint.Name, heraldv1.AnnotationReenable), false
}

// otherSecretsResolve: header values and the TLS client certificate come from Secrets as
// well; the dispatcher holds deliveries while one is missing, so Ready says so.
func otherSecretsResolve(_ outbound.Policy, in *inputs) (string, string, bool) {
	for _, u := range in.others {
		if u.secret == nil {
			return ReasonSecretNotFound, fmt.Sprintf("Secret %s for the %s does not exist", u.ref.Name, u.what), false
		}
		if msg, ok := keyProblem(u.secret, u.ref, u.what); !ok {
			return ReasonSecretKeyMissing, msg, false
		}
	}
	return "", "", true
}
