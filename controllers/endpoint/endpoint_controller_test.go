package endpoint_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/controllers/endpoint"
)

const settle = 10 * time.Second

func TestEndpoint_GeneratesSigningSecretAndBecomesReady(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	ep := createEndpoint(t, ns, "orders", "https://example.com/hooks", nil)

	secret := &corev1.Secret{}
	eventually(t, settle, func() error {
		return k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "orders-signing"}, secret)
	})
	value := string(secret.Data[heraldv1.DefaultSecretKey])
	raw, found := strings.CutPrefix(value, "whsec_")
	if !found {
		t.Fatalf("generated secret lacks the whsec_ prefix (length %d)", len(value))
	}
	if b, err := base64.StdEncoding.DecodeString(raw); err != nil || len(b) != 32 {
		t.Fatalf("generated secret is not base64 of 32 bytes: %d bytes, err %v", len(b), err)
	}
	if len(secret.Data) != 1 {
		t.Errorf("generated Secret has keys %v, want only %q", keys(secret.Data), heraldv1.DefaultSecretKey)
	}
	owner := metav1.GetControllerOf(secret)
	if owner == nil || owner.UID != ep.UID || owner.Kind != "WebhookEndpoint" {
		t.Errorf("generated Secret's controller is %+v, want WebhookEndpoint %s", owner, ep.UID)
	}
	if got := secret.Labels[heraldv1.LabelManagedBy]; got != heraldv1.LabelManagedByValue {
		t.Errorf("label %s = %q, want %q", heraldv1.LabelManagedBy, got, heraldv1.LabelManagedByValue)
	}
	if got := secret.Labels[heraldv1.LabelEndpoint]; got != "orders" {
		t.Errorf("label %s = %q, want orders", heraldv1.LabelEndpoint, got)
	}

	got := waitReady(t, ns, "orders", metav1.ConditionTrue, heraldv1.ReasonReady)
	if got.Status.ObservedGeneration != got.Generation {
		t.Errorf("status.observedGeneration = %d, want %d", got.Status.ObservedGeneration, got.Generation)
	}
	if got.Status.SecretName != "orders-signing" {
		t.Errorf("status.secretName = %q, want orders-signing", got.Status.SecretName)
	}
	if c := readyCondition(got); c.Message != "signing secret orders-signing resolved; deliveries can flow" {
		t.Errorf("Ready message = %q", c.Message)
	}

	waitEvent(t, ns, "orders", corev1.EventTypeNormal, heraldv1.EventSecretGenerated)
	waitEvent(t, ns, "orders", corev1.EventTypeNormal, heraldv1.ReasonReady)
	assertSecretNowhere(t, ns, "orders", value)

	// Deleting the Secret brings a fresh one, as the design promises for a missing Secret.
	if err := k.Delete(ctx, secret); err != nil {
		t.Fatal(err)
	}
	eventually(t, settle, func() error {
		again := &corev1.Secret{}
		if err := k.Get(ctx, client.ObjectKeyFromObject(secret), again); err != nil {
			return err
		}
		if again.UID == secret.UID {
			return fmt.Errorf("still the deleted Secret")
		}
		if string(again.Data[heraldv1.DefaultSecretKey]) == value {
			t.Fatal("the regenerated Secret repeats the old value")
		}
		return nil
	})
	waitReady(t, ns, "orders", metav1.ConditionTrue, heraldv1.ReasonReady)
}

