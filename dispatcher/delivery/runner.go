package delivery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/sender"
)

// runner consumes one endpoint's deliveries.
type runner struct {
	e      *Engine
	key    Key
	log    logr.Logger
	cfg    atomic.Pointer[EndpointConfig]
	wake   chan struct{}
	cancel context.CancelFunc

	limitMu sync.Mutex
	limiter *rate.Limiter
	limit   int
}

// wait blocks until the endpoint's request rate allows one more attempt.
func (r *runner) wait(ctx context.Context, rps int) error {
	if rps <= 0 {
		return nil
	}
	r.limitMu.Lock()
	if r.limiter == nil || r.limit != rps {
		r.limiter, r.limit = rate.NewLimiter(rate.Limit(rps), max(1, rps/10)), rps
	}
	l := r.limiter
	r.limitMu.Unlock()
	return l.Wait(ctx)
}

func (r *runner) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		cfg := r.cfg.Load()
		if cfg.Hold != "" {
			r.waitHeld(ctx)
			continue
		}
		if err := r.consume(ctx, cfg.MaxInFlight); err != nil {
			r.log.Error(err, "consuming deliveries; retrying", "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

// consume runs workers until the endpoint is held, its concurrency changes, or ctx ends.
func (r *runner) consume(ctx context.Context, workers int) error {
	cons, err := r.e.store.Consume(ctx, r.key.Namespace, r.key.Name, queue.ConsumerOptions{
		AckWait: r.e.opts.AckWait,
		Buffer:  2 * workers,
	})
	if err != nil {
		return err
	}
	watchDone := make(chan struct{})
	defer close(watchDone)
	go func() {
		for {
			select {
			case <-r.wake:
				if c := r.cfg.Load(); c.Hold != "" || c.MaxInFlight != workers {
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
	for range workers {
		wg.Go(func() {
			for p := range work {
				r.handle(ctx, p)
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
			return nil
		}
		if err != nil {
			// The iterator recovers from transient errors (missed heartbeats, a
			// reconnect) by itself; report and go on.
			r.log.V(1).Info("fetching deliveries", "error", err.Error())
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		work <- p
	}
}

// handle settles one delivery: attempt it, or hand it back when it is not due or the
// endpoint is held.
func (r *runner) handle(ctx context.Context, p *queue.Pending) {
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
	// rate limit is waited for again, or every worker would fire at once on recovery.
	for {
		if err := r.wait(ctx, cfg.RequestsPerSecond); err != nil {
			r.release(p)
			return
		}
		if r.e.store.Writable() == nil {
			break
		}
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
		EventID: d.EventID, EventType: d.EventType, CreatedAt: d.CreatedAt, CreatedAtText: d.CreatedAtText, Data: d.Data,
		DeliveryID: d.DeliveryID, Attempt: d.Attempt, TraceParent: d.TraceParent, TraceState: d.TraceState,
	}
	var out sender.Outcome
	if t := r.e.opts.Tracer; t != nil {
		out = r.sendTraced(ctx, t, cfg.Target, &msg)
	} else {
		out = cfg.Target.Send(ctx, &msg)
	}
	if !out.OK() && ctx.Err() != nil {
		// Shutting down mid-attempt: the attempt did not really happen.
		r.release(p)
		return
	}
	sctx, cancel := settleCtx()
	defer cancel()
	a := Attempt{Endpoint: r.key, Delivery: &p.Delivery, Outcome: out}
	switch {
	case out.OK():
		a.Final = true
		r.e.opts.Observer.Attempted(a)
		if err := p.Delivered(); err != nil {
			r.log.Error(err, "acknowledging delivered delivery; it may be delivered again", "deliveryID", p.DeliveryID)
		}
	case p.Attempt > len(cfg.Schedule):
		a.Final = true
		r.e.opts.Observer.Attempted(a)
		r.deadLetter(sctx, p, heraldv1.DeadLetterRetriesExhausted, out.StatusCode, out.Err)
	default:
		r.e.opts.Observer.Attempted(a)
		next := p.Delivery
		next.Attempt++
		// The schedule counts from the failure, not from the start of the attempt.
		next.NotBefore = r.e.opts.Now().Add(nextDelay(cfg, p.Attempt, out, jitterRand))
		if err := p.Retry(sctx, next); err != nil {
			// Not settled: the store hands the delivery out again after AckWait and it
			// is attempted again, which keeps it; nothing is lost.
			r.log.Error(err, "scheduling retry", "deliveryID", p.DeliveryID)
			return
		}
		r.log.V(1).Info("delivery failed; retry scheduled", "deliveryID", p.DeliveryID, "eventID", p.EventID,
			"attempt", p.Attempt, "status", out.StatusCode, "error", out.Err.Error(), "retryAt", next.NotBefore)
	}
}

func (r *runner) deadLetter(ctx context.Context, p *queue.Pending, reason string, status int, cause error) {
	dl := queue.DeadLetter{Reason: reason, StatusCode: status, At: r.e.opts.Now()}
	if cause != nil {
		dl.Error = cause.Error()
	}
	if err := p.DeadLetter(ctx, dl); err != nil {
		r.log.Error(err, "dead-lettering delivery; it will be attempted again", "deliveryID", p.DeliveryID)
		return
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
func (r *runner) waitHeld(ctx context.Context) {
	tick := time.NewTicker(r.e.opts.HeldCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-r.wake:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := r.enforceHeldLimits(ctx); err != nil {
				r.log.Error(err, "enforcing limits on held deliveries")
			}
		}
	}
}

func (r *runner) enforceHeldLimits(ctx context.Context) error {
	pending, err := r.e.store.PendingDeliveries(ctx, r.key.Namespace, r.key.Name)
	if err != nil {
		return err
	}
	excess := pending - r.e.opts.MaxHeld
	for ctx.Err() == nil {
		batch, err := r.e.store.FetchHeld(ctx, r.key.Namespace, r.key.Name, 100, r.e.opts.AckWait)
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
					fmt.Errorf("held endpoint had %d deliveries waiting, over the limit of %d", pending, r.e.opts.MaxHeld))
			case !p.AcceptedAt.IsZero() && age > r.e.opts.MaxHeldAge:
				r.deadLetter(ctx, p, heraldv1.DeadLetterHeldTooLong, 0,
					fmt.Errorf("held for %s, over the limit of %s", age.Truncate(time.Second), r.e.opts.MaxHeldAge))
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
