package app_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/internal/testenv"
)

// orderedReceiver answers 500 to an event as often as its plan says (-1: always) and
// 204 otherwise, and records every request in the order it arrived.
type orderedReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	failures map[string]int
	attempts []receivedAttempt
}

type receivedAttempt struct {
	id      string
	attempt int
	at      time.Time
	ok      bool
}

func newOrderedReceiver(t *testing.T, failures map[string]int) *orderedReceiver {
	r := &orderedReceiver{failures: failures}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id := req.Header.Get("webhook-id")
		n, _ := strconv.Atoi(req.Header.Get(heraldv1.DefaultHeaderPrefix + "-Delivery-Attempt"))
		r.mu.Lock()
		fail := r.failures[id] != 0
		if r.failures[id] > 0 {
			r.failures[id]--
		}
		r.attempts = append(r.attempts, receivedAttempt{id: id, attempt: n, at: time.Now(), ok: !fail})
		r.mu.Unlock()
		if fail {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *orderedReceiver) seen() []receivedAttempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedAttempt(nil), r.attempts...)
}

func (r *orderedReceiver) waitDelivered(t *testing.T, id string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, a := range r.seen() {
			if a.id == id && a.ok {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s was not delivered within %s; the receiver saw %+v", id, within, r.seen())
}

// An ordered endpoint delivers one event at a time, in the order the events were
// accepted. A failing event blocks the rest through its whole retry schedule, and the
// resource names it; once it is delivered, or dead-lettered, the next goes. The head's
// attempt number and retry time survive a restart of the dispatcher in the middle of
// its schedule: after the restart it gets exactly the attempts it had left, at the
// times the schedule says, and nothing overtakes it.
func TestDispatcher_OrderedDeliveryBlocksOnHeadThroughRetriesRestartAndDeadLetter(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "ordered"
	// evt_1 never succeeds (4 attempts, then its dead letter lets the rest go); evt_3
	// fails twice and is then delivered.
	rcv := newOrderedReceiver(t, map[string]int{"evt_1": -1, "evt_3": 2})
	fixture(t, c, ns, "ledger", heraldv1.WebhookEndpointSpec{
		URL: rcv.URL, Timeout: "2s", Ordering: heraldv1.OrderingOrdered,
		// The second wait is the long one: the dispatcher is stopped inside it.
		Retry:       heraldv1.RetrySpec{Schedule: []string{"1s", "4s", "1s"}, JitterPercent: ptr.To[int32](0)},
		AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To[int32](0)},
		// Ordered ignores the concurrency limit: one delivery at a time.
		Limits: heraldv1.DeliveryLimits{MaxInFlight: ptr.To[int32](8)},
	})
	store := config.Store{DataDir: t.TempDir()}
	d := startDispatcherWith(t, func(o *app.Options) { o.Config.Store = store })
	const n = 8
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("evt_%d", i)
		d.publish(ns, ids[i], "ledger.entry")
	}

	ep := waitEndpoint(t, c, ns, "ledger", "status naming evt_1 as blocking after 2 failed attempts", func(ep *heraldv1.WebhookEndpoint) bool {
		b := ep.Status.BlockedBy
		return b != nil && b.EventID == "evt_1" && b.FailedAttempts == 2
	})
	d.stop()
	if b := ep.Status.BlockedBy; b.DeliveryID != queue.DeliveryID(ns, "evt_1", "ledger") || b.Since.IsZero() ||
		b.NextAttemptTime == nil || b.NextAttemptTime.Before(&b.Since) {
		t.Errorf("blockedBy = %+v; want evt_1's delivery id, since its first failure, its next attempt after that", b)
	}
	before := rcv.seen()
	for _, a := range before {
		if a.id != "evt_0" && a.id != "evt_1" {
			t.Fatalf("%s reached the receiver while evt_1 was failing: %+v", a.id, before)
		}
	}

	d = startDispatcherWith(t, func(o *app.Options) { o.Config.Store = store })
	rcv.waitDelivered(t, ids[n-1], 60*time.Second)

	got := rcv.seen()
	// Strict order: no request for an event before every earlier one was settled.
	var delivered []string
	last := -1
	for _, a := range got {
		i, _ := strconv.Atoi(a.id[len("evt_"):])
		if i < last {
			t.Errorf("%s (attempt %d) arrived after evt_%d had gone: %+v", a.id, a.attempt, last, got)
		}
		last = max(last, i)
		if a.ok {
			delivered = append(delivered, a.id)
		}
	}
	want := []string{"evt_0", "evt_2", "evt_3", "evt_4", "evt_5", "evt_6", "evt_7"}
	if fmt.Sprint(delivered) != fmt.Sprint(want) {
		t.Errorf("delivered %v, want %v", delivered, want)
	}
	// evt_1 got its schedule exactly once through the restart: attempts 1 to 4, the
	// third no sooner than the 4s wait after the second said.
	var head []receivedAttempt
	for _, a := range got {
		if a.id == "evt_1" {
			head = append(head, a)
		}
	}
	if len(head) != 4 {
		t.Fatalf("evt_1 was attempted %d times, want 4 (1 + 3 retries) across the restart: %+v", len(head), head)
	}
	for i, a := range head {
		if a.attempt != i+1 {
			t.Errorf("evt_1's attempt %d carried Delivery-Attempt %d", i+1, a.attempt)
		}
	}
	if wait := head[2].at.Sub(head[1].at); wait < 4*time.Second {
		t.Errorf("evt_1's third attempt came %s after the second, across the restart; the schedule says 4s", wait)
	}

	// Once the rest has gone, nothing blocks and the dead letter is counted.
	waitEndpoint(t, c, ns, "ledger", "blockedBy cleared, evt_1 dead-lettered", func(ep *heraldv1.WebhookEndpoint) bool {
		return ep.Status.BlockedBy == nil && ep.Status.Counters != nil && ep.Status.Counters.DeadLettered == 1 &&
			ep.Status.Counters.Delivered == int64(len(want))
	})
	waitEvent(t, c, ns, heraldv1.EventDeliveryFailed, "evt_1")
}