func TestEndpoint_UsesUserSecretWithoutModifyingOrAdoptingIt(t *testing.T) {
	// A person who brings their own secret creates the Secret before the endpoint (with
	// Argo CD: an earlier sync wave). Had the endpoint come first, Herald would have
	// generated the Secret; it never takes over one that already exists.
	ctx := context.Background()
	ns := newNamespace(t)
	user := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme-webhook"},
		Data:       map[string][]byte{"token": []byte("whsec_dXNlci1jaG9zZW4tc2VjcmV0")},
	}
	if err := k.Create(ctx, user); err != nil {
		t.Fatal(err)
	}
	createEndpoint(t, ns, "acme", "https://acme.example/hooks", func(ep *heraldv1.WebhookEndpoint) {
		ep.Spec.SecretRef = &heraldv1.SecretKeySelector{Name: "acme-webhook", Key: "token"}
	})

	got := waitReady(t, ns, "acme", metav1.ConditionTrue, heraldv1.ReasonReady)
	if got.Status.SecretName != "acme-webhook" {
		t.Errorf("status.secretName = %q, want acme-webhook", got.Status.SecretName)
	}
	after := &corev1.Secret{}
	if err := k.Get(ctx, client.ObjectKeyFromObject(user), after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != user.ResourceVersion {
		t.Errorf("user Secret was modified: resourceVersion %s -> %s", user.ResourceVersion, after.ResourceVersion)
	}
	if len(after.OwnerReferences) != 0 || len(after.Labels) != 0 {
		t.Errorf("user Secret was adopted: ownerReferences %v, labels %v", after.OwnerReferences, after.Labels)
	}
	if evs := endpointEvents(t, ns, "acme"); hasEvent(evs, corev1.EventTypeNormal, heraldv1.EventSecretGenerated) {
		t.Errorf("a SecretGenerated event was recorded for a user Secret")
	}
	var secrets corev1.SecretList
	if err := k.List(ctx, &secrets, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 1 {
		t.Errorf("namespace holds %d Secrets, want only the user's", len(secrets.Items))
	}
	assertSecretNowhere(t, ns, "acme", "whsec_dXNlci1jaG9zZW4tc2VjcmV0")
}

func TestEndpoint_SecretKeyMissingUntilTheUserFixesTheSecret(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	// The Secret exists, so nothing is generated; its key is what arrives late, the way
	// an external secret operator or a person fills it in after the fact.
	user := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing-hmac"},
		Data:       map[string][]byte{"other": []byte("unrelated-value")},
	}
	if err := k.Create(ctx, user); err != nil {
		t.Fatal(err)
	}
	createEndpoint(t, ns, "billing", "https://billing.example/hooks", func(ep *heraldv1.WebhookEndpoint) {
		ep.Spec.SecretRef = &heraldv1.SecretKeySelector{Name: "billing-hmac", Key: "hmac"}
	})

	got := waitReady(t, ns, "billing", metav1.ConditionFalse, heraldv1.ReasonSecretKeyMissing)
	msg := readyCondition(got).Message
	if !strings.Contains(msg, "billing-hmac") || !strings.Contains(msg, `"hmac"`) {
		t.Errorf("message %q should name the Secret and the key", msg)
	}
	if got.Status.SecretName != "" {
		t.Errorf("status.secretName = %q while the key is missing, want empty", got.Status.SecretName)
	}
	if got.Status.ObservedGeneration != got.Generation {
		t.Errorf("status.observedGeneration = %d, want %d: a not-ready verdict is still an observation", got.Status.ObservedGeneration, got.Generation)
	}
	waitEvent(t, ns, "billing", corev1.EventTypeWarning, heraldv1.ReasonSecretKeyMissing)

	// An empty value is as useless as a missing key.
	user.Data["hmac"] = []byte{}
	if err := k.Update(ctx, user); err != nil {
		t.Fatal(err)
	}
	eventually(t, settle, func() error {
		got := getEndpoint(t, ns, "billing")
		if m := readyCondition(got).Message; !strings.Contains(m, "empty value") {
			return fmt.Errorf("Ready message %q does not mention the empty value yet", m)
		}
		return nil
	})

	user.Data["hmac"] = []byte("whsec_bm93LWl0LWlzLXRoZXJl")
	if err := k.Update(ctx, user); err != nil {
		t.Fatal(err)
	}
	// Promptly: nothing requeues a not-ready endpoint on a timer, so only the Secret
	// watch can bring this about within the wait.
	got = waitReadyWithin(t, 5*time.Second, ns, "billing", metav1.ConditionTrue, heraldv1.ReasonReady)
	if got.Status.SecretName != "billing-hmac" {
		t.Errorf("status.secretName = %q, want billing-hmac", got.Status.SecretName)
	}
	final := &corev1.Secret{}
	if err := k.Get(ctx, client.ObjectKeyFromObject(user), final); err != nil {
		t.Fatal(err)
	}
	if final.ResourceVersion != user.ResourceVersion || len(final.OwnerReferences) != 0 {
		t.Errorf("user Secret was touched by the manager (resourceVersion %s -> %s, owners %v)", user.ResourceVersion, final.ResourceVersion, final.OwnerReferences)
	}
	assertSecretNowhere(t, ns, "billing", "unrelated-value")
	assertSecretNowhere(t, ns, "billing", "now-it-is-there")
}

