package auth

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"
)

// cacheKey identifies a decision: the SHA-256 of the token, so that the raw token
// is not kept as a map key for a minute after its request ended, and the namespace.
type cacheKey struct {
	token     [32]byte
	namespace string
}

type decision struct {
	id      Identity
	err     error
	expires time.Time
}

// decisionCache is a size-bounded LRU of decisions with per-entry expiry. The bound
// matters because the keys come from producers: a flood of distinct bad tokens must
// not grow memory.
type decisionCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *cacheEntry, most recently used first
	byKey map[cacheKey]*list.Element
}

type cacheEntry struct {
	key cacheKey
	decision
}

func newDecisionCache(max int) *decisionCache {
	return &decisionCache{max: max, order: list.New(), byKey: make(map[cacheKey]*list.Element)}
}

func (c *decisionCache) get(k cacheKey, now time.Time) (decision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[k]
	if !ok {
		return decision{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.byKey, k)
		return decision{}, false
	}
	c.order.MoveToFront(el)
	return e.decision, true
}

func (c *decisionCache) put(k cacheKey, d decision) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[k]; ok {
		el.Value.(*cacheEntry).decision = d
		c.order.MoveToFront(el)
		return
	}
	c.byKey[k] = c.order.PushFront(&cacheEntry{key: k, decision: d})
	for c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.byKey, oldest.Value.(*cacheEntry).key)
	}
}

func (c *decisionCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// flightGroup runs one review per key at a time and shares its outcome with every
// request that asks meanwhile, so a burst from one producer costs one TokenReview.
// Unlike x/sync/singleflight, a waiter gives up when its own request is cancelled
// while the review runs on for the others.
type flightGroup struct {
	mu    sync.Mutex
	calls map[cacheKey]*flight
	// joined, when set, is called after a caller has joined a run in progress and before
	// it waits. Only tests set it: it is how one knows, without sleeping, that a second
	// caller shares the run.
	joined func(cacheKey)
}

type flight struct {
	done chan struct{}
	id   Identity
	err  error
}

// do runs fn for k unless a run for k is in progress, and waits for the outcome.
// fn runs in its own goroutine, so it must bound its own duration.
func (g *flightGroup) do(ctx context.Context, k cacheKey, fn func() (Identity, error)) (Identity, error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = make(map[cacheKey]*flight)
	}
	f, running := g.calls[k]
	if !running {
		f = &flight{done: make(chan struct{})}
		g.calls[k] = f
		go func() {
			defer close(f.done)
			f.id, f.err = fn()
			g.mu.Lock()
			delete(g.calls, k)
			g.mu.Unlock()
		}()
	}
	g.mu.Unlock()
	if running && g.joined != nil {
		g.joined(k)
	}
	select {
	case <-f.done:
		return f.id, f.err
	case <-ctx.Done():
		return Identity{}, fmt.Errorf("waiting for the credential review: %w", ctx.Err())
	}
}
