package app_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/internal/testenv"
)

func TestDispatcher_TwoReplicasAgreeOnDisabledAndCounters(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "replicas"
	var requests atomic.Int64
	var healthy atomic.Bool
	s := newSink(t)
	s.Config.Handler = wrapFailing(s.Config.Handler, &healthy, &requests)
	fixture(t, c, ns, "shared", heraldv1.WebhookEndpointSpec{
		URL: s.URL, Timeout: "2s",
		// A long wait after the first failure: each event is attempted once until
		// the endpoint is disabled.
		Retry:       heraldv1.RetrySpec{Schedule: []string{"1h"}, JitterPercent: ptr.To[int32](0)},
		AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To[int32](4)},
	})
	url := testenv.NATS(t)
	a := startDispatcherOn(t, config.Store{URL: url})
	b := startDispatcherOn(t, config.Store{URL: url})

	// Events arrive through both replicas; both deliver from the one queue.
	for i, d := range []*dispatcher{a, b, a, b, a, b, a, b} {
		d.publish(ns, "evt_r"+string(rune('0'+i)), "x")
	}
	ep := waitEndpoint(t, c, ns, "shared", "disabled", func(e *heraldv1.WebhookEndpoint) bool {
		return meta.IsStatusConditionTrue(e.Status.Conditions, heraldv1.ConditionDisabled)
	})
	if ep.Status.ConsecutiveFailures < 4 {
		t.Errorf("consecutiveFailures = %d, want at least the threshold 4", ep.Status.ConsecutiveFailures)
	}
	// Once disabled, neither replica attempts anything: every event is either waiting
	// out its one-hour retry or held, all eight pending, and the replicas' figures add
	// up to what the receiver saw.
	ep = waitEndpoint(t, c, ns, "shared", "all eight pending, counters matching the receiver", func(e *heraldv1.WebhookEndpoint) bool {
		return e.Status.Counters != nil && e.Status.Counters.Pending == 8 && e.Status.Counters.FailedAttempts == requests.Load()
	})
	settled := ep.Status.Counters.FailedAttempts
	// Exactly one replica made the transition: one EndpointDisabled Event (created
	// asynchronously, so wait for it; the compare-and-set allows no second one).
	disabledEvents := func() int32 {
		var list eventsv1.EventList
		if err := c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		n := int32(0)
		for _, e := range list.Items {
			if e.Reason == heraldv1.EventEndpointDisabled {
				n++
				if e.Series != nil {
					n += e.Series.Count - 1
				}
			}
		}
		return n
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := disabledEvents(); n == 0 {
			return errors.New("no EndpointDisabled Event yet")
		}
		return nil
	})
	if n := disabledEvents(); n != 1 {
		t.Errorf("%d EndpointDisabled Events, want exactly 1", n)
	}

	// Deliveries that arrive while disabled are held by both replicas; re-enabled by a
	// spec edit, they flow. (The first eight keep their one-hour retry wait.)
	for i, d := range []*dispatcher{a, b, a, b} {
		d.publish(ns, "evt_held"+string(rune('0'+i)), "x")
	}
	waitEndpoint(t, c, ns, "shared", "the four new ones pending too", func(e *heraldv1.WebhookEndpoint) bool {
		return e.Status.Counters != nil && e.Status.Counters.Pending == 12
	})
	if n := requests.Load(); n != settled {
		t.Fatalf("%d attempts of held deliveries while disabled", n-settled)
	}
	healthy.Store(true)
	update(t, c, &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "shared", Namespace: ns}}, func(e *heraldv1.WebhookEndpoint) {
		e.Spec.Timeout = "3s"
	})
	for i := range 4 {
		s.waitEvent(t, "evt_held"+string(rune('0'+i)), 30*time.Second)
	}
	waitEndpoint(t, c, ns, "shared", "re-enabled", func(e *heraldv1.WebhookEndpoint) bool {
		s.mu.Lock()
		delivered := int64(len(s.reqs))
		s.mu.Unlock()
		return meta.IsStatusConditionFalse(e.Status.Conditions, heraldv1.ConditionDisabled) &&
			e.Status.Counters != nil && e.Status.Counters.Delivered == delivered
	})
}