func TestEndpoint_PlainHTTPRefusedByDefaultPolicy(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createEndpoint(t, ns, "legacy", "http://legacy.example/hooks", nil)

	got := waitReady(t, ns, "legacy", metav1.ConditionFalse, heraldv1.ReasonInvalidURL)
	if msg := readyCondition(got).Message; !strings.Contains(msg, "plain http is not allowed") {
		t.Errorf("message %q should say plain http is not allowed", msg)
	}
	waitEvent(t, ns, "legacy", corev1.EventTypeWarning, heraldv1.ReasonInvalidURL)

	got.Spec.URL = "https://legacy.example/hooks"
	if err := k.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	fixed := waitReady(t, ns, "legacy", metav1.ConditionTrue, heraldv1.ReasonReady)
	if fixed.Generation != 2 || fixed.Status.ObservedGeneration != 2 || readyCondition(fixed).ObservedGeneration != 2 {
		t.Errorf("generation %d, status.observedGeneration %d, Ready.observedGeneration %d; want all 2",
			fixed.Generation, fixed.Status.ObservedGeneration, readyCondition(fixed).ObservedGeneration)
	}
}

func TestEndpoint_SecretTheStyleCannotUseIsNotReady(t *testing.T) {
	// On 907df01 this endpoint was Ready=True while the dispatcher held every delivery
	// (InvalidConfiguration, in its log only): one resolver now judges both.
	ctx := context.Background()
	ns := newNamespace(t)
	user := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plain"},
		Data:       map[string][]byte{"secret": []byte("a plain password")},
	}
	if err := k.Create(ctx, user); err != nil {
		t.Fatal(err)
	}
	createEndpoint(t, ns, "strict", "https://strict.example/hooks", func(ep *heraldv1.WebhookEndpoint) {
		ep.Spec.SecretRef = &heraldv1.SecretKeySelector{Name: "plain", Key: "secret"}
	})
	got := waitReady(t, ns, "strict", metav1.ConditionFalse, heraldv1.ReasonInvalidSecret)
	if msg := readyCondition(got).Message; !strings.Contains(msg, "whsec_") || !strings.Contains(msg, "plain") {
		t.Errorf("message %q should name the Secret and the expected form", msg)
	}
	assertSecretNowhere(t, ns, "strict", "a plain password")

	// The same value is fine for a hex style, which uses the secret as written.
	got.Spec.Signature.Style = heraldv1.SignatureTimestampedHex
	if err := k.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "strict", metav1.ConditionTrue, heraldv1.ReasonReady)
}

func TestEndpoint_ReadyMirrorsTheDispatchersHold(t *testing.T) {
	// Whatever the dispatcher holds for, Ready says so: no state in which deliveries
	// are held and kubectl get whe says Ready.
	ns := newNamespace(t)
	ep := createEndpoint(t, ns, "lagging", "https://lagging.example/hooks", nil)
	waitReady(t, ns, "lagging", metav1.ConditionTrue, heraldv1.ReasonReady)

	applyDelivering(t, ns, "lagging", ep.Generation, metav1.ConditionFalse, heraldv1.ReasonSecretNotFound, "signing Secret lagging-signing does not exist yet")
	got := waitReadyWithin(t, 5*time.Second, ns, "lagging", metav1.ConditionFalse, heraldv1.ReasonSecretNotFound)
	if msg := readyCondition(got).Message; msg != "the dispatcher holds deliveries: signing Secret lagging-signing does not exist yet" {
		t.Errorf("Ready message = %q", msg)
	}
	applyDelivering(t, ns, "lagging", ep.Generation, metav1.ConditionTrue, heraldv1.ReasonDelivering, "the dispatcher delivers to this endpoint")
	waitReadyWithin(t, 5*time.Second, ns, "lagging", metav1.ConditionTrue, heraldv1.ReasonReady)
}

// applyDelivering writes the Delivering condition as the dispatcher does.
func applyDelivering(t *testing.T, ns, name string, generation int64, status metav1.ConditionStatus, reason, message string) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"conditions": []any{map[string]any{
		"type": heraldv1.ConditionDelivering, "status": string(status), "reason": reason, "message": message,
		"lastTransitionTime": time.Now().UTC().Format(time.RFC3339), "observedGeneration": generation,
	}}}}}
	u.SetGroupVersionKind(heraldv1.GroupVersion.WithKind("WebhookEndpoint"))
	u.SetNamespace(ns)
	u.SetName(name)
	if err := k.Status().Apply(context.Background(), client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner("herald-dispatcher"), client.ForceOwnership); err != nil {
		t.Fatalf("dispatcher status apply: %v", err)
	}
}

func TestEndpoint_IPv4InShortFormsIsJudgedAsTheAddressItIs(t *testing.T) {
	// On 907df01 these were Ready=True (taken for host names) and then dead-lettered at
	// resolution; the manager now refuses them as the loopback address they are.
	ns := newNamespace(t)
	for i, url := range []string{"https://127.1/hooks", "https://2130706433/hooks", "https://0x7f000001/hooks"} {
		name := fmt.Sprintf("short-%d", i)
		createEndpoint(t, ns, name, url, nil)
		got := waitReady(t, ns, name, metav1.ConditionFalse, heraldv1.ReasonInvalidURL)
		if msg := readyCondition(got).Message; !strings.Contains(msg, "loopback") {
			t.Errorf("%s: message %q should say loopback", url, msg)
		}
	}
}

