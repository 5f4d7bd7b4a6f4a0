package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/app"
)

// slackTransform makes a Slack incoming-webhook message of Herald's own
// herald.endpoint.disabled event.
const slackTransform = `{"text": ":rotating_light: Herald disabled webhook endpoint " + event.data.namespace + "/" + event.data.endpoint +
  " after " + string(int(event.data.consecutiveFailures)) + " failed attempts: " + event.data.message,
 "username": "herald"}`

// TestDispatcher_TransformSendsASlackMessageOfAnOperationalEventAndCountsItsFailures
// has one endpoint fail until Herald disables it, and a second endpoint, subscribed to
// herald.endpoint.disabled with a Slack-shaped transform, receive the operational event
// as the Slack message its transform makes, signed over that body. An event the
// transform fails on (it lacks the fields) is dead-lettered with reason TransformFailed,
// counted in status.transformErrors and named by TransformHealthy=False and a Warning
// Event; it costs the receiver nothing (no attempt, no failure counted). A spec edit
// starts the count afresh.
func TestDispatcher_TransformSendsASlackMessageOfAnOperationalEventAndCountsItsFailures(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "shapes"
	broken := newSink(t)
	broken.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	slack := newSink(t)
	fixture(t, c, ns, "broken", heraldv1.WebhookEndpointSpec{URL: broken.URL, Timeout: "2s",
		Retry:       heraldv1.RetrySpec{Schedule: []string{"50ms"}, JitterPercent: ptr.To[int32](0)},
		AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To[int32](2)}})
	// The fixture's subscription "all" routes every type to "broken"; slack gets the
	// operational event and order events (which its transform cannot shape).
	mustCreate(t, c,
		secretFor(ns, "slack"),
		&heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "slack", Namespace: ns}, Spec: heraldv1.WebhookEndpointSpec{
			URL: slack.URL, Timeout: "2s", Payload: heraldv1.PayloadSpec{Transform: slackTransform},
			Retry: heraldv1.RetrySpec{Schedule: []string{"50ms"}}}},
		&heraldv1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: "alerts", Namespace: ns}, Spec: heraldv1.WebhookSubscriptionSpec{
			EndpointRef: heraldv1.LocalObjectReference{Name: "slack"}, EventTypes: []string{"herald.endpoint.disabled", "order.*"}}},
	)
	d := startDispatcherWith(t, func(o *app.Options) { o.Config.Status.OperationalEventsInterval = time.Second })
	d.publish(ns, "evt_breaks_it", "invoice.paid")
	d.publish(ns, "evt_breaks_it_2", "invoice.paid")

	deadline := time.Now().Add(30 * time.Second)
	var body []byte
	var req *http.Request
	for body == nil {
		slack.mu.Lock()
		for i, r := range slack.reqs {
			if strings.Contains(r.Header.Get("X-Herald-Event-Type"), "herald.endpoint.disabled") {
				req, body = r, slack.body[i]
			}
		}
		slack.mu.Unlock()
		if time.Now().After(deadline) {
			slack.mu.Lock()
			var got []string
			for _, r := range slack.reqs {
				got = append(got, r.Header.Get("X-Herald-Event-Type"))
			}
			slack.mu.Unlock()
			ep := &heraldv1.WebhookEndpoint{}
			_ = c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "slack"}, ep)
			t.Fatalf("no herald.endpoint.disabled reached the Slack endpoint within 30s; it received %q; its status: %+v", got, ep.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var msg map[string]any
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatalf("the body is no JSON: %v\n%s", err, body)
	}
	text, _ := msg["text"].(string)
	if !strings.HasPrefix(text, ":rotating_light: Herald disabled webhook endpoint shapes/broken after 2 failed attempts: 2 consecutive failed attempts") ||
		msg["username"] != "herald" || len(msg) != 2 {
		t.Errorf("Slack message = %s", body)
	}
	if ok := signedWith(req, body, secretV1); len(ok) == 0 || !ok[0] {
		t.Errorf("the transformed body is not what was signed")
	}

	// An order event lacks event.data.namespace: the transform fails, nothing is sent.
	d.publish(ns, "evt_no_fields", "order.created")
	ep := waitEndpoint(t, c, ns, "slack", "transform failure counted", func(e *heraldv1.WebhookEndpoint) bool {
		return e.Status.TransformErrors == 1 && meta.IsStatusConditionFalse(e.Status.Conditions, heraldv1.ConditionTransformHealthy)
	})
	cond := meta.FindStatusCondition(ep.Status.Conditions, heraldv1.ConditionTransformHealthy)
	if cond.Reason != heraldv1.ReasonTransformFailed || !strings.Contains(cond.Message, "evt_no_fields") || cond.ObservedGeneration != ep.Generation {
		t.Errorf("TransformHealthy = %+v", cond)
	}
	if ep.Status.ConsecutiveFailures != 0 || ep.Status.Counters.FailedAttempts != 0 || ep.Status.Counters.DeadLettered != 1 {
		t.Errorf("a transform failure must cost the receiver nothing and be kept: consecutiveFailures %d, counters %+v",
			ep.Status.ConsecutiveFailures, ep.Status.Counters)
	}
	if slack.has("evt_no_fields") {
		t.Error("an event the transform failed on was sent anyway")
	}
	waitEvent(t, c, ns, heraldv1.EventTransformFailed, "evt_no_fields")

	// A new transform starts afresh.
	update(t, c, &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "slack", Namespace: ns}}, func(e *heraldv1.WebhookEndpoint) {
		e.Spec.Payload.Transform = `{"text": "event " + event.id}`
	})
	waitEndpoint(t, c, ns, "slack", "the count starts afresh with the new transform", func(e *heraldv1.WebhookEndpoint) bool {
		return e.Status.TransformErrors == 0 && meta.IsStatusConditionTrue(e.Status.Conditions, heraldv1.ConditionTransformHealthy)
	})
}

