package app_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// waitEndpoint polls the WebhookEndpoint until ok accepts it.
func waitEndpoint(t *testing.T, c client.Client, ns, name, what string, ok func(*heraldv1.WebhookEndpoint) bool) *heraldv1.WebhookEndpoint {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	ep := &heraldv1.WebhookEndpoint{}
	for {
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ep); err == nil && ok(ep) {
			return ep
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s; status: %+v counters: %+v", what, ep.Status, ep.Status.Counters)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitEvent(t *testing.T, c client.Client, ns, reason, contains string) eventsv1.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list eventsv1.EventList
		if err := c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		for _, e := range list.Items {
			if e.Reason == reason && strings.Contains(e.Note, contains) {
				return e
			}
		}
		if time.Now().After(deadline) {
			for _, e := range list.Items {
				t.Logf("Event %s: %q", e.Reason, e.Note)
			}
			t.Fatalf("no %s Event mentioning %q within 30s", reason, contains)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestDispatcher_AutoDisableHoldsThenReenableAndReplayDeliver(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "lifecycle"
	var healthy atomic.Bool
	var requests atomic.Int64
	s := newSink(t)
	s.Config.Handler = wrapFailing(s.Config.Handler, &healthy, &requests)
	fixture(t, c, ns, "hooks", heraldv1.WebhookEndpointSpec{
		URL: s.URL, Timeout: "2s",
		Retry:       heraldv1.RetrySpec{Schedule: []string{"50ms", "50ms"}, JitterPercent: ptr.To[int32](0)},
		AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To[int32](3)},
	})
	d := startDispatcher(t)

	// Three failed attempts: the schedule is exhausted (a dead letter) and the
	// threshold is reached (disabled).
	d.publish(ns, "evt_doomed", "invoice.paid")
	ep := waitEndpoint(t, c, ns, "hooks", "disabled with a dead letter", func(e *heraldv1.WebhookEndpoint) bool {
		return meta.IsStatusConditionTrue(e.Status.Conditions, heraldv1.ConditionDisabled) &&
			e.Status.Counters != nil && e.Status.Counters.DeadLettered == 1
	})
	cond := meta.FindStatusCondition(ep.Status.Conditions, heraldv1.ConditionDisabled)
	if cond.Reason != "ConsecutiveFailures" || !strings.Contains(cond.Message, "3 consecutive") || cond.ObservedGeneration != ep.Generation {
		t.Errorf("Disabled condition = %+v", cond)
	}
	if ep.Status.ConsecutiveFailures != 3 || ep.Status.DisabledAt == nil || ep.Status.Counters.FailedAttempts != 3 {
		t.Errorf("status = consecutiveFailures %d, disabledAt %v, counters %+v", ep.Status.ConsecutiveFailures, ep.Status.DisabledAt, ep.Status.Counters)
	}
	if la := ep.Status.LastAttempt; la == nil || la.StatusCode != 500 || la.EventID != "evt_doomed" || !strings.Contains(la.Error, "500") {
		t.Errorf("lastAttempt = %+v", la)
	}
	waitEvent(t, c, ns, "EndpointDisabled", "3 consecutive failed attempts")
	dead := waitEvent(t, c, ns, "DeliveryFailed", "evt_doomed")
	if !strings.Contains(dead.Note, "invoice.paid") || !strings.Contains(dead.Note, "3 attempts") || !strings.Contains(dead.Note, "HTTP 500") {
		t.Errorf("DeliveryFailed note = %q", dead.Note)
	}
	if strings.Contains(dead.Note, secretV1) || strings.Contains(cond.Message, secretV1) {
		t.Fatal("a secret leaked into an Event or the status")
	}

	// While disabled, new deliveries are held: not attempted, not dropped.
	before := requests.Load()
	d.publish(ns, "evt_held", "invoice.paid")
	// The dispatcher says it holds, and counts the new delivery pending: stored and not
	// taken. Only then is "no attempt" a fact.
	waitDelivering(t, c, ns, "hooks", metav1.ConditionFalse, heraldv1.ReasonDisabled)
	waitEndpoint(t, c, ns, "hooks", "held delivery counted as pending", func(e *heraldv1.WebhookEndpoint) bool {
		return e.Status.Counters != nil && e.Status.Counters.Pending == 1
	})
	if attempted := requests.Load() - before; attempted != 0 {
		t.Fatalf("%d attempts while disabled", attempted)
	}

	// Re-enable by annotation: the held delivery flows.
	healthy.Store(true)
	update(t, c, &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "hooks", Namespace: ns}}, func(e *heraldv1.WebhookEndpoint) {
		metav1.SetMetaDataAnnotation(&e.ObjectMeta, heraldv1.AnnotationReenable, "first")
	})
	s.waitEvent(t, "evt_held", 20*time.Second)
	waitEvent(t, c, ns, "EndpointEnabled", "first")
	waitEndpoint(t, c, ns, "hooks", "re-enabled", func(e *heraldv1.WebhookEndpoint) bool {
		return meta.IsStatusConditionFalse(e.Status.Conditions, heraldv1.ConditionDisabled) &&
			e.Status.LastHandledReenable == "first" && e.Status.ConsecutiveFailures == 0 && e.Status.DisabledAt == nil
	})

	// Replay by annotation: the dead letter is delivered with its event id.
	update(t, c, &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "hooks", Namespace: ns}}, func(e *heraldv1.WebhookEndpoint) {
		metav1.SetMetaDataAnnotation(&e.ObjectMeta, heraldv1.AnnotationReplayDeadLetters, "r1")
	})
	s.waitEvent(t, "evt_doomed", 20*time.Second)
	// The annotation's first form is a dead-letter selection of the one replayer.
	waitEvent(t, c, ns, heraldv1.EventReplayCompleted, "replay r1 re-sent 1 of 1 selected (from=dead-letters)")
	waitEndpoint(t, c, ns, "hooks", "replay recorded", func(e *heraldv1.WebhookEndpoint) bool {
		return e.Status.LastHandledReplay == "r1" && e.Status.Counters != nil && e.Status.Counters.Delivered == 2 && e.Status.Counters.Pending == 0
	})
}

// wrapFailing answers 500 until healthy is set, then lets h answer.
func wrapFailing(h http.Handler, healthy *atomic.Bool, requests *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if healthy.Load() {
			h.ServeHTTP(w, r)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
}
