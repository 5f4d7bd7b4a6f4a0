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
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/internal/eventschema"
)

// operationalDeliveries returns the sink's deliveries of Herald's own events.
func (s *sink) operational() []envelopeOf {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []envelopeOf
	for i, b := range s.body {
		var e envelopeOf
		if json.Unmarshal(b, &e) == nil && strings.HasPrefix(e.Type, "herald.") {
			e.req, e.raw = s.reqs[i], b
			out = append(out, e)
		}
	}
	return out
}

type envelopeOf struct {
	ID   string          `json:"id"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
	req  *http.Request
	raw  []byte
}

// An endpoint auto-disabled in one namespace produces exactly one signed
// herald.endpoint.disabled delivery, to that namespace's alert endpoint: none to itself
// (it subscribes to herald.* too), none to a subscription of "*" and none to another
// namespace's alert endpoint. Its re-enable produces one herald.endpoint.enabled, and
// the failing endpoint, delivering again, receives none of the news about itself.
func TestDispatcher_AutoDisabledEndpointSendsOneSignedOperationalEvent(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns, other = "ops-a", "ops-b"
	var healthy atomic.Bool
	var requests atomic.Int64
	flaky := newSink(t)
	flaky.Config.Handler = wrapFailing(flaky.Config.Handler, &healthy, &requests)
	alerts, everything, elsewhere := newSink(t), newSink(t), newSink(t)

	fixture(t, c, ns, "flaky", heraldv1.WebhookEndpointSpec{
		URL: flaky.URL, Timeout: "2s",
		Retry:       heraldv1.RetrySpec{Schedule: []string{"1h"}, JitterPercent: ptr.To[int32](0)},
		AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To[int32](2)},
	})
	endpointWithSubscription(t, c, ns, "flaky-alerts", "flaky", "", []string{"herald.*"})
	endpointWithSubscription(t, c, ns, "alerts", "alerts", alerts.URL, []string{"herald.*"})
	endpointWithSubscription(t, c, ns, "everything", "everything", everything.URL, []string{"*"})
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other}})
	endpointWithSubscription(t, c, other, "alerts", "alerts", elsewhere.URL, []string{"herald.*"})
	d := startDispatcherWith(t, func(o *app.Options) { o.Config.Status.OperationalEventsInterval = time.Second })

	d.publish(ns, "evt_one", "order.created")
	d.publish(ns, "evt_two", "order.created")
	waitEndpoint(t, c, ns, "flaky", "disabled", func(e *heraldv1.WebhookEndpoint) bool {
		return meta.IsStatusConditionTrue(e.Status.Conditions, heraldv1.ConditionDisabled)
	})
	got := waitOperational(t, alerts, 1)[0]
	if got.Type != heraldv1.EventTypeEndpointDisabled {
		t.Fatalf("alerts received %s, want %s", got.Type, heraldv1.EventTypeEndpointDisabled)
	}
	if ok := signedWith(got.req, got.raw, secretV1); !ok[0] {
		t.Error("the operational event's signature does not verify with the alert endpoint's secret")
	}
	var data map[string]any
	if err := json.Unmarshal(got.Data, &data); err != nil {
		t.Fatal(err)
	}
	if data["namespace"] != ns || data["endpoint"] != "flaky" || data["reason"] != "ConsecutiveFailures" || data["consecutiveFailures"] != float64(2) {
		t.Errorf("data = %s", got.Data)
	}
	def, _ := eventschema.Builtin(heraldv1.EventTypeEndpointDisabled)
	if v := def.Schema.Validate(got.Data); v != nil {
		t.Errorf("the data breaks its documented schema: %v", v)
	}

	// Re-enabled and healthy (its two failed deliveries wait for their retry in an hour):
	// new events reach flaky again; the news goes to alerts only.
	healthy.Store(true)
	update(t, c, &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "flaky", Namespace: ns}}, func(e *heraldv1.WebhookEndpoint) {
		metav1.SetMetaDataAnnotation(&e.ObjectMeta, heraldv1.AnnotationReenable, "fixed")
	})
	enabled := waitOperational(t, alerts, 2)[1]
	if enabled.Type != heraldv1.EventTypeEndpointEnabled || !strings.Contains(string(enabled.Data), "fixed") {
		t.Errorf("second operational event = %s %s, want herald.endpoint.enabled naming the annotation", enabled.Type, enabled.Data)
	}
	// Give any stray event time to arrive before counting what did not.
	d.publish(ns, "evt_marker", "order.created")
	everything.waitEvent(t, "evt_marker", 20*time.Second)
	flaky.waitEvent(t, "evt_marker", 20*time.Second)
	time.Sleep(2 * time.Second)
	if n := len(alerts.operational()); n != 2 {
		t.Errorf("alerts received %d operational events, want exactly 2 (disabled, enabled)", n)
	}
	for name, s := range map[string]*sink{"flaky (the endpoint they are about)": flaky, "a subscription to *": everything, "another namespace": elsewhere} {
		if got := s.operational(); len(got) != 0 {
			t.Errorf("%s received %d operational events (%s), want none", name, len(got), got[0].Type)
		}
	}
}

// endpointWithSubscription creates an endpoint (its signing Secret holding secretV1; url
// "" reuses endpoint's existing one) and a subscription to it.
func endpointWithSubscription(t *testing.T, c client.Client, ns, sub, endpoint, url string, types []string) {
	t.Helper()
	if url != "" {
		mustCreate(t, c,
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: endpoint + "-signing", Namespace: ns}, StringData: map[string]string{"secret": secretV1}},
			&heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: endpoint, Namespace: ns}, Spec: heraldv1.WebhookEndpointSpec{URL: url}})
	}
	mustCreate(t, c, &heraldv1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: sub, Namespace: ns},
		Spec: heraldv1.WebhookSubscriptionSpec{EndpointRef: heraldv1.LocalObjectReference{Name: endpoint}, EventTypes: types}})
}

func waitOperational(t *testing.T, s *sink, n int) []envelopeOf {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got := s.operational(); len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d operational events arrived within 30s, want %d", len(s.operational()), n)
		}
		select {
		case <-s.ch:
		case <-time.After(200 * time.Millisecond):
		}
	}
}
