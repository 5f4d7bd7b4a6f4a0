package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// The dispatcher's status.blockedBy (tested end to end in dispatcher/app) reaches the
// person asking why an ordered endpoint's deliveries stopped; an unordered endpoint
// says nothing of ordering.
func TestDescribeEndpoint_NamesTheEventBlockingAnOrderedEndpoint(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	next := metav1.NewTime(now.Add(4 * time.Minute))
	ep := &heraldv1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Name: "ledger", Namespace: "shop"},
		Spec:       heraldv1.WebhookEndpointSpec{URL: "https://ledger.example.com/hooks", Ordering: heraldv1.OrderingOrdered},
		Status: heraldv1.WebhookEndpointStatus{BlockedBy: &heraldv1.BlockingDelivery{
			EventID: "evt_1", DeliveryID: "dlv_1", Since: metav1.NewTime(now.Add(-6 * time.Minute)), FailedAttempts: 2, NextAttemptTime: &next,
		}},
	}
	var out bytes.Buffer
	if err := describeEndpoint(&out, "herald", now, ep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Ordering:      Ordered: one delivery at a time, in the order accepted",
		"Blocked by:    event evt_1, failing since 2026-11-30T11:54:00Z (6m ago, 2 failed attempts), next attempt 2026-11-30T12:04:00Z; the deliveries after it wait",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("endpoint status lacks %q:\n%s", want, out.String())
		}
	}

	ep.Spec.Ordering, ep.Status.BlockedBy = heraldv1.OrderingUnordered, nil
	out.Reset()
	if err := describeEndpoint(&out, "herald", now, ep); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "Ordering") || strings.Contains(out.String(), "Blocked") {
		t.Errorf("an unordered endpoint's status speaks of ordering:\n%s", out.String())
	}
}
