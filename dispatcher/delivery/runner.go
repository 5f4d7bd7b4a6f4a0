package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/sender"
)

// runner consumes one endpoint's deliveries. It runs only while the endpoint has
// deliveries: an idle runner is this struct and its configuration, with no goroutine,
// consumer or workers (see Engine).
type runner struct {
	e       *Engine
	key     Key
	subject string // the endpoint's subject in the store, as UnsettledBySubject names it
	cfg     atomic.Pointer[EndpointConfig]
	wake    chan struct{}

	// runMu guards the runner's goroutine: running while it exists, with its context's
	// cancel and logger (both made when it starts, as idle endpoints need neither);
	// poked when asked to run while it was deciding to stop, so that it looks again;
	// removed once the endpoint is gone.
	runMu   sync.Mutex
	running bool
	poked   bool
	removed bool
	cancel  context.CancelFunc
	log     logr.Logger

	// lastHanded is when the consumer last handed out a delivery (unix ns), and
	// inFlight how many are being handled: the runner is idle when it has handed out
	// nothing for IdleAfter, handles nothing, and the store holds none of its deliveries.
	lastHanded atomic.Int64
	inFlight   atomic.Int32

	// pace keeps the attempts within the endpoint's limits, adapted to its receiver
	// (pace.go).
	pace *pacer

	// headStale is set when a stored ordered head may no longer belong to any pending
	// delivery (a restart between settling a head and clearing its state, a switch of
	// mode): the next settled delivery clears it, so that status never names an event
	// that no longer blocks.
	headStale atomic.Bool
}

// mode is how the runner consumes: a change of either part restarts its consumer.
type mode struct {
	workers int
	ordered bool
}

func modeOf(cfg *EndpointConfig) mode {
	if cfg.Ordered {
		return mode{workers: 1, ordered: true}
	}
	return mode{workers: cfg.MaxInFlight}
}

// start runs the runner's goroutine unless it runs already. It is asked by the engine
// whenever the endpoint may have deliveries: stored by this process, found by the scan,
// or a change of configuration.
func (r *runner) start() {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	if r.removed || r.e.baseCtx.Err() != nil {
		return
	}
	if r.running {
		r.poked = true
		return
	}
	ctx, cancel := context.WithCancel(r.e.baseCtx)
	r.running, r.poked, r.cancel = true, false, cancel
	if r.log.GetSink() == nil {
		r.log = r.e.log.WithValues("endpoint", r.key.String())
	}
	r.e.wg.Go(func() { r.run(ctx) })
}

// stopIdle ends the runner's goroutine unless it was asked to run meanwhile.
func (r *runner) stopIdle() bool {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	if r.poked && !r.removed {
		r.poked = false
		return false
	}
	r.stopped()
	return true
}

// stopped records that the goroutine ends; runMu is held.
func (r *runner) stopped() {
	r.running = false
	r.cancel()
	r.cancel = nil
}

// remove stops the runner for good: its endpoint was deleted.
func (r *runner) remove() {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	r.removed = true
	if r.cancel != nil {
		r.cancel()
	}
}

func (r *runner) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		cfg := r.cfg.Load()
		var idle bool
		var err error
		if cfg.Hold != "" {
			idle = r.waitHeld(ctx)
		} else {
			idle, err = r.consume(ctx, modeOf(cfg))
		}
		if err != nil {
			r.log.Error(err, "consuming deliveries; retrying", "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if idle && r.stopIdle() {
			r.log.V(1).Info("endpoint idle; its consumer and workers stop until a delivery comes")
			return
		}
	}
	// Removed, or the engine stops: nothing starts the runner again.
	r.runMu.Lock()
	r.stopped()
	r.runMu.Unlock()
}

// idle reports whether the endpoint has nothing to do: nothing handed out for
// IdleAfter, nothing being handled, and no delivery of it in the store.
func (r *runner) idle(ctx context.Context) bool {
	if r.inFlight.Load() > 0 || time.Since(time.Unix(0, r.lastHanded.Load())) < r.e.opts.IdleAfter {
		return false
	}
	n, err := r.e.store.PendingDeliveries(ctx, r.key)
	return err == nil && n == 0
}

