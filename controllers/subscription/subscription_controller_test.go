package subscription_test

import (
	"context"
	"errors"
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
	"github.com/herald-dev/herald/internal/routing"
)

const settle = 10 * time.Second

func TestSubscription_EndpointNotFoundUntilTheEndpointIsCreated(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	// Applied out of order, as kubectl apply -f dir/ or a GitOps sync may do.
	createSubscription(t, ns, "invoices", "billing", []string{"invoice.*"}, "")

	got := waitReady(t, settle, ns, "invoices", metav1.ConditionFalse, heraldv1.ReasonEndpointNotFound)
	if msg := readyCondition(got).Message; !strings.Contains(msg, "billing") {
		t.Errorf("message %q should name the endpoint", msg)
	}
	if got.Status.ObservedGeneration != got.Generation {
		t.Errorf("status.observedGeneration = %d, want %d", got.Status.ObservedGeneration, got.Generation)
	}
	waitEvent(t, ns, "invoices", corev1.EventTypeWarning, heraldv1.ReasonEndpointNotFound)

	ep := &heraldv1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"},
		Spec:       heraldv1.WebhookEndpointSpec{URL: "https://billing.example/hooks"},
	}
	if err := k.Create(ctx, ep); err != nil {
		t.Fatal(err)
	}
	// Promptly: only the endpoint watch can bring this about; nothing requeues on a timer.
	waitReady(t, 5*time.Second, ns, "invoices", metav1.ConditionTrue, heraldv1.ReasonReady)
	waitEvent(t, ns, "invoices", corev1.EventTypeNormal, heraldv1.ReasonReady)

	// An endpoint in another namespace with the right name does not count.
	other := newNamespace(t)
	createSubscription(t, other, "invoices", "billing", []string{"invoice.*"}, "")
	waitReady(t, settle, other, "invoices", metav1.ConditionFalse, heraldv1.ReasonEndpointNotFound)

	if err := k.Delete(ctx, ep); err != nil {
		t.Fatal(err)
	}
	waitReady(t, 5*time.Second, ns, "invoices", metav1.ConditionFalse, heraldv1.ReasonEndpointNotFound)
}

func TestSubscription_InvalidFilterShowsTheCompilerMessage(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	createEndpoint(t, ns, "alerts")
	const bad = "event.data.amount >"
	createSubscription(t, ns, "large", "alerts", []string{"payment.*"}, bad)

	got := waitReady(t, settle, ns, "large", metav1.ConditionFalse, heraldv1.ReasonInvalidFilter)
	_, compileErr := routing.CompileFilter(bad)
	if compileErr == nil {
		t.Fatal("the fixture filter compiles; the test needs one that does not")
	}
	if msg, want := readyCondition(got).Message, compileErr.Error()+"; no event is routed through this subscription until the filter is fixed"; msg != want {
		t.Errorf("message = %q, want %q", msg, want)
	}
	waitEvent(t, ns, "large", corev1.EventTypeWarning, heraldv1.ReasonInvalidFilter)

	got.Spec.Filter = "event.data.amount > 1000"
	if err := k.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	fixed := waitReady(t, settle, ns, "large", metav1.ConditionTrue, heraldv1.ReasonReady)
	if fixed.Status.ObservedGeneration != 2 {
		t.Errorf("status.observedGeneration = %d, want 2", fixed.Status.ObservedGeneration)
	}
}

// A filter that compiles but whose worst case is over the budget (the issue's: S is a
// 200-character literal of x; one evaluation allocated 1.5 GB) is refused the same way,
// with the budget and the estimate in the message.
func TestSubscription_AFilterOverTheBudgetIsInvalid(t *testing.T) {
	ns := newNamespace(t)
	createEndpoint(t, ns, "alerts")
	s := "'" + strings.Repeat("x", 200) + "'"
	bomb := "(" + s + ".replace('x'," + s + ")).replace('x', " + s + ".replace('x'," + s + ")).size() > 0 && event.type == 'a'"
	createSubscription(t, ns, "bomb", "alerts", []string{"*"}, bomb)

	got := waitReady(t, settle, ns, "bomb", metav1.ConditionFalse, heraldv1.ReasonInvalidFilter)
	_, err := routing.CompileFilter(bomb)
	var budget *routing.BudgetError
	if !errors.As(err, &budget) {
		t.Fatalf("the fixture filter is not refused for its cost: %v", err)
	}
	msg := readyCondition(got).Message
	for _, want := range []string{
		fmt.Sprintf("budget of %d", routing.FilterBudget),
		fmt.Sprintf("cost on an event of %d bytes is %d", routing.MaxEventBytes, budget.Estimate),
		"no event is routed through this subscription",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q should contain %q", msg, want)
		}
	}
	waitEvent(t, ns, "bomb", corev1.EventTypeWarning, heraldv1.ReasonInvalidFilter)
}