// Switching an endpoint between Unordered and Ordered loses nothing: a delivery waiting
// for its retry when the mode changes is still delivered, and so is everything behind
// it. A suspended ordered endpoint holds its deliveries and delivers them, in order,
// once resumed. An endpoint switched back to Unordered no longer says it is blocked.
func TestDispatcher_OrderingSwitchAndSuspendLoseNothing(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "ordering-switch"
	rcv := newOrderedReceiver(t, map[string]int{"evt_0": 1, "evt_6": 1})
	fixture(t, c, ns, "orders", heraldv1.WebhookEndpointSpec{
		URL: rcv.URL, Timeout: "2s",
		Retry:       heraldv1.RetrySpec{Schedule: []string{"3s"}, JitterPercent: ptr.To[int32](0)},
		AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To[int32](0)},
	})
	d := startDispatcher(t)

	// Unordered: evt_0 fails and waits 3s for its retry; the switch comes meanwhile.
	d.publish(ns, "evt_0", "order.created")
	waitEndpoint(t, c, ns, "orders", "evt_0's failure counted", func(ep *heraldv1.WebhookEndpoint) bool {
		return ep.Status.Counters != nil && ep.Status.Counters.FailedAttempts == 1
	})
	ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: ns}}
	update(t, c, ep, func(e *heraldv1.WebhookEndpoint) { e.Spec.Ordering = heraldv1.OrderingOrdered })
	for i := 1; i <= 3; i++ {
		d.publish(ns, fmt.Sprintf("evt_%d", i), "order.created")
	}
	for i := 0; i <= 3; i++ {
		rcv.waitDelivered(t, fmt.Sprintf("evt_%d", i), 30*time.Second)
	}

	// Suspended, ordered: held, then delivered in order.
	update(t, c, ep, func(e *heraldv1.WebhookEndpoint) { e.Spec.Suspend = true })
	waitDelivering(t, c, ns, "orders", metav1.ConditionFalse, heraldv1.ReasonSuspended)
	mark := len(rcv.seen())
	d.publish(ns, "evt_4", "order.created")
	d.publish(ns, "evt_5", "order.created")
	waitEndpoint(t, c, ns, "orders", "2 held deliveries", func(ep *heraldv1.WebhookEndpoint) bool {
		return ep.Status.Counters != nil && ep.Status.Counters.Pending == 2
	})
	if got := rcv.seen()[mark:]; len(got) != 0 {
		t.Fatalf("a suspended endpoint delivered %+v", got)
	}
	update(t, c, ep, func(e *heraldv1.WebhookEndpoint) { e.Spec.Suspend = false })
	rcv.waitDelivered(t, "evt_5", 30*time.Second)
	if got := rcv.seen()[mark:]; len(got) != 2 || got[0].id != "evt_4" || got[1].id != "evt_5" {
		t.Errorf("after resuming the receiver saw %+v; want evt_4 then evt_5", got)
	}

	// Blocked on evt_6, then switched back to Unordered: evt_6 and evt_7 are delivered
	// and the resource no longer names a blocking event.
	d.publish(ns, "evt_6", "order.created")
	d.publish(ns, "evt_7", "order.created")
	waitEndpoint(t, c, ns, "orders", "evt_6 blocking", func(ep *heraldv1.WebhookEndpoint) bool {
		return ep.Status.BlockedBy != nil && ep.Status.BlockedBy.EventID == "evt_6"
	})
	update(t, c, ep, func(e *heraldv1.WebhookEndpoint) { e.Spec.Ordering = heraldv1.OrderingUnordered })
	rcv.waitDelivered(t, "evt_6", 30*time.Second)
	rcv.waitDelivered(t, "evt_7", 30*time.Second)
	waitEndpoint(t, c, ns, "orders", "no blocking event once unordered", func(ep *heraldv1.WebhookEndpoint) bool {
		return ep.Status.BlockedBy == nil && ep.Status.Counters != nil && ep.Status.Counters.Pending == 0
	})
}

