package watch_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/internal/routing"
	"github.com/herald-dev/herald/internal/testenv"
)

// A subscription stored before filters were judged by their cost (the API server only
// checks the filter's length, and here no manager runs to mark it InvalidFilter) is
// refused by the dispatcher when it loads it, with the manager's judge, so it never runs.
// The filter is cheap on this event and true, so running it would route to the endpoint;
// its worst case (a loop inside a loop over event lists) is over the budget.
func TestSubscriptions_AFilterOverTheBudgetIsNeverLoaded(t *testing.T) {
	const overBudget = "event.data.l.exists(x, event.data.l.exists(y, x == y)) || event.data.amount > 1000"
	var budget *routing.BudgetError
	if _, err := routing.CompileFilter(overBudget); !errors.As(err, &budget) {
		t.Fatalf("the fixture filter is not refused for its cost: %v", err)
	}

	ctx := context.Background()
	ns := testenv.NewNamespace(t, k, "watch-budget-")
	route := func() []string {
		return table.Route(nil, ns, &router.Event{ID: "e", Type: "invoice.paid", Data: json.RawMessage(`{"amount": 5000, "l": [1]}`)}, nil)
	}
	waitRoute := func(what string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !slices.Equal(route(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: route = %v, want %v", what, route(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	sub := &heraldv1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nested"},
		Spec: heraldv1.WebhookSubscriptionSpec{EndpointRef: heraldv1.LocalObjectReference{Name: "billing"},
			EventTypes: []string{"invoice.*"}, Filter: "event.data.amount > 1000"}}
	if err := k.Create(ctx, sub); err != nil {
		t.Fatal(err)
	}
	waitRoute("a filter within the budget", "billing")

	sub.Spec.Filter = overBudget
	if err := k.Update(ctx, sub); err != nil {
		t.Fatalf("the API server should store the filter (only the manager and the dispatcher judge its cost): %v", err)
	}
	waitRoute("a filter over the budget")
	// Still nothing a while later: the refusal is not a transient state.
	time.Sleep(500 * time.Millisecond)
	if got := route(); len(got) != 0 {
		t.Fatalf("route = %v after the filter over the budget was stored, want nothing", got)
	}
}