func TestSubscription_ReportsEveryProblemMostSevereFirst(t *testing.T) {
	ns := newNamespace(t)
	// Both wrong at once: the filter needs a person, the endpoint may still be applied.
	const bad = "event.data.amount >"
	createSubscription(t, ns, "large", "missing", []string{"payment.*"}, bad)

	got := waitReady(t, settle, ns, "large", metav1.ConditionFalse, heraldv1.ReasonInvalidFilter)
	msg := readyCondition(got).Message
	_, compileErr := routing.CompileFilter(bad)
	if !strings.HasPrefix(msg, compileErr.Error()) {
		t.Errorf("message %q should start with the compiler's %q", msg, compileErr.Error())
	}
	if !strings.Contains(msg, "; also EndpointNotFound: WebhookEndpoint missing does not exist") {
		t.Errorf("message %q should also name the missing endpoint", msg)
	}
}

func TestSubscription_ValidPatternsAndFilterAreReady(t *testing.T) {
	ns := newNamespace(t)
	createEndpoint(t, ns, "ops")
	createSubscription(t, ns, "everything", "ops", []string{"*", "approval.*", "invoice.paid"},
		"event.type.startsWith('approval.') || (has(event.data.amount) && event.data.amount > 1000)")

	got := waitReady(t, settle, ns, "everything", metav1.ConditionTrue, heraldv1.ReasonReady)
	if msg := readyCondition(got).Message; !strings.Contains(msg, "ops") {
		t.Errorf("message %q should name the endpoint", msg)
	}
}

// An event type with an empty segment ("order..paid") used to pass the schema and was
// caught only here (InvalidEventType); the CRD now refuses it at apply time (see
// api/v1alpha1 validation tests), and the controller's check remains for objects
// stored before that rule.

func createEndpoint(t *testing.T, ns, name string) {
	t.Helper()
	ep := &heraldv1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       heraldv1.WebhookEndpointSpec{URL: "https://" + name + ".example/hooks"},
	}
	if err := k.Create(context.Background(), ep); err != nil {
		t.Fatalf("creating WebhookEndpoint %s: %v", name, err)
	}
}

func createSubscription(t *testing.T, ns, name, endpoint string, types []string, filter string) {
	t.Helper()
	sub := &heraldv1.WebhookSubscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: heraldv1.WebhookSubscriptionSpec{
			EndpointRef: heraldv1.LocalObjectReference{Name: endpoint},
			EventTypes:  types,
			Filter:      filter,
		},
	}
	if err := k.Create(context.Background(), sub); err != nil {
		t.Fatalf("creating WebhookSubscription %s: %v", name, err)
	}
}

func readyCondition(sub *heraldv1.WebhookSubscription) metav1.Condition {
	if c := meta.FindStatusCondition(sub.Status.Conditions, heraldv1.ConditionReady); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// waitReady waits until Ready has status and reason for the subscription's current
// generation, and returns the subscription as stored.
func waitReady(t *testing.T, timeout time.Duration, ns, name string, status metav1.ConditionStatus, reason string) *heraldv1.WebhookSubscription {
	t.Helper()
	sub := &heraldv1.WebhookSubscription{}
	eventually(t, timeout, func() error {
		if err := k.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, sub); err != nil {
			return err
		}
		c := readyCondition(sub)
		if c.Status != status || c.Reason != reason || c.ObservedGeneration != sub.Generation {
			return fmt.Errorf("Ready is %s/%s (%q) for generation %d, want %s/%s for generation %d",
				c.Status, c.Reason, c.Message, c.ObservedGeneration, status, reason, sub.Generation)
		}
		return nil
	})
	return sub
}

func waitEvent(t *testing.T, ns, name, eventType, reason string) {
	t.Helper()
	eventually(t, settle, func() error {
		var list eventsv1.EventList
		if err := k.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Kind == "WebhookSubscription" && e.Regarding.Name == name && e.Type == eventType && e.Reason == reason {
				return nil
			}
		}
		return fmt.Errorf("no %s event with reason %s on WebhookSubscription %s", eventType, reason, name)
	})
}