func TestEndpoint_PreviousSecretNotFoundUntilItIsCreated(t *testing.T) {
	// The previous secret of a rotation is never generated (it must hold the old value),
	// so this is the path where a whole Secret arrives after the endpoint.
	ctx := context.Background()
	ns := newNamespace(t)
	createEndpoint(t, ns, "rotating", "https://rotating.example/hooks", func(ep *heraldv1.WebhookEndpoint) {
		ep.Spec.PreviousSecretRef = &heraldv1.SecretKeySelector{Name: "rotating-old"}
	})

	got := waitReady(t, ns, "rotating", metav1.ConditionFalse, heraldv1.ReasonPreviousSecretNotFound)
	if msg := readyCondition(got).Message; !strings.Contains(msg, "rotating-old") {
		t.Errorf("message %q should name the previous Secret", msg)
	}
	// The current secret resolved; only the rotation is incomplete.
	if got.Status.SecretName != "rotating-signing" {
		t.Errorf("status.secretName = %q, want rotating-signing", got.Status.SecretName)
	}

	old := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rotating-old"},
		Data:       map[string][]byte{"wrong-key": []byte("x")},
	}
	if err := k.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	eventually(t, settle, func() error {
		if m := readyCondition(getEndpoint(t, ns, "rotating")).Message; !strings.Contains(m, `has no key "secret"`) {
			return fmt.Errorf("Ready message %q does not report the missing key yet", m)
		}
		return nil
	})

	old.Data = map[string][]byte{heraldv1.DefaultSecretKey: []byte("whsec_b2xkLXNlY3JldA==")}
	if err := k.Update(ctx, old); err != nil {
		t.Fatal(err)
	}
	waitReadyWithin(t, 5*time.Second, ns, "rotating", metav1.ConditionTrue, heraldv1.ReasonReady)
}

func TestEndpoint_HeaderSecretMissingUntilItIsCreated(t *testing.T) {
	// The dispatcher holds deliveries while a header's Secret is missing, so Ready must
	// say so and flip as soon as the Secret arrives.
	ctx := context.Background()
	ns := newNamespace(t)
	createEndpoint(t, ns, "authed", "https://authed.example/hooks", func(ep *heraldv1.WebhookEndpoint) {
		ep.Spec.Headers = []heraldv1.HeaderSpec{{Name: "Authorization", ValueFrom: &heraldv1.SecretKeySelector{Name: "authed-token", Key: "token"}}}
	})
	// Not SecretNotFound: Herald generates only the signing Secret, so this one needs
	// a person, and Argo CD shows it Degraded.
	got := waitReady(t, ns, "authed", metav1.ConditionFalse, heraldv1.ReasonReferencedSecretNotFound)
	if msg := readyCondition(got).Message; !strings.Contains(msg, "authed-token") || !strings.Contains(msg, "header Authorization") {
		t.Errorf("message %q should name the Secret and the header", msg)
	}
	token := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "authed-token"},
		Data:       map[string][]byte{"token": []byte("Bearer abc")},
	}
	if err := k.Create(ctx, token); err != nil {
		t.Fatal(err)
	}
	got = waitReadyWithin(t, 5*time.Second, ns, "authed", metav1.ConditionTrue, heraldv1.ReasonReady)
	if strings.Contains(readyCondition(got).Message, "Bearer abc") {
		t.Fatal("a header value leaked into the status")
	}
}

func TestEndpoint_OAuth2ClientSecretMissingUntilItIsCreated(t *testing.T) {
	// The client secret of spec.auth.oauth2 is a Secret only a person creates: Ready
	// says which one is missing, and flips once it exists.
	ctx := context.Background()
	ns := newNamespace(t)
	id := "herald"
	createEndpoint(t, ns, "gated", "https://gated.example/hooks", func(ep *heraldv1.WebhookEndpoint) {
		ep.Spec.Auth = &heraldv1.AuthSpec{OAuth2: &heraldv1.OAuth2ClientCredentials{
			TokenURL: "https://auth.gated.example/oauth/token", ClientID: &id,
			ClientSecretRef: heraldv1.SecretKeySelector{Name: "gated-oauth", Key: "client-secret"},
		}}
	})
	got := waitReady(t, ns, "gated", metav1.ConditionFalse, heraldv1.ReasonReferencedSecretNotFound)
	if msg := readyCondition(got).Message; !strings.Contains(msg, "gated-oauth") || !strings.Contains(msg, "OAuth2 client secret") {
		t.Errorf("message %q should name the Secret and what it is for", msg)
	}
	creds := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gated-oauth"},
		Data:       map[string][]byte{"client-secret": []byte("oauth-client-secret-value")},
	}
	if err := k.Create(ctx, creds); err != nil {
		t.Fatal(err)
	}
	got = waitReadyWithin(t, 5*time.Second, ns, "gated", metav1.ConditionTrue, heraldv1.ReasonReady)
	if strings.Contains(readyCondition(got).Message, "oauth-client-secret-value") {
		t.Fatal("the client secret leaked into the status")
	}
}