// Two replicas share an ordered endpoint's queue (an external NATS server): the store
// hands out one delivery at a time across both, so order holds whichever replica sends
// it, and the head's schedule continues on the replica that is left when the other
// stops in the middle of it.
func TestDispatcher_OrderedDeliveryAcrossTwoReplicas(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "ordered-replicas"
	rcv := newOrderedReceiver(t, map[string]int{"evt_2": 3})
	fixture(t, c, ns, "ledger", heraldv1.WebhookEndpointSpec{
		URL: rcv.URL, Timeout: "2s", Ordering: heraldv1.OrderingOrdered,
		Retry:       heraldv1.RetrySpec{Schedule: []string{"1s", "1s", "1s"}, JitterPercent: ptr.To[int32](0)},
		AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To[int32](0)},
	})
	url := testenv.NATS(t)
	a := startDispatcherOn(t, config.Store{URL: url})
	b := startDispatcherOn(t, config.Store{URL: url})
	const n = 10
	for i := range n {
		d := a
		if i%2 == 1 {
			d = b
		}
		d.publish(ns, fmt.Sprintf("evt_%d", i), "ledger.entry")
	}
	waitEndpoint(t, c, ns, "ledger", "evt_2 blocking", func(ep *heraldv1.WebhookEndpoint) bool {
		return ep.Status.BlockedBy != nil && ep.Status.BlockedBy.EventID == "evt_2"
	})
	a.stop()
	rcv.waitDelivered(t, fmt.Sprintf("evt_%d", n-1), 60*time.Second)

	got := rcv.seen()
	last := -1
	var delivered []string
	for _, at := range got {
		i, _ := strconv.Atoi(at.id[len("evt_"):])
		if i < last {
			t.Errorf("%s (attempt %d) arrived after evt_%d had gone: %+v", at.id, at.attempt, last, got)
		}
		last = max(last, i)
		// A replica stopped in the middle of a request repeats it (at least once).
		if at.ok && (len(delivered) == 0 || delivered[len(delivered)-1] != at.id) {
			delivered = append(delivered, at.id)
		}
		if at.id == "evt_2" && at.ok && at.attempt != 4 {
			t.Errorf("evt_2 was delivered by its attempt %d; its schedule (3 failures, then attempt 4) was lost across the replicas", at.attempt)
		}
	}
	if len(delivered) != n {
		t.Errorf("delivered %v, want evt_0 to evt_%d once each, in order", delivered, n-1)
	}
}
