package delivery_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher/ingest"
)

// A dispatcher killed in the middle of an ordered endpoint's retry schedule (no drain:
// the store is aborted as a dying process leaves it) loses nothing and keeps the order:
// after the restart no event is sent before every earlier one was delivered, and the
// failing head resumes its schedule with the attempt number and wait it had reached.
// At-least-once allows an event delivered just before the crash to come again; it never
// comes ahead of a later one's first delivery.
func TestEngine_OrderedHeadSurvivesACrashMidSchedule(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir)
	var mu sync.Mutex
	failures := 2 // evt_1's first two attempts fail
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("webhook-id") == "evt_1" && failures > 0 {
			failures--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	// The second wait is long: the crash comes inside it.
	schedule := []time.Duration{200 * time.Millisecond, 2 * time.Second, 200 * time.Millisecond}
	h.endpoint("ledger", rc.URL, endpointOpts{schedule: schedule, inFlight: 8, ordered: true})
	const n = 6
	events := make([]ingest.Event, n)
	for i := range events {
		events[i] = ingest.Event{ID: fmt.Sprintf("evt_%d", i), Type: "ledger.entry"}
	}
	h.publish(events...)
	rc.waitFor(t, 3, 10*time.Second) // evt_0, and evt_1 failed twice
	deadline := time.Now().Add(10 * time.Second)
	for {
		hd, ok, err := h.store.OrderedHead(context.Background(), key("ledger"))
		if err != nil {
			t.Fatal(err)
		}
		if ok && hd.EventID == "evt_1" && hd.Attempt == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("evt_1's retry state not stored within 10s: %+v %v", hd, ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.crash()

	h2 := newHarness(t, dir)
	h2.endpoint("ledger", rc.URL, endpointOpts{schedule: schedule, inFlight: 8, ordered: true})
	deadline = time.Now().Add(30 * time.Second)
	for !deliveredAll(rc.got(), n) {
		if time.Now().After(deadline) {
			t.Fatalf("not every event delivered within 30s of the restart: %v", ids(rc.got()))
		}
		time.Sleep(50 * time.Millisecond)
	}

	delivered := map[int]bool{}
	var head []received
	for _, r := range rc.got() {
		id := r.header.Get("webhook-id")
		var i int
		_, _ = fmt.Sscanf(id, "evt_%d", &i)
		for j := range i {
			if !delivered[j] {
				t.Errorf("%s was sent before evt_%d was delivered: %v", id, j, ids(rc.got()))
			}
		}
		if id == "evt_1" {
			head = append(head, r)
			if len(head) < 3 {
				continue // the failures
			}
		}
		delivered[i] = true
	}
	if len(head) != 3 {
		t.Fatalf("evt_1 was attempted %d times, want 3 (two failures, then delivered) across the crash", len(head))
	}
	for k, r := range head {
		if got, _ := strconv.Atoi(r.header.Get("X-Herald-Delivery-Attempt")); got != k+1 {
			t.Errorf("evt_1's request %d carried attempt %d", k+1, got)
		}
	}
	if wait := head[2].at.Sub(head[1].at); wait < schedule[1] {
		t.Errorf("evt_1's third attempt came %s after its second, across the crash; the schedule says %s", wait, schedule[1])
	}
}

func deliveredAll(got []received, n int) bool {
	seen := map[string]bool{}
	for _, r := range got {
		seen[r.header.Get("webhook-id")] = true
	}
	return seen[fmt.Sprintf("evt_%d", n-1)]
}

func ids(got []received) []string {
	out := make([]string, len(got))
	for i, r := range got {
		out[i] = r.header.Get("webhook-id")
	}
	return out
}