func TestEndpoint_StatusSettlesWithoutWriteLoops(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createEndpoint(t, ns, "calm", "https://calm.example/hooks", nil)
	settled := waitReady(t, ns, "calm", metav1.ConditionTrue, heraldv1.ReasonReady)
	secret := &corev1.Secret{}
	if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "calm-signing"}, secret); err != nil {
		t.Fatal(err)
	}

	// lastTransitionTime has one-second precision: wait past it so a reconcile that
	// restamped it would produce a different object and a new resourceVersion.
	time.Sleep(1100 * time.Millisecond)
	before := reconcileCount(t)
	// A change to the Secret's metadata makes the manager reconcile the endpoint again
	// without anything relevant having changed.
	secret.Annotations = map[string]string{"example.com/touched": "yes"}
	if err := k.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	eventually(t, settle, func() error {
		seen := &metav1.PartialObjectMetadata{}
		seen.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		if err := managerCache.Get(ctx, client.ObjectKeyFromObject(secret), seen); err != nil {
			return err
		}
		if seen.ResourceVersion != secret.ResourceVersion {
			return fmt.Errorf("manager has not seen the Secret change yet")
		}
		if n := reconcileCount(t); n <= before {
			return fmt.Errorf("no reconcile since the Secret changed (%v)", n)
		}
		if d := queueDepth(t); d != 0 {
			return fmt.Errorf("work queue still holds %v items", d)
		}
		return nil
	})

	after := getEndpoint(t, ns, "calm")
	if after.ResourceVersion != settled.ResourceVersion {
		t.Errorf("endpoint resourceVersion moved from %s to %s although nothing changed", settled.ResourceVersion, after.ResourceVersion)
	}
	if a, b := readyCondition(after).LastTransitionTime, readyCondition(settled).LastTransitionTime; !a.Equal(&b) {
		t.Errorf("Ready lastTransitionTime churned: %v -> %v", b, a)
	}
	regenerated := &corev1.Secret{}
	if err := k.Get(ctx, client.ObjectKeyFromObject(secret), regenerated); err != nil {
		t.Fatal(err)
	}
	if regenerated.ResourceVersion != secret.ResourceVersion {
		t.Errorf("generated Secret was rewritten: resourceVersion %s -> %s", secret.ResourceVersion, regenerated.ResourceVersion)
	}
}

