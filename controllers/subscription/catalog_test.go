package subscription_test

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// In a namespace without a catalog every type is accepted, so a subscription's types are
// not a problem: EventTypesDeclared says so and Ready is untouched.
func TestSubscription_WithoutACatalogTypesAreNotChecked(t *testing.T) {
	ns := newNamespace(t)
	createEndpoint(t, ns, "billing")
	createSubscription(t, ns, "invoices", "billing", []string{"invoice.paid"}, "")
	got := waitReady(t, settle, ns, "invoices", metav1.ConditionTrue, heraldv1.ReasonReady)
	c := declaredCondition(t, got)
	if c.Status != metav1.ConditionFalse || c.Reason != heraldv1.ReasonNoCatalog {
		t.Errorf("EventTypesDeclared = %s/%s (%s), want False/NoCatalog", c.Status, c.Reason, c.Message)
	}
}

// Once the namespace declares types, an exact type it lacks is a subscription that can
// never carry anything (ingest refuses those events): Ready=False until it is declared.
// Built-in types and globs are never reported.
func TestSubscription_AnUndeclaredTypeInACataloguedNamespace(t *testing.T) {
	ns := newNamespace(t)
	createEndpoint(t, ns, "billing")
	declare(t, ns, "invoice.paid")
	createSubscription(t, ns, "ok", "billing", []string{"invoice.paid", "herald.endpoint.disabled", "refund.*"}, "")
	got := waitReady(t, settle, ns, "ok", metav1.ConditionTrue, heraldv1.ReasonReady)
	if c := declaredCondition(t, got); c.Status != metav1.ConditionTrue || c.Reason != heraldv1.ReasonEventTypesDeclared {
		t.Errorf("EventTypesDeclared = %s/%s (%s), want True/EventTypesDeclared", c.Status, c.Reason, c.Message)
	}

	createSubscription(t, ns, "typo", "billing", []string{"invoice.payed"}, "")
	got = waitReady(t, settle, ns, "typo", metav1.ConditionFalse, heraldv1.ReasonUnknownEventType)
	if msg := readyCondition(got).Message; !strings.Contains(msg, "invoice.payed") {
		t.Errorf("message %q should name the type", msg)
	}
	if c := declaredCondition(t, got); c.Status != metav1.ConditionFalse || c.Reason != heraldv1.ReasonUnknownEventType {
		t.Errorf("EventTypesDeclared = %s/%s, want False/UnknownEventType", c.Status, c.Reason)
	}
	waitEvent(t, ns, "typo", "Warning", heraldv1.ReasonUnknownEventType)

	// Declaring it heals the subscription without touching it.
	declare(t, ns, "invoice.payed")
	waitReady(t, settle, ns, "typo", metav1.ConditionTrue, heraldv1.ReasonReady)
}

func declare(t *testing.T, ns, typ string) {
	t.Helper()
	et := &heraldv1.WebhookEventType{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: strings.ReplaceAll(typ, ".", "-")},
		Spec:       heraldv1.WebhookEventTypeSpec{Type: typ, Schema: `{"type": "object"}`},
	}
	if err := k.Create(context.Background(), et); err != nil {
		t.Fatalf("creating WebhookEventType %s: %v", typ, err)
	}
}

func declaredCondition(t *testing.T, sub *heraldv1.WebhookSubscription) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(sub.Status.Conditions, heraldv1.ConditionEventTypesDeclared)
	if c == nil {
		t.Fatalf("no EventTypesDeclared condition: %+v", sub.Status.Conditions)
	}
	if c.ObservedGeneration != sub.Generation {
		t.Errorf("EventTypesDeclared observedGeneration = %d, want %d", c.ObservedGeneration, sub.Generation)
	}
	return *c
}
