package auth

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

func key(s string) cacheKey { return cacheKey{namespace: s} }

func TestDecisionCache_BoundedLeastRecentlyUsedWithExpiry(t *testing.T) {
	c := newDecisionCache(2)
	now := time.Now()
	c.put(key("a"), decision{id: Identity{Name: "a"}, expires: now.Add(time.Minute)})
	c.put(key("b"), decision{id: Identity{Name: "b"}, expires: now.Add(time.Minute)})
	if _, ok := c.get(key("a"), now); !ok { // a is now the most recently used
		t.Fatal("a missing")
	}
	c.put(key("c"), decision{id: Identity{Name: "c"}, expires: now.Add(time.Second)})
	if _, ok := c.get(key("b"), now); ok {
		t.Error("b survived although it was the least recently used of three in a cache of two")
	}
	if c.len() != 2 {
		t.Errorf("len = %d, want the bound 2", c.len())
	}
	if _, ok := c.get(key("c"), now.Add(time.Second)); ok {
		t.Error("c was returned at its expiry time")
	}
	if c.len() != 1 {
		t.Errorf("len = %d after an expired get, want 1: expired entries are dropped", c.len())
	}
}

// within waits for ch, failing the test if it does not come: a bound on a broken run,
// not a guess at how long things take.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: did not happen within 10s", what)
		panic("unreachable")
	}
}

func TestFlightGroup_WaiterLeavesWhenItsRequestEndsOthersGetTheResult(t *testing.T) {
	joined := make(chan struct{}, 1)
	g := flightGroup{joined: func(cacheKey) { joined <- struct{}{} }}
	started, release := make(chan struct{}, 2), make(chan struct{})
	var runs atomic.Int32
	fn := func() (Identity, error) {
		runs.Add(1)
		started <- struct{}{}
		<-release
		return Identity{Name: "u"}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := g.do(ctx, key("k"), fn); first <- err }()
	// The review runs (and so is registered) before the first caller gives up.
	within(t, started, "the review starting")
	cancel()
	if err := within(t, first, "the cancelled caller returning"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled waiter got %v, want context.Canceled", err)
	}
	// The review outlives its first caller: a second caller joins it rather than
	// starting another.
	second := make(chan Identity, 1)
	go func() {
		id, _ := g.do(context.Background(), key("k"), fn)
		second <- id
	}()
	within(t, joined, "the second caller joining the review in progress")
	close(release)
	if id := within(t, second, "the second caller's answer"); id.Name != "u" {
		t.Errorf("the other waiter got %+v, want the shared result", id)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("fn ran %d times, want 1", n)
	}
}

// TestFlightGroup_ConcurrentCallersShareOneRun: callers arriving while a run is in
// progress all wait for it and get its result; none starts another.
func TestFlightGroup_ConcurrentCallersShareOneRun(t *testing.T) {
	const callers = 10
	joined := make(chan struct{}, callers)
	g := flightGroup{joined: func(cacheKey) { joined <- struct{}{} }}
	started, release := make(chan struct{}, callers), make(chan struct{})
	var runs atomic.Int32
	fn := func() (Identity, error) {
		runs.Add(1)
		started <- struct{}{}
		<-release
		return Identity{Name: "shared"}, errors.New("refused")
	}
	results := make(chan error, callers)
	go func() { _, err := g.do(context.Background(), key("k"), fn); results <- err }()
	within(t, started, "the review starting")
	for range callers - 1 {
		go func() { _, err := g.do(context.Background(), key("k"), fn); results <- err }()
	}
	for i := range callers - 1 {
		within(t, joined, fmt.Sprintf("caller %d joining", i+2))
	}
	close(release)
	for i := range callers {
		if err := within(t, results, fmt.Sprintf("answer %d", i+1)); err == nil || err.Error() != "refused" {
			t.Errorf("caller got %v, want the shared refusal", err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("fn ran %d times for %d concurrent callers, want 1", n, callers)
	}
}