func TestEndpoint_KeepsStatusFieldsOfOtherFieldManagers(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	ep := createEndpoint(t, ns, "flaky", "https://flaky.example/hooks", nil)
	waitReady(t, ns, "flaky", metav1.ConditionTrue, heraldv1.ReasonReady)

	// What the dispatcher does when it auto-disables an endpoint: apply its own fields
	// under its own field manager.
	dispatcher := &unstructured.Unstructured{Object: map[string]any{
		"status": map[string]any{
			"consecutiveFailures": int64(5),
			"conditions": []any{map[string]any{
				"type":               heraldv1.ConditionDisabled,
				"status":             "True",
				"reason":             "ConsecutiveFailures",
				"message":            "5 consecutive failed attempts",
				"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
				"observedGeneration": ep.Generation,
			}},
		},
	}}
	dispatcher.SetGroupVersionKind(heraldv1.GroupVersion.WithKind("WebhookEndpoint"))
	dispatcher.SetNamespace(ns)
	dispatcher.SetName("flaky")
	if err := k.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(dispatcher),
		client.FieldOwner("herald-dispatcher"), client.ForceOwnership); err != nil {
		t.Fatalf("dispatcher status apply: %v", err)
	}
	// The manager mirrors Disabled into Ready, so tools reading only Ready see it.
	disabledNow := waitReady(t, ns, "flaky", metav1.ConditionFalse, heraldv1.ReasonDisabled)
	if msg := meta.FindStatusCondition(disabledNow.Status.Conditions, heraldv1.ConditionReady).Message; !strings.Contains(msg, heraldv1.AnnotationReenable) {
		t.Errorf("Ready message should say how to re-enable: %q", msg)
	}

	// A spec change makes the manager write its part of status again.
	current := getEndpoint(t, ns, "flaky")
	current.Spec.URL = "http://flaky.example/hooks"
	if err := k.Update(ctx, current); err != nil {
		t.Fatal(err)
	}
	got := waitReady(t, ns, "flaky", metav1.ConditionFalse, heraldv1.ReasonInvalidURL)
	disabled := meta.FindStatusCondition(got.Status.Conditions, heraldv1.ConditionDisabled)
	if disabled == nil || disabled.Status != metav1.ConditionTrue || disabled.Reason != "ConsecutiveFailures" {
		t.Fatalf("Disabled condition after the manager's write: %+v, want the dispatcher's", disabled)
	}
	if got.Status.ConsecutiveFailures != 5 {
		t.Errorf("status.consecutiveFailures = %d, want the dispatcher's 5", got.Status.ConsecutiveFailures)
	}
	if got.Status.ObservedGeneration != 2 {
		t.Errorf("status.observedGeneration = %d, want 2", got.Status.ObservedGeneration)
	}
	owners := map[string]string{}
	for _, mf := range got.ManagedFields {
		if mf.Subresource == "status" {
			owners[mf.Manager] = string(mf.FieldsV1.Raw)
		}
	}
	if !strings.Contains(owners[endpoint.FieldManager], `k:{\"type\":\"Ready\"}`) || strings.Contains(owners[endpoint.FieldManager], "Disabled") {
		t.Errorf("%s should own the Ready condition and not Disabled; owns %s", endpoint.FieldManager, owners[endpoint.FieldManager])
	}
}

// createEndpoint creates a WebhookEndpoint, letting mutate adjust the spec first.
func createEndpoint(t *testing.T, ns, name, url string, mutate func(*heraldv1.WebhookEndpoint)) *heraldv1.WebhookEndpoint {
	t.Helper()
	ep := &heraldv1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       heraldv1.WebhookEndpointSpec{URL: url},
	}
	if mutate != nil {
		mutate(ep)
	}
	if err := k.Create(context.Background(), ep); err != nil {
		t.Fatalf("creating WebhookEndpoint %s: %v", name, err)
	}
	return ep
}

func getEndpoint(t *testing.T, ns, name string) *heraldv1.WebhookEndpoint {
	t.Helper()
	ep := &heraldv1.WebhookEndpoint{}
	if err := k.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ep); err != nil {
		t.Fatalf("getting WebhookEndpoint %s: %v", name, err)
	}
	return ep
}

func readyCondition(ep *heraldv1.WebhookEndpoint) metav1.Condition {
	if c := meta.FindStatusCondition(ep.Status.Conditions, heraldv1.ConditionReady); c != nil {
		return *c
	}
	return metav1.Condition{}
}

func waitReady(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) *heraldv1.WebhookEndpoint {
	t.Helper()
	return waitReadyWithin(t, settle, ns, name, status, reason)
}

// waitReadyWithin waits until Ready has status and reason for the endpoint's current
// generation, and returns the endpoint as stored.
func waitReadyWithin(t *testing.T, timeout time.Duration, ns, name string, status metav1.ConditionStatus, reason string) *heraldv1.WebhookEndpoint {
	t.Helper()
	var ep *heraldv1.WebhookEndpoint
	eventually(t, timeout, func() error {
		ep = getEndpoint(t, ns, name)
		c := readyCondition(ep)
		if c.Status != status || c.Reason != reason || c.ObservedGeneration != ep.Generation {
			return fmt.Errorf("Ready is %s/%s (%q) for generation %d, want %s/%s for generation %d",
				c.Status, c.Reason, c.Message, c.ObservedGeneration, status, reason, ep.Generation)
		}
		return nil
	})
	return ep
}

