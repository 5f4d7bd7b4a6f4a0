package auth

import (
	"context"
	"errors"
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

func TestFlightGroup_WaiterLeavesWhenItsRequestEndsOthersGetTheResult(t *testing.T) {
	var g flightGroup
	release := make(chan struct{})
	var runs atomic.Int32
	fn := func() (Identity, error) {
		runs.Add(1)
		<-release
		return Identity{Name: "u"}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := g.do(ctx, key("k"), fn); first <- err }()
	second := make(chan Identity, 1)
	go func() {
		// Wait until the first call is registered so this one joins it.
		for {
			g.mu.Lock()
			n := len(g.calls)
			g.mu.Unlock()
			if n == 1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		id, _ := g.do(context.Background(), key("k"), fn)
		second <- id
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled waiter got %v, want context.Canceled", err)
	}
	close(release)
	if id := <-second; id.Name != "u" {
		t.Errorf("the other waiter got %+v, want the shared result", id)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("fn ran %d times, want 1", n)
	}
}