// TestDispatcher_AThrottlingReceiverIsThrottledNotFailingOnStatusAndInTheMetric has a
// receiver answer 429 with Retry-After to everything: the endpoint (auto-disable after
// two failures) shows status.state Throttled with the limits Herald keeps to, is never
// disabled however many 429s it gets, and the herald_endpoint_state metric says so. Once
// the receiver accepts again, every delivery arrives and the endpoint is Healthy.
func TestDispatcher_AThrottlingReceiverIsThrottledNotFailingOnStatusAndInTheMetric(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "throttled"
	var accepting atomic.Bool
	s := newSink(t)
	inner := s.Config.Handler
	s.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !accepting.Load() {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		inner.ServeHTTP(w, r)
	})
	fixture(t, c, ns, "busy", heraldv1.WebhookEndpointSpec{URL: s.URL, Timeout: "2s",
		Retry:       heraldv1.RetrySpec{Schedule: []string{"100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms", "100ms"}},
		AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To[int32](2)}})
	d := startDispatcher(t)
	for _, id := range []string{"evt_t1", "evt_t2", "evt_t3"} {
		d.publish(ns, id, "order.created")
	}
	ep := waitEndpoint(t, c, ns, "busy", "Throttled on status", func(e *heraldv1.WebhookEndpoint) bool {
		return e.Status.State == heraldv1.DeliveryThrottled && e.Status.Throttle != nil && e.Status.Counters != nil &&
			e.Status.Counters.FailedAttempts >= 3
	})
	if th := ep.Status.Throttle; th.Reason != "429" || th.MaxInFlight < 1 || th.RequestsPerSecond == "" {
		t.Errorf("throttle = %+v", th)
	}
	throttled := map[string]string{"namespace": ns, "endpoint": "busy", "state": heraldv1.DeliveryThrottled}
	deadline := time.Now().Add(15 * time.Second)
	for gaugeValue(t, "herald_endpoint_state", throttled) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("herald_endpoint_state{state=\"Throttled\"} is not 1 within 15s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if v := gaugeValue(t, "herald_endpoint_paced_requests_per_second", map[string]string{"namespace": ns, "endpoint": "busy"}); v <= 0 {
		t.Errorf("herald_endpoint_paced_requests_per_second = %v, want the paced rate", v)
	}
	if meta.IsStatusConditionTrue(ep.Status.Conditions, heraldv1.ConditionDisabled) || ep.Status.ConsecutiveFailures != 0 {
		t.Errorf("429s to an adaptive endpoint must not count towards auto-disable: consecutiveFailures %d, conditions %+v",
			ep.Status.ConsecutiveFailures, ep.Status.Conditions)
	}
	waitEvent(t, c, ns, heraldv1.EventThrottled, "the receiver answered 429: Herald sends at most")
	accepting.Store(true)
	for _, id := range []string{"evt_t1", "evt_t2", "evt_t3"} {
		s.waitEvent(t, id, 30*time.Second)
	}
	waitEndpoint(t, c, ns, "busy", "Healthy once the receiver recovered", func(e *heraldv1.WebhookEndpoint) bool {
		return e.Status.State == heraldv1.DeliveryHealthy && e.Status.Throttle == nil
	})
	waitEvent(t, c, ns, heraldv1.EventThrottleLifted, "the configured limits apply")
}

