package delivery_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/ingest"
	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/internal/testenv"
)

func quickIdle(o *delivery.Options) {
	o.IdleAfter, o.ScanInterval = 300*time.Millisecond, 200*time.Millisecond
}

func (h *harness) consumers() int {
	h.t.Helper()
	n, err := h.store.ConsumerCount(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// scans counts the engine's scans: each begins by asking the store which endpoints
// hold deliveries, and acts on the answer before the next begins.
type scans struct {
	delivery.Store
	n atomic.Int64
}

func (s *scans) UnsettledBySubject(ctx context.Context) (map[string]uint64, error) {
	s.n.Add(1)
	return s.Store.UnsettledBySubject(ctx)
}

// countScans has the engine's store count its scans.
func countScans(sc *scans) func(*delivery.Options) {
	return func(o *delivery.Options) { sc.Store = o.Store; o.Store = sc }
}

func (h *harness) waitRunning(t *testing.T, want int) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := h.engine.Running(); n != want {
			return fmt.Errorf("%d endpoints running, want %d", n, want)
		}
		return nil
	})
}

// An endpoint with nothing to deliver has no consumer, no workers and no goroutine;
// the first delivery starts them, idleness stops them, and the server removes the
// consumer. Measured in bench scenario f: 4 KiB per idle endpoint instead of ~200 KiB.
func TestEngine_IdleEndpointHasNoConsumerAndWakesOnDelivery(t *testing.T) {
	sc := &scans{}
	h := newHarness(t, "", quickIdle, countScans(sc))
	rc := newReceiver(t, nil)
	for i := range 50 {
		name := fmt.Sprintf("quiet-%d", i)
		h.endpoint(name, rc.URL, endpointOpts{})
		h.router.Set(ns, router.Subscription{Name: "to-" + name, Endpoint: name, Patterns: []string{"only." + name}})
	}
	// Two whole scans after the last endpoint came: the third has begun, so the
	// second acted on its answer.
	from := sc.n.Load()
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := sc.n.Load() - from; n < 3 {
			return fmt.Errorf("%d scans began since the endpoints came", n)
		}
		return nil
	})
	if n := h.engine.Running(); n != 0 {
		t.Fatalf("%d of 50 endpoints with nothing to deliver are running", n)
	}
	if n := h.consumers(); n != 0 {
		t.Fatalf("%d consumers for 50 endpoints with nothing to deliver", n)
	}

	for round := range 2 {
		id := fmt.Sprintf("evt_idle%d", round)
		h.publish(ingest.Event{ID: id, Type: "only.quiet-7"})
		got := rc.waitFor(t, round+1, 10*time.Second)
		if e := got[round].header.Get("X-Herald-Event-Id"); e != id {
			t.Fatalf("round %d: received %s, want %s", round, e, id)
		}
		// Delivered; after IdleAfter the endpoint stops again, and the server
		// removes its consumer after twice that.
		h.waitRunning(t, 0)
		testenv.Eventually(t, 10*time.Second, func() error {
			if n := h.consumers(); n != 0 {
				return fmt.Errorf("%d consumers left after the endpoint went idle", n)
			}
			return nil
		})
	}
	if got := rc.got(); len(got) != 2 {
		t.Errorf("%d requests, want 2", len(got))
	}
}

// Deliveries this process did not store (another replica accepted them, or they were
// stored before a restart) are found by the scan.
func TestEngine_IdleEndpointFoundByScan(t *testing.T) {
	h := newHarness(t, "", quickIdle)
	rc := newReceiver(t, nil)
	h.endpoint("elsewhere", rc.URL, endpointOpts{})
	h.waitRunning(t, 0)
	// Deaf to this process's own stores: only the scan can find the deliveries.
	h.store.OnStored(func(delivery.Key) {})
	h.publish(ingest.Event{ID: "evt_1", Type: "order.created"}, ingest.Event{ID: "evt_2", Type: "order.created"})
	rc.waitFor(t, 2, 10*time.Second)
	h.settled("elsewhere", 0)
	h.waitRunning(t, 0)
}

// A held endpoint with deliveries keeps checking the limits on them; with none it is
// idle like any other, and releasing the hold delivers what waited.
func TestEngine_HeldEndpointIdlesWhenEmptyAndDeliversOnRelease(t *testing.T) {
	h := newHarness(t, "", quickIdle, func(o *delivery.Options) { o.HeldCheckInterval = 200 * time.Millisecond })
	rc := newReceiver(t, nil)
	h.endpoint("paused", rc.URL, endpointOpts{hold: "Suspended"})
	h.waitRunning(t, 0)
	h.publish(ingest.Event{ID: "evt_h1", Type: "order.created"})
	h.waitRunning(t, 1) // holding a delivery: the held limits apply to it
	h.endpoint("paused", rc.URL, endpointOpts{})
	rc.waitFor(t, 1, 10*time.Second)
	h.settled("paused", 0)
	h.waitRunning(t, 0)
}

// The same endpoint busy and idle many times over loses nothing: each event arrives
// once and the store ends empty.
func TestEngine_IdleAndBusyAgainLosesNothing(t *testing.T) {
	h := newHarness(t, "", func(o *delivery.Options) {
		o.IdleAfter, o.ScanInterval = 50*time.Millisecond, 50*time.Millisecond
	})
	rc := newReceiver(t, nil)
	h.endpoint("flappy", rc.URL, endpointOpts{})
	const n = 40
	for i := range n {
		h.publish(ingest.Event{ID: fmt.Sprintf("evt_f%d", i), Type: "order.created"})
		time.Sleep(time.Duration(i%4) * 40 * time.Millisecond) // around IdleAfter
	}
	got := rc.waitFor(t, n, 20*time.Second)
	h.settled("flappy", 0)
	seen := map[string]bool{}
	for _, r := range got {
		seen[r.header.Get("X-Herald-Event-Id")] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct events of %d arrived", len(seen), n)
	}
}

// More endpoints busy at once than JetStream's default limit of consumers per stream
// (1,000) are all served: the stream raises the limit.
func TestEngine_MoreBusyEndpointsThanTheServersDefaultConsumerLimit(t *testing.T) {
	// Idle endpoints keep their consumers long past this test: without the raised
	// limit, the last hundred would wait for minutes.
	h := newHarness(t, "", func(o *delivery.Options) { o.IdleAfter = 10 * time.Minute })
	rc := newReceiver(t, nil)
	const n = 1100
	var events []ingest.Event
	for i := range n {
		name := fmt.Sprintf("tenant-%d", i)
		h.endpoint(name, rc.URL, endpointOpts{})
		h.router.Set(ns, router.Subscription{Name: "to-" + name, Endpoint: name, Patterns: []string{"only." + name}})
		events = append(events, ingest.Event{ID: "evt_" + name, Type: "only." + name})
	}
	h.publish(events...)
	rc.waitFor(t, n, 90*time.Second)
	if c := h.consumers(); c < n {
		t.Errorf("%d consumers for %d endpoints busy within IdleAfter", c, n)
	}
}