func endpointEvents(t *testing.T, ns, name string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := k.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatalf("listing events: %v", err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "WebhookEndpoint" && e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}

func hasEvent(evs []eventsv1.Event, eventType, reason string) bool {
	for _, e := range evs {
		if e.Type == eventType && e.Reason == reason {
			return true
		}
	}
	return false
}

func waitEvent(t *testing.T, ns, name, eventType, reason string) {
	t.Helper()
	eventually(t, settle, func() error {
		if !hasEvent(endpointEvents(t, ns, name), eventType, reason) {
			return fmt.Errorf("no %s event with reason %s on WebhookEndpoint %s", eventType, reason, name)
		}
		return nil
	})
}

// assertSecretNowhere checks that a secret value shows up neither in the endpoint (its
// status included) nor in any Event about it.
func assertSecretNowhere(t *testing.T, ns, name, value string) {
	t.Helper()
	if value == "" {
		t.Fatal("assertSecretNowhere needs a value")
	}
	b, err := json.Marshal(getEndpoint(t, ns, name))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), value) {
		t.Errorf("a secret value appears in WebhookEndpoint %s", name)
	}
	for _, e := range endpointEvents(t, ns, name) {
		if strings.Contains(e.Note, value) {
			t.Errorf("a secret value appears in event %s", e.Reason)
		}
	}
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// reconcileCount is how many reconciles the endpoint controller has finished.
func reconcileCount(t *testing.T) float64 {
	t.Helper()
	return metricValue(t, "controller_runtime_reconcile_total", "controller")
}

// queueDepth is how many requests wait in the endpoint controller's queue.
func queueDepth(t *testing.T) float64 {
	t.Helper()
	return metricValue(t, "workqueue_depth", "name")
}

func metricValue(t *testing.T, family, label string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != family {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == "webhookendpoint" {
					sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return sum
}

func TestEndpoint_SuspendedAndReenabledShowOnReady(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createEndpoint(t, ns, "paused", "https://paused.example/hooks", func(e *heraldv1.WebhookEndpoint) { e.Spec.Suspend = true })
	waitReady(t, ns, "paused", metav1.ConditionFalse, heraldv1.ReasonSuspended)

	current := getEndpoint(t, ns, "paused")
	current.Spec.Suspend = false
	if err := k.Update(ctx, current); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "paused", metav1.ConditionTrue, heraldv1.ReasonReady)

	apply := func(status string) {
		u := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{
			"conditions": []any{map[string]any{
				"type": heraldv1.ConditionDisabled, "status": status, "reason": "ConsecutiveFailures",
				"message": "x", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
			}},
		}}}
		u.SetGroupVersionKind(heraldv1.GroupVersion.WithKind("WebhookEndpoint"))
		u.SetNamespace(ns)
		u.SetName("paused")
		if err := k.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
			client.FieldOwner("herald-dispatcher"), client.ForceOwnership); err != nil {
			t.Fatal(err)
		}
	}
	apply("True")
	waitReady(t, ns, "paused", metav1.ConditionFalse, heraldv1.ReasonDisabled)
	apply("False")
	waitReady(t, ns, "paused", metav1.ConditionTrue, heraldv1.ReasonReady)
}

