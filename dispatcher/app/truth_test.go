package app_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// TestDispatcher_SaysOnTheResourceWhenItHolds: a hold is on the WebhookEndpoint within
// seconds (Delivering=False with the resolver's reason), not only in the log, and
// clears when the cause is fixed.
func TestDispatcher_SaysOnTheResourceWhenItHolds(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "truth-hold"
	s := newSink(t)
	fixture(t, c, ns, "authed", heraldv1.WebhookEndpointSpec{
		URL: s.URL, Timeout: "2s",
		Headers: []heraldv1.HeaderSpec{{Name: "Authorization", ValueFrom: &heraldv1.SecretKeySelector{Name: "api-token", Key: "token"}}},
	})
	d := startDispatcher(t)

	ep := waitDelivering(t, c, ns, "authed", metav1.ConditionFalse, heraldv1.ReasonReferencedSecretNotFound)
	cond := meta.FindStatusCondition(ep.Status.Conditions, heraldv1.ConditionDelivering)
	if !strings.Contains(cond.Message, "api-token") || !strings.Contains(cond.Message, "header Authorization") {
		t.Errorf("Delivering message %q should name the Secret and the header", cond.Message)
	}
	waitHeld(t, c, d, s, ns, "authed", heraldv1.ReasonReferencedSecretNotFound, "evt_held")

	mustCreate(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "api-token", Namespace: ns}, StringData: map[string]string{"token": "Bearer t0ken"}})
	r, _ := s.waitEvent(t, "evt_held", 20*time.Second)
	if got := r.Header.Get("Authorization"); got != "Bearer t0ken" {
		t.Errorf("Authorization = %q, want the header from the Secret", got)
	}
	waitDelivering(t, c, ns, "authed", metav1.ConditionTrue, heraldv1.ReasonDelivering)
}

// TestDispatcher_FilterErrorsAreVisible: an event on which a subscription's filter
// fails to evaluate is not routed through it, and the failure is counted on the
// subscription's status and in a metric, and named in a Warning Event.
func TestDispatcher_FilterErrorsAreVisible(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "truth-filter"
	s := newSink(t)
	fixture(t, c, ns, "big", heraldv1.WebhookEndpointSpec{URL: s.URL, Timeout: "2s"})
	update(t, c, &heraldv1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: "all", Namespace: ns}}, func(sub *heraldv1.WebhookSubscription) {
		sub.Spec.Filter = "event.data.amount > 1000"
	})
	before := filterErrorsMetric(t, ns)
	d := startDispatcher(t)

	// publish sends data {"n": 1}: no amount, so the filter cannot be evaluated.
	if m := d.publish(ns, "evt_no_amount", "invoice.paid"); m != 0 {
		t.Fatalf("matched = %d, want 0: a failing filter routes nothing", m)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var sub heraldv1.WebhookSubscription
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "all"}, &sub); err != nil {
			t.Fatal(err)
		}
		cond := meta.FindStatusCondition(sub.Status.Conditions, heraldv1.ConditionFilterHealthy)
		if sub.Status.FilterErrors == 1 && cond != nil {
			if cond.Status != metav1.ConditionFalse || cond.Reason != heraldv1.ReasonFilterFailed || !strings.Contains(cond.Message, "evt_no_amount") {
				t.Errorf("FilterHealthy = %+v, want False/FilterFailed naming the event", cond)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscription status after 20s: %+v", sub.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := filterErrorsMetric(t, ns) - before; got != 1 {
		t.Errorf("herald_filter_errors_total{namespace=%q} grew by %v, want 1", ns, got)
	}
	for {
		var evs eventsv1.EventList
		if err := c.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range evs.Items {
			found = found || (e.Reason == heraldv1.EventFilterFailed && e.Regarding.Kind == "WebhookSubscription" && strings.Contains(e.Note, "evt_no_amount"))
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no FilterFailed Event naming evt_no_amount within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A filter edit starts the count afresh.
	update(t, c, &heraldv1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: "all", Namespace: ns}}, func(sub *heraldv1.WebhookSubscription) {
		sub.Spec.Filter = "has(event.data.amount) && event.data.amount > 1000"
	})
	for {
		var sub heraldv1.WebhookSubscription
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "all"}, &sub); err != nil {
			t.Fatal(err)
		}
		if meta.IsStatusConditionTrue(sub.Status.Conditions, heraldv1.ConditionFilterHealthy) && sub.Status.FilterErrors == 0 {
			break
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("subscription status after the filter edit: %+v", sub.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func filterErrorsMetric(t *testing.T, ns string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "herald_filter_errors_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelIs(m, "namespace", ns) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func labelIs(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// TestDispatcher_GoneDisablesTheEndpointAtOnce: one 410 Gone disables the endpoint on its
// status, with reason Gone and a Warning Event, whatever the failure threshold.
func TestDispatcher_GoneDisablesTheEndpointAtOnce(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "truth-gone"
	s := newSink(t)
	s.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusGone) })
	fixture(t, c, ns, "retired", heraldv1.WebhookEndpointSpec{URL: s.URL, Timeout: "2s",
		AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To[int32](10)}})
	d := startDispatcher(t)
	d.publish(ns, "evt_gone", "invoice.paid")
	ep := waitEndpoint(t, c, ns, "retired", "disabled by 410", func(e *heraldv1.WebhookEndpoint) bool {
		return meta.IsStatusConditionTrue(e.Status.Conditions, heraldv1.ConditionDisabled)
	})
	cond := meta.FindStatusCondition(ep.Status.Conditions, heraldv1.ConditionDisabled)
	if cond.Reason != heraldv1.ReasonGone || !strings.Contains(cond.Message, "410 Gone") || ep.Status.ConsecutiveFailures != 1 {
		t.Errorf("Disabled = %+v after %d failures, want reason Gone after 1", cond, ep.Status.ConsecutiveFailures)
	}
	waitEvent(t, c, ns, heraldv1.EventEndpointDisabled, "410 Gone")
}