// consumerOptions are the endpoint's consumer's, the same whether it consumes or its
// held deliveries are checked, so that neither rewrites what the other set.
func (r *runner) consumerOptions(ordered bool, buffer int) queue.ConsumerOptions {
	return queue.ConsumerOptions{
		AckWait: r.e.opts.AckWait,
		Buffer:  buffer,
		Ordered: ordered,
		// The server removes the consumer once every replica found the endpoint idle.
		InactiveThreshold: 2 * r.e.opts.IdleAfter,
	}
}

// consume runs workers until the endpoint is held, its mode changes, it is idle (then
// idle is true), or ctx ends.
func (r *runner) consume(ctx context.Context, m mode) (idle bool, err error) {
	cons, err := r.e.store.Consume(ctx, r.key, r.consumerOptions(m.ordered, 2*m.workers))
	if err != nil {
		return false, err
	}
	if m.ordered {
		r.headStale.Store(true)
	}
	r.lastHanded.Store(time.Now().UnixNano())
	watchDone := make(chan struct{})
	var stoppedIdle atomic.Bool
	defer close(watchDone)
	go func() {
		check := time.NewTicker(r.e.opts.IdleAfter / 2)
		defer check.Stop()
		for {
			select {
			case <-r.wake:
				if c := r.cfg.Load(); c.Hold != "" || modeOf(c) != m {
					cons.Stop()
					return
				}
			case <-check.C:
				if r.idle(ctx) {
					// What the consumer fetched meanwhile is still handed out below.
					stoppedIdle.Store(true)
					cons.Stop()
					return
				}
			case <-ctx.Done():
				cons.Stop()
				return
			case <-watchDone:
				return
			}
		}
	}()

	work := make(chan *queue.Pending)
	var wg sync.WaitGroup
	for range m.workers {
		wg.Go(func() {
			for p := range work {
				r.handle(ctx, p, m.ordered)
				r.lastHanded.Store(time.Now().UnixNano())
				r.inFlight.Add(-1)
			}
		})
	}
	defer func() {
		close(work)
		wg.Wait()
	}()
	for {
		p, err := cons.Next()
		if errors.Is(err, queue.ErrStopped) {
			return stoppedIdle.Load(), nil
		}
		if err != nil {
			// A failed pull request (no server, no quorum): the consumer asks again
			// by itself; report and go on.
			r.log.V(1).Info("fetching deliveries", "error", err.Error())
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		r.inFlight.Add(1)
		r.lastHanded.Store(time.Now().UnixNano())
		work <- p
	}
}

// handle settles one delivery: attempt it, or hand it back when it is not due or the
// endpoint is held. ordered is the mode of the consumer that handed it out.
func (r *runner) handle(ctx context.Context, p *queue.Pending, ordered bool) {
	cfg := r.cfg.Load()
	if cfg.Hold != "" || ctx.Err() != nil {
		r.release(p)
		return
	}
	if r.e.opts.Gate != nil && r.e.opts.Gate(r.key) {
		// The hold is decided but not yet in the configuration; back off briefly
		// rather than spin on redeliveries until it is.
		_ = p.Delay(time.Second)
		return
	}
	var head *queue.Head
	if ordered {
		var err error
		if head, err = r.restoreHead(ctx, p); err != nil {
			// Attempting without its state would restart the head's schedule.
			r.log.Error(err, "reading the retry state of an ordered delivery; trying again shortly", "deliveryID", p.DeliveryID)
			_ = p.Delay(time.Second)
			return
		}
	}
	now := r.e.opts.Now()
	if wait := p.NotBefore.Sub(now); wait > 0 {
		if err := p.Delay(wait); err != nil {
			r.log.Error(err, "delaying delivery", "deliveryID", p.DeliveryID)
		}
		return
	}
	// An attempt whose outcome cannot be stored (the store lost its quorum, the
	// connection is moving to another server) would be repeated and, failed, counted
	// against the receiver for the store's fault. Deliveries wait for the store instead.
	// The check is the last step before the request; after a wait for the store the
	// limits are waited for again, or every worker would fire at once on recovery.
	if pause := r.pace.pause(); pause > pauseInPlace {
		// The receiver asked for a long pause (Retry-After): the delivery waits in the
		// store, not in a worker.
		_ = p.Delay(pause)
		return
	}
	for {
		if err := r.pace.acquire(ctx); err != nil {
			r.release(p)
			return
		}
		if r.e.store.Writable() == nil {
			break
		}
		r.pace.released()
		if err := r.e.store.WaitWritable(ctx); err != nil {
			r.release(p)
			return
		}
	}
	if cfg.Target.Timeout() > r.e.opts.AckWait/2 {
		_ = p.InProgress()
	}
	d := &p.Delivery
	msg := sender.Message{
		Namespace: d.Namespace, EventID: d.EventID, EventType: d.EventType, Source: d.EventSource, Attributes: d.Attributes,
		CreatedAt: d.CreatedAt, CreatedAtText: d.CreatedAtText, Data: d.Data,
		DeliveryID: d.DeliveryID, Attempt: d.Attempt, TraceParent: d.TraceParent, TraceState: d.TraceState,
	}
	var out sender.Outcome
	if t := r.e.opts.Tracer; t != nil {
		out = r.sendTraced(ctx, t, cfg.Target, &msg)
	} else {
		out = cfg.Target.Send(ctx, &msg)
	}
	if (!out.OK() && ctx.Err() != nil) || out.TransformFailed {
		r.pace.released()
	} else {
		r.pace.done(out, cfg.MaxRetryAfter)
	}
	if !out.OK() && ctx.Err() != nil {
		// Shutting down mid-attempt: the attempt did not really happen.
		r.release(p)
		return
	}
	// A 429 to an endpoint with adaptive limits is pacing, not a failure of the
	// receiver: it does not count towards auto-disable.
	a := Attempt{Endpoint: r.key, Delivery: &p.Delivery, Outcome: out,
		Throttled: cfg.Adaptive && out.StatusCode == http.StatusTooManyRequests}
	if out.OK() {
		a.Final = true
		r.e.opts.Observer.Attempted(a)
		// Counted, then acknowledged, by the store's journal; an ordered endpoint's
		// waits for it (its next delivery waits for the acknowledgement anyway), so that
		// the head's state, which counts its failed attempts until then, goes after.
		if err := p.Delivered(); err != nil {
			r.log.Error(err, "settling delivered delivery; it may be delivered again", "deliveryID", p.DeliveryID)
		} else if ordered {
			sctx, cancel := settleCtx()
			r.clearHead(sctx, head)
			cancel()
		}
		return
	}
	// Made here, not for every delivery: most succeed, and settle without waiting.
	sctx, cancel := settleCtx()
	defer cancel()
	switch {
	case out.TransformFailed:
		// Nothing was sent: the receiver is not to blame (no failed attempt counts
		// against it), and the same transform fails the same way on every attempt. The
		// dead letter keeps the event as published, for a replay once it is fixed.
		var settled func(context.Context)
		if ordered {
			settled = func(ctx context.Context) { r.clearHead(ctx, head) }
		}
		r.deadLetter(sctx, p, heraldv1.DeadLetterTransformFailed, 0, out.Err, false, settled)
	case p.Attempt > len(cfg.Schedule) || out.Final:
		a.Final = true
		r.e.opts.Observer.Attempted(a)
		var settled func(context.Context)
		if ordered {
			settled = func(ctx context.Context) { r.clearHead(ctx, head) }
		}
		reason := heraldv1.DeadLetterRetriesExhausted
		if out.Final {
			reason = heraldv1.DeadLetterRejected
		}
		r.deadLetter(sctx, p, reason, out.StatusCode, out.Err, true, settled)
	case ordered:
		r.retryInPlace(sctx, p, cfg, out, head, a)
	default:
		r.e.opts.Observer.Attempted(a)
		next := p.Delivery
		next.Attempt++
		// The schedule counts from the failure, not from the start of the attempt.
		next.NotBefore = r.e.opts.Now().Add(nextDelay(cfg, p.Attempt, out, jitterRand))
		if err := p.Retry(sctx, next); err != nil {
			// Not settled, or not yet: the store hands the delivery out again after
			// AckWait and it is attempted again unless it was settled meanwhile, which
			// keeps it; nothing is lost.
			r.log.Error(err, "scheduling retry", "deliveryID", p.DeliveryID)
			return
		}
		r.log.V(1).Info("delivery failed; retry scheduled", "deliveryID", p.DeliveryID, "eventID", p.EventID,
			"attempt", p.Attempt, "status", out.StatusCode, "error", out.Err.Error(), "retryAt", next.NotBefore)
	}
}

// restoreHead gives a redelivered head of an ordered endpoint the attempt number and
// retry time its earlier failures stored, and returns that state (nil when it has
// none). A delivery handed out for the first time has none, which spares the store a
// read per delivery.
func (r *runner) restoreHead(ctx context.Context, p *queue.Pending) (*queue.Head, error) {
	if !p.Redelivered() {
		return nil, nil
	}
	h, ok, err := r.e.store.OrderedHead(ctx, r.key)
	switch {
	case err != nil || !ok:
		return nil, err
	case h.Sequence != p.Sequence():
		r.headStale.Store(true)
		return nil, nil
	}
	// The attempts that failed in place are counted when the head is settled (status
	// shows them meanwhile, from the head's state).
	p.Attempt, p.NotBefore, p.FailedInPlace = h.Attempt, h.NotBefore, h.Attempt-1
	return &h, nil
}

// retryInPlace hands a failed ordered delivery back to the store to be handed out
// again at its retry time, ahead of every delivery accepted after it, after storing the
// next attempt's number and time so that a restart or another replica continues its
// schedule.
func (r *runner) retryInPlace(ctx context.Context, p *queue.Pending, cfg *EndpointConfig, out sender.Outcome, head *queue.Head, a Attempt) {
	now := r.e.opts.Now()
	delay := nextDelay(cfg, p.Attempt, out, jitterRand)
	h := queue.Head{Sequence: p.Sequence(), DeliveryID: p.DeliveryID, EventID: p.EventID,
		Attempt: p.Attempt + 1, NotBefore: now.Add(delay), Since: now}
	if head != nil {
		h.Since = head.Since
	}
	err := r.e.store.SetOrderedHead(ctx, r.key, h)
	r.e.opts.Observer.Attempted(a)
	if err != nil {
		// Not settled: the store hands the delivery out again after AckWait with its
		// previous state, and the attempt is repeated; nothing overtakes it meanwhile.
		r.log.Error(err, "storing the retry of an ordered delivery", "deliveryID", p.DeliveryID)
		return
	}
	if err := p.Delay(delay); err != nil {
		// Handed out again after AckWait instead; its stored retry time still holds.
		r.log.Error(err, "delaying ordered delivery", "deliveryID", p.DeliveryID)
	}
	r.log.V(1).Info("ordered delivery failed; retry scheduled, the deliveries after it wait", "deliveryID", p.DeliveryID,
		"eventID", p.EventID, "attempt", p.Attempt, "status", out.StatusCode, "error", out.Err.Error(), "retryAt", h.NotBefore)
}

// clearHead removes the stored state of an ordered head that was settled, or of one
// that may be stale; a head that never failed has none, and costs nothing.
func (r *runner) clearHead(ctx context.Context, head *queue.Head) {
	if head == nil {
		if !r.headStale.Swap(false) {
			return
		}
		// Only a record whose delivery is settled is stale: just after a switch from
		// Unordered, an earlier delivery may still be waiting with its own.
		h, blocking, err := r.e.store.BlockingHead(ctx, r.key)
		switch {
		case err != nil:
			r.headStale.Store(true)
			r.log.Error(err, "reading the retry state of an ordered endpoint")
			return
		case blocking || h.Sequence == 0:
			return
		}
	}
	if err := r.e.store.ClearOrderedHead(ctx, r.key); err != nil {
		r.headStale.Store(true)
		r.log.Error(err, "clearing the retry state of an ordered delivery")
	}
}

// deadLetter stores p as a dead letter (attempted: just after a failed attempt); settled,
// when set, runs once it is stored and before observers hear of it.
func (r *runner) deadLetter(ctx context.Context, p *queue.Pending, reason string, status int, cause error, attempted bool, settled func(context.Context)) {
	dl := queue.DeadLetter{Reason: reason, StatusCode: status, At: r.e.opts.Now(), Attempted: attempted}
	if cause != nil {
		dl.Error = cause.Error()
	}
	if err := p.DeadLetter(ctx, dl); err != nil {
		r.log.Error(err, "dead-lettering delivery; it will be attempted again", "deliveryID", p.DeliveryID)
		return
	}
	if settled != nil {
		settled(ctx)
	}
	dl.Delivery = p.Delivery
	r.log.Info("delivery dead-lettered", "deliveryID", p.DeliveryID, "eventID", p.EventID, "eventType", p.EventType,
		"attempts", p.Attempt, "reason", reason, "status", status)
	r.e.opts.Observer.DeadLettered(r.key, &dl)
}

func (r *runner) release(p *queue.Pending) {
	if err := p.Release(); err != nil {
		r.log.V(1).Info("releasing delivery", "deliveryID", p.DeliveryID, "error", err.Error())
	}
}

// waitHeld waits for the hold to change, enforcing the limits on held deliveries
// meanwhile, so that a forgotten suspended or disabled endpoint cannot grow the store
// without bound. What exceeds a limit is dead-lettered (kept, listed, replayable) and
// reported, never dropped.
// It reports idle when the endpoint holds no delivery any more: a held endpoint with
// nothing stored needs no goroutine either.
func (r *runner) waitHeld(ctx context.Context) (idle bool) {
	tick := time.NewTicker(r.e.opts.HeldCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-r.wake:
			return false
		case <-ctx.Done():
			return false
		case <-tick.C:
			if err := r.enforceHeldLimits(ctx); err != nil {
				r.log.Error(err, "enforcing limits on held deliveries")
			}
			if n, err := r.e.store.PendingDeliveries(ctx, r.key); err == nil && n == 0 {
				return true
			}
		}
	}
}

