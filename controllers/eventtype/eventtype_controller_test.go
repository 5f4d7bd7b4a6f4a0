package eventtype_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/eventschema"
)

const settle = 10 * time.Second

const paidSchema = `
type: object
required: [invoice_id, amount]
properties:
  invoice_id: {type: string}
  amount: {type: integer, minimum: 1}
`

func TestEventType_ValidSchemaAndExamplesAreReady(t *testing.T) {
	ns := newNamespace(t)
	create(t, ns, "invoice-paid", heraldv1.WebhookEventTypeSpec{
		Type: "invoice.paid", Description: "An invoice was paid.", Schema: paidSchema,
		Examples: []string{`{"invoice_id": "inv_1", "amount": 2500}`, "invoice_id: inv_2\namount: 1\n"},
	})
	got := waitReady(t, ns, "invoice-paid", metav1.ConditionTrue, heraldv1.ReasonReady)
	if got.Status.ObservedGeneration != got.Generation {
		t.Errorf("observedGeneration = %d, want %d", got.Status.ObservedGeneration, got.Generation)
	}
	waitEvent(t, ns, "invoice-paid", corev1.EventTypeNormal, heraldv1.ReasonReady)
}

func TestEventType_InvalidSchemaShowsTheCompilerMessageAndHeals(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	const bad = `{"type": "object", "properties": {"amount": {"minimum": "one"}}}`
	create(t, ns, "paid", heraldv1.WebhookEventTypeSpec{Type: "invoice.paid", Schema: bad})
	got := waitReady(t, ns, "paid", metav1.ConditionFalse, heraldv1.ReasonInvalidSchema)
	_, compileErr := eventschema.Compile(bad)
	if compileErr == nil {
		t.Fatal("the fixture schema compiles; the test needs one that does not")
	}
	if msg := ready(got).Message; !strings.HasPrefix(msg, compileErr.Error()) {
		t.Errorf("message = %q, want the compiler's %q first", msg, compileErr.Error())
	}
	waitEvent(t, ns, "paid", corev1.EventTypeWarning, heraldv1.ReasonInvalidSchema)

	// A remote reference is a bound, reported the same way.
	got.Spec.Schema = `{"$ref": "https://schemas.example.com/invoice.json"}`
	if err := k.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	got = waitReady(t, ns, "paid", metav1.ConditionFalse, heraldv1.ReasonInvalidSchema)
	if msg := ready(got).Message; !strings.Contains(msg, "references to other documents") {
		t.Errorf("message = %q, want it to refuse the remote reference", msg)
	}

	got.Spec.Schema = paidSchema
	if err := k.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "paid", metav1.ConditionTrue, heraldv1.ReasonReady)
}

func TestEventType_AnExampleThatDoesNotValidateIsNamed(t *testing.T) {
	ns := newNamespace(t)
	create(t, ns, "paid", heraldv1.WebhookEventTypeSpec{Type: "invoice.paid", Schema: paidSchema,
		Examples: []string{`{"invoice_id": "inv_1", "amount": 1}`, `{"invoice_id": "inv_2", "amount": 0}`}})
	got := waitReady(t, ns, "paid", metav1.ConditionFalse, heraldv1.ReasonInvalidExample)
	if msg := ready(got).Message; !strings.Contains(msg, "example 2") || !strings.Contains(msg, "/amount") {
		t.Errorf("message %q should name example 2 and /amount", msg)
	}
}

func TestEventType_TheOlderDeclarationOwnsTheType(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	create(t, ns, "first", heraldv1.WebhookEventTypeSpec{Type: "invoice.paid", Schema: paidSchema})
	waitReady(t, ns, "first", metav1.ConditionTrue, heraldv1.ReasonReady)
	// creationTimestamp has a resolution of one second.
	time.Sleep(1100 * time.Millisecond)
	create(t, ns, "second", heraldv1.WebhookEventTypeSpec{Type: "invoice.paid", Schema: `{"type": "object"}`})
	got := waitReady(t, ns, "second", metav1.ConditionFalse, heraldv1.ReasonDuplicateEventType)
	if msg := ready(got).Message; !strings.Contains(msg, "WebhookEventType first already declares invoice.paid") {
		t.Errorf("message %q should name the owner", msg)
	}
	// The owner is unaffected, and its deletion hands the type over.
	waitReady(t, ns, "first", metav1.ConditionTrue, heraldv1.ReasonReady)
	if err := k.Delete(ctx, &heraldv1.WebhookEventType{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "first"}}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "second", metav1.ConditionTrue, heraldv1.ReasonReady)
}

func create(t *testing.T, ns, name string, spec heraldv1.WebhookEventTypeSpec) {
	t.Helper()
	et := &heraldv1.WebhookEventType{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	if err := k.Create(context.Background(), et); err != nil {
		t.Fatalf("creating WebhookEventType %s: %v", name, err)
	}
}

func ready(et *heraldv1.WebhookEventType) metav1.Condition {
	if c := meta.FindStatusCondition(et.Status.Conditions, heraldv1.ConditionReady); c != nil {
		return *c
	}
	return metav1.Condition{}
}

func waitReady(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) *heraldv1.WebhookEventType {
	t.Helper()
	et := &heraldv1.WebhookEventType{}
	eventually(t, settle, func() error {
		if err := k.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, et); err != nil {
			return err
		}
		c := ready(et)
		if c.Status != status || c.Reason != reason || c.ObservedGeneration != et.Generation {
			return fmt.Errorf("Ready is %s/%s (%q) for generation %d, want %s/%s for generation %d",
				c.Status, c.Reason, c.Message, c.ObservedGeneration, status, reason, et.Generation)
		}
		return nil
	})
	return et
}

func waitEvent(t *testing.T, ns, name, eventType, reason string) {
	t.Helper()
	eventually(t, settle, func() error {
		var list eventsv1.EventList
		if err := k.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Kind == "WebhookEventType" && e.Regarding.Name == name && e.Type == eventType && e.Reason == reason {
				return nil
			}
		}
		return fmt.Errorf("no %s event with reason %s on WebhookEventType %s", eventType, reason, name)
	})
}