func TestEndpoint_Ed25519KeyPairGeneratedAndPublicKeyPublished(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	ep := createEndpoint(t, ns, "ledger", "https://ledger.example/hooks", func(e *heraldv1.WebhookEndpoint) {
		e.Spec.Signature.Style = heraldv1.SignatureStandardWebhooksEd25519
	})
	secret := &corev1.Secret{}
	eventually(t, settle, func() error {
		return k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ledger-signing"}, secret)
	})
	value := string(secret.Data[heraldv1.DefaultSecretKey])
	raw, found := strings.CutPrefix(value, "whsk_")
	seed, err := base64.StdEncoding.DecodeString(raw)
	if !found || err != nil || len(seed) != ed25519.SeedSize {
		t.Fatalf("generated key is not whsk_ + base64 of a 32-byte seed (prefix %v, %d bytes, %v)", found, len(seed), err)
	}
	if len(secret.Data) != 1 || metav1.GetControllerOf(secret) == nil {
		t.Errorf("generated Secret: keys %v, controller %v; want only %q, owned by the endpoint", keys(secret.Data), metav1.GetControllerOf(secret), heraldv1.DefaultSecretKey)
	}
	// The public key, derived here with crypto/ed25519 alone.
	wantPublic := "whpk_" + base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))

	var got *heraldv1.WebhookEndpoint
	eventually(t, settle, func() error {
		got = waitReady(t, ns, "ledger", metav1.ConditionTrue, heraldv1.ReasonReady)
		if got.Status.PublicKey != wantPublic {
			return fmt.Errorf("status.publicKey = %q, want %q", got.Status.PublicKey, wantPublic)
		}
		return nil
	})
	cm := waitPublicKeyConfigMap(t, ns, "ledger", map[string]string{heraldv1.PublicKeyConfigMapKey: wantPublic})
	if owner := metav1.GetControllerOf(cm); owner == nil || owner.UID != ep.UID {
		t.Errorf("ConfigMap's controller is %+v, want the endpoint", owner)
	}
	waitEvent(t, ns, "ledger", corev1.EventTypeNormal, heraldv1.EventSecretGenerated)
	waitEvent(t, ns, "ledger", corev1.EventTypeNormal, heraldv1.EventPublicKeyPublished)
	assertSecretNowhere(t, ns, "ledger", raw)
	if b, _ := json.Marshal(cm); strings.Contains(string(b), raw) {
		t.Error("the private key appears in the public-key ConfigMap")
	}

	// Rotation: the old key pair signs too, and receivers find both public keys.
	_, oldPriv, _ := ed25519.GenerateKey(nil)
	old := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ledger-old"},
		Data:       map[string][]byte{"secret": []byte("whsk_" + base64.StdEncoding.EncodeToString(oldPriv.Seed()))},
	}
	if err := k.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	oldPublic := "whpk_" + base64.StdEncoding.EncodeToString(oldPriv.Public().(ed25519.PublicKey))
	got.Spec.PreviousSecretRef = &heraldv1.SecretKeySelector{Name: "ledger-old"}
	if err := k.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	eventually(t, settle, func() error {
		got = waitReady(t, ns, "ledger", metav1.ConditionTrue, heraldv1.ReasonReady)
		if got.Status.PublicKey != wantPublic || got.Status.PreviousPublicKey != oldPublic {
			return fmt.Errorf("status keys %q, %q", got.Status.PublicKey, got.Status.PreviousPublicKey)
		}
		return nil
	})
	waitPublicKeyConfigMap(t, ns, "ledger", map[string]string{heraldv1.PublicKeyConfigMapKey: wantPublic, heraldv1.PreviousPublicKeyConfigMapKey: oldPublic})

	// A deleted ConfigMap comes back when the endpoint is next reconciled (here: a
	// change of a Secret it references).
	if err := k.Delete(ctx, cm); err != nil {
		t.Fatal(err)
	}
	old.Labels = map[string]string{"touched": "yes"}
	if err := k.Update(ctx, old); err != nil {
		t.Fatal(err)
	}
	waitPublicKeyConfigMap(t, ns, "ledger", map[string]string{heraldv1.PublicKeyConfigMapKey: wantPublic, heraldv1.PreviousPublicKeyConfigMapKey: oldPublic})

	// Back to HMAC with a new, generated whsec_ Secret: no public key is left anywhere.
	got.Spec.Signature.Style = heraldv1.SignatureStandardWebhooks
	got.Spec.SecretRef = &heraldv1.SecretKeySelector{Name: "ledger-hmac"}
	got.Spec.PreviousSecretRef = nil
	if err := k.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	eventually(t, settle, func() error {
		got = waitReady(t, ns, "ledger", metav1.ConditionTrue, heraldv1.ReasonReady)
		if got.Status.PublicKey != "" || got.Status.PreviousPublicKey != "" {
			return fmt.Errorf("status keys %q, %q after leaving ed25519", got.Status.PublicKey, got.Status.PreviousPublicKey)
		}
		err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ledger-public-key"}, &corev1.ConfigMap{})
		if err == nil {
			return fmt.Errorf("the public-key ConfigMap still exists")
		}
		return client.IgnoreNotFound(err)
	})
}

func TestEndpoint_Ed25519LeavesAForeignConfigMapAlone(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	foreign := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "audit-public-key"},
		Data:       map[string]string{"note": "someone else's"},
	}
	if err := k.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	createEndpoint(t, ns, "audit", "https://audit.example/hooks", func(e *heraldv1.WebhookEndpoint) {
		e.Spec.Signature.Style = heraldv1.SignatureStandardWebhooksEd25519
	})
	eventually(t, settle, func() error {
		if got := waitReady(t, ns, "audit", metav1.ConditionTrue, heraldv1.ReasonReady); !strings.HasPrefix(got.Status.PublicKey, "whpk_") {
			return fmt.Errorf("status.publicKey = %q", got.Status.PublicKey)
		}
		return nil
	})
	after := &corev1.ConfigMap{}
	if err := k.Get(ctx, client.ObjectKeyFromObject(foreign), after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != foreign.ResourceVersion {
		t.Errorf("a ConfigMap Herald did not create was modified: %v", after.Data)
	}
}

func waitPublicKeyConfigMap(t *testing.T, ns, endpoint string, want map[string]string) *corev1.ConfigMap {
	t.Helper()
	cm := &corev1.ConfigMap{}
	eventually(t, settle, func() error {
		if err := k.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: endpoint + "-public-key"}, cm); err != nil {
			return err
		}
		if !maps.Equal(cm.Data, want) {
			return fmt.Errorf("ConfigMap data %v, want %v", cm.Data, want)
		}
		return nil
	})
	return cm
}