func (r *runner) enforceHeldLimits(ctx context.Context) error {
	pending, err := r.e.store.PendingDeliveries(ctx, r.key)
	if err != nil {
		return err
	}
	excess := pending - r.e.opts.MaxHeld
	for ctx.Err() == nil {
		ordered := r.cfg.Load().Ordered
		batch, err := r.e.store.FetchHeld(ctx, r.key, 100, r.consumerOptions(ordered, 0))
		if err != nil || len(batch) == 0 {
			return err
		}
		done := false
		for _, p := range batch {
			age := r.e.opts.Now().Sub(p.AcceptedAt)
			switch {
			case done:
				r.release(p)
			case excess > 0:
				excess--
				r.deadLetter(ctx, p, heraldv1.DeadLetterHeldLimitExceeded, 0,
					fmt.Errorf("held endpoint had %d deliveries waiting, over the limit of %d", pending, r.e.opts.MaxHeld), false, r.heldSettled(ctx, ordered, p))
			case !p.AcceptedAt.IsZero() && age > r.e.opts.MaxHeldAge:
				r.deadLetter(ctx, p, heraldv1.DeadLetterHeldTooLong, 0,
					fmt.Errorf("held for %s, over the limit of %s", age.Truncate(time.Second), r.e.opts.MaxHeldAge), false, r.heldSettled(ctx, ordered, p))
			default:
				// Oldest first: once one is within the limits, the rest are too.
				done = true
				r.release(p)
			}
		}
		if done {
			return nil
		}
	}
	return nil
}

// heldSettled clears the stored state of an ordered head dead-lettered for the limits
// on held deliveries: it may have failed before the endpoint was held (its failed
// attempts are counted with it).
func (r *runner) heldSettled(ctx context.Context, ordered bool, p *queue.Pending) func(context.Context) {
	if !ordered || !p.Redelivered() {
		return nil
	}
	h, ok, err := r.e.store.OrderedHead(ctx, r.key)
	if err != nil || !ok || h.Sequence != p.Sequence() {
		return nil
	}
	p.FailedInPlace = h.Attempt - 1
	return func(ctx context.Context) { r.clearHead(ctx, &h) }
}