func secretFor(ns, endpoint string) client.Object {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: endpoint + "-signing", Namespace: ns}, StringData: map[string]string{"secret": secretV1}}
}

// gaugeValue reads a gauge of the process's metrics registry (the dispatcher's), -1 when
// the series is absent.
func gaugeValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// TestDispatcher_AServiceThatDoesNotExistYetHoldsTheDeliveries names a Service that
// does not exist: the dispatcher holds the endpoint (Delivering=False,
// ServiceNotFound) and keeps the event. Once the Service exists, the hold lifts and
// the delivery is attempted at the Service's cluster IP, which the outbound policy
// (private networks refused here) lets through for this endpoint; no pod answers it on
// this machine, but the policy did not stop it. (A receiver pod behind a Service is
// the cluster suite's part.)
func TestDispatcher_AServiceThatDoesNotExistYetHoldsTheDeliveries(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "by-service"
	fixture(t, c, ns, "internal", heraldv1.WebhookEndpointSpec{Timeout: "1s",
		Service: &heraldv1.ServiceReference{Name: "receiver", Scheme: "http", Path: "/hooks"},
		Retry:   heraldv1.RetrySpec{Schedule: []string{"1h"}}})
	d := startDispatcher(t)
	d.publish(ns, "evt_waits", "order.created")
	ep := waitEndpoint(t, c, ns, "internal", "held for the Service", func(e *heraldv1.WebhookEndpoint) bool {
		return meta.IsStatusConditionFalse(e.Status.Conditions, heraldv1.ConditionDelivering) &&
			e.Status.Counters != nil && e.Status.Counters.Pending == 1
	})
	cond := meta.FindStatusCondition(ep.Status.Conditions, heraldv1.ConditionDelivering)
	if cond.Reason != heraldv1.ReasonServiceNotFound || !strings.Contains(cond.Message, "Service receiver does not exist") {
		t.Errorf("Delivering = %+v, want ServiceNotFound naming the Service", cond)
	}
	if ep.Status.LastAttempt != nil {
		t.Errorf("an attempt was made while the Service was missing: %+v", ep.Status.LastAttempt)
	}

	mustCreate(t, c, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "receiver", Namespace: ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}})
	ep = waitEndpoint(t, c, ns, "internal", "attempted at the Service", func(e *heraldv1.WebhookEndpoint) bool {
		return meta.IsStatusConditionTrue(e.Status.Conditions, heraldv1.ConditionDelivering) && e.Status.LastAttempt != nil
	})
	// Whatever answers at that address on this machine (nothing, or some host of the
	// test network), the attempt went there.
	if a := ep.Status.LastAttempt; a.EventID != "evt_waits" || strings.Contains(a.Error, "outbound policy") {
		t.Errorf("last attempt = %+v, want evt_waits sent to the Service's address, not refused by the outbound policy", a)
	}
}
