// Package delivery is the dispatcher's engine: for every endpoint, a runner consumes
// the deliveries that package accept stored in the queue, with its own pool of workers
// that attempt them through the sender, schedule retries and dead-letter what cannot be
// delivered, and tells an Observer (package outcome, metrics) what happened.
//
// Each endpoint consumes its own subject with its own workers (at most its maxInFlight
// concurrent attempts), so a slow or dead endpoint occupies only its own workers and
// never delays a healthy one. An ordered endpoint has one worker and its consumer hands
// out one delivery at a time; a failed attempt is retried in place (see queue.Head), so
// the deliveries behind it wait. A held endpoint (suspended, disabled, secret missing) stops
// fetching: its deliveries stay stored, in order, until it flows again.
package delivery

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/resolve"
	"github.com/herald-dev/herald/dispatcher/sender"
	"github.com/herald-dev/herald/internal/tracing"
)

// Key names an endpoint: namespace, name and the UID of its WebhookEndpoint object, so
// that an endpoint deleted and created again under its name is another endpoint, with
// none of the first one's deliveries.
type Key = queue.Endpoint

// name is an endpoint's name alone: the engine holds one runner per name, that of the
// object of that name that exists now.
type name struct{ namespace, name string }

func nameOf(k Key) name { return name{k.Namespace, k.Name} }

// EndpointConfig is the delivery configuration of one endpoint, resolved from its
// WebhookEndpoint and Secrets by dispatcher/resolve.
type EndpointConfig struct {
	// Target sends to the endpoint; nil when Hold is set.
	Target *sender.Target
	// Hold, when not empty, is why deliveries are held (a WebhookEndpoint Ready reason
	// from api/v1alpha1); HoldMessage says more.
	Hold        string
	HoldMessage string
	// Settings: retry schedule, limits (a requestsPerSecond limiter is shared by the
	// endpoint's workers on this replica), failure threshold, generation.
	resolve.Settings
}

// Resolved turns the resolver's judgement on an endpoint into its configuration: a
// Target to send with when deliveries can flow, otherwise the hold and its reason. A
// suspended endpoint keeps its retry settings, so that resuming needs nothing more.
func Resolved(res resolve.Result, generation int64) EndpointConfig {
	cfg := EndpointConfig{Settings: resolve.Settings{Generation: generation}}
	if c := res.Config; c != nil {
		cfg.Settings = c.Settings
	}
	if !res.Ready() {
		cfg.Hold, cfg.HoldMessage = res.Reason, res.Message
		return cfg
	}
	cfg.Target = sender.New(res.Config.Sender)
	return cfg
}

// Attempt describes one finished attempt, for observers.
type Attempt struct {
	Endpoint Key
	Delivery *queue.Delivery
	Outcome  sender.Outcome
	// Final is true when no further attempt follows (success or dead letter).
	Final bool
	// Throttled is set when the receiver answered 429 to an endpoint whose limits adapt
	// to it: the attempt failed, but the receiver is pacing Herald, not failing, so it
	// does not count towards auto-disable.
	Throttled bool
}

// Observer is told what happens to deliveries: the status writer, metrics and Events
// hang off it. Calls are made from the delivery workers and must not block for long.
type Observer interface {
	Attempted(a Attempt)
	DeadLettered(ep Key, dl *queue.DeadLetter)
}

// Store is what the engine needs of the queue: each endpoint's deliveries, and whether
// the outcome of an attempt can be stored.
type Store interface {
	Writable() error
	WaitWritable(ctx context.Context) error
	Consume(ctx context.Context, ep Key, opts queue.ConsumerOptions) (*queue.Consumer, error)
	PendingDeliveries(ctx context.Context, ep Key) (int64, error)
	UnsettledBySubject(ctx context.Context) (map[string]uint64, error)
	// OnStored is how the engine hears of deliveries stored by this process.
	OnStored(func(Key))
	FetchHeld(ctx context.Context, ep Key, n int, opts queue.ConsumerOptions) ([]*queue.Pending, error)
	// The retry state of an ordered endpoint's failing head.
	OrderedHead(ctx context.Context, ep Key) (queue.Head, bool, error)
	BlockingHead(ctx context.Context, ep Key) (queue.Head, bool, error)
	SetOrderedHead(ctx context.Context, ep Key, h queue.Head) error
	ClearOrderedHead(ctx context.Context, ep Key) error
}

// Options configure an Engine. Zero values are the documented defaults.
type Options struct {
	Store Store
	// Delivery is the engine's section of the dispatcher's configuration: AckWait, how
	// long an attempt may stay unacknowledged before the store hands it to another
	// worker; MaxHeld and MaxHeldAge, what a held endpoint keeps, beyond which the
	// oldest are dead-lettered (reasons HeldLimitExceeded, HeldTooLong). Zero values are
	// the defaults (package config).
	config.Delivery
	Observer Observer
	Log      logr.Logger
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
	// HeldCheckInterval is how often held endpoints are checked against the limits
	// (default 1 minute).
	HeldCheckInterval time.Duration
	// Gate, when set, is asked before every attempt whether the endpoint is held right
	// now. It closes the gap between a hold decided elsewhere (auto-disable by any
	// replica) and the configuration update that follows it.
	Gate func(Key) bool
	// IdleAfter is how long an endpoint hands out no delivery, with none stored, before
	// its consumer and workers stop (default 30s); the next delivery starts them again.
	// The server removes a consumer no replica pulls from for twice as long.
	IdleAfter time.Duration
	// ScanInterval is how often the store is asked which endpoints have deliveries, to
	// start those stored by other replicas or before a restart (default 2s). Deliveries
	// this process stores start their endpoint at once (queue.Store.OnStored).
	ScanInterval time.Duration
	// Tracer, when set, records a span per attempt (child of the event's trace context)
	// and sends the span's traceparent to the receiver. Nil records nothing and sends
	// the event's own trace context.
	Tracer *tracing.Tracer
	// PaceChanged, when set, hears of every endpoint whose limits began or stopped
	// adapting to a struggling receiver (see Pace), so that its status says so soon.
	PaceChanged func(Key)
	// Retired, when set, hears of every endpoint whose runner stopped for good: its
	// object was deleted, or replaced by another of the same name (another UID). Its
	// stored data is no longer reachable through the engine; Retired reclaims it.
	Retired func(Key)
}

// Engine runs the deliveries of every endpoint.
type Engine struct {
	opts    Options
	store   Store
	log     logr.Logger
	baseCtx context.Context
	stop    context.CancelFunc

	mu        sync.RWMutex
	runners   map[name]*runner
	bySubject map[string]*runner // the same runners, by the subject the store counts them by
	wg        sync.WaitGroup
	scan      chan struct{}
}

// New returns an engine; its workers run until Stop.
func New(opts Options) *Engine {
	opts.Delivery.SetDefaults()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HeldCheckInterval <= 0 {
		opts.HeldCheckInterval = time.Minute
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.IdleAfter <= 0 {
		opts.IdleAfter = 30 * time.Second
	}
	if opts.ScanInterval <= 0 {
		opts.ScanInterval = 2 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		opts: opts, store: opts.Store, log: opts.Log,
		baseCtx: ctx, stop: cancel,
		runners: map[name]*runner{}, bySubject: map[string]*runner{},
		scan: make(chan struct{}, 1),
	}
	opts.Store.OnStored(e.Stored)
	e.wg.Go(e.scanLoop)
	return e
}

// Stored starts an endpoint's runner if it is idle: this process has just stored a
// delivery for it (the store's OnStored hook, set by New).
func (e *Engine) Stored(k Key) {
	e.mu.RLock()
	r, ok := e.runners[nameOf(k)]
	e.mu.RUnlock()
	if ok && r.key == k {
		r.start()
	}
}

// scanLoop starts the runners of endpoints the store holds deliveries for: those
// stored before a restart, by another replica, or while an endpoint was unknown. One
// request answers for every endpoint, so ten thousand idle endpoints cost one map walk
// per ScanInterval and no consumer.
func (e *Engine) scanLoop() {
	tick := time.NewTicker(e.opts.ScanInterval)
	defer tick.Stop()
	for {
		select {
		case <-e.baseCtx.Done():
			return
		case <-tick.C:
		case <-e.scan:
			// Asked for by Upsert, which comes ten thousand times in a row when a
			// dispatcher starts: one scan answers a burst of them.
			select {
			case <-time.After(scanCoalesce):
			case <-e.baseCtx.Done():
				return
			}
		}
		ctx, cancel := context.WithTimeout(e.baseCtx, e.opts.ScanInterval+5*time.Second)
		counts, err := e.store.UnsettledBySubject(ctx)
		cancel()
		if err != nil {
			e.log.V(1).Info("asking the store which endpoints have deliveries", "error", err.Error())
			continue
		}
		// Walks the endpoints with deliveries, not every endpoint.
		e.mu.RLock()
		for subject, n := range counts {
			if r := e.bySubject[subject]; r != nil && n > 0 {
				r.start()
			}
		}
		e.mu.RUnlock()
	}
}

// scanCoalesce is how long a requested scan waits for more requests to answer at once.
const scanCoalesce = 100 * time.Millisecond

func (e *Engine) kickScan() {
	select {
	case e.scan <- struct{}{}:
	default:
	}
}

type nopObserver struct{}

func (nopObserver) Attempted(Attempt)                   {}
func (nopObserver) DeadLettered(Key, *queue.DeadLetter) {}

// Upsert starts or reconfigures the deliveries of an endpoint. k.UID is required: an
// endpoint of the same name with another UID is a new object, and the runner of the old
// one is retired (see Options.Retired).
func (e *Engine) Upsert(k Key, cfg EndpointConfig) {
	if k.UID == "" {
		e.log.Error(nil, "an endpoint without a UID cannot be delivered to; ignored", "endpoint", k.String())
		return
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 8
	}
	var retired *runner
	defer func() {
		if retired != nil {
			e.retire(retired)
		}
	}()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.baseCtx.Err() != nil {
		return
	}
	r, ok := e.runners[nameOf(k)]
	if ok && r.key.UID != k.UID {
		// Deleted and created again before this dispatcher looked: the old object's
		// runner goes, and with it any way to its deliveries.
		retired, ok = r, false
		delete(e.bySubject, r.subject)
	}
	if !ok {
		// Idle until the store shows a delivery for it: the scan asked for here, or a
		// delivery stored by this process.
		r = &runner{e: e, key: k, subject: queue.DeliverySubject(k), wake: make(chan struct{}, 1)}
		r.pace = newPacer(e.opts.Now, func() { e.paceChanged(k) })
		r.pace.configure(cfg.RequestsPerSecond, cfg.MaxInFlight, cfg.Adaptive)
		r.cfg.Store(&cfg)
		e.runners[nameOf(k)], e.bySubject[r.subject] = r, r
		e.kickScan()
		return
	}
	if cur := r.cfg.Load(); cur.Target != nil && cfg.Target != nil {
		// A Secret or spec change rebuilds the target; an OAuth2 token obtained with
		// unchanged credentials stays good.
		cfg.Target.KeepTokens(cur.Target)
	}
	r.pace.configure(cfg.RequestsPerSecond, cfg.MaxInFlight, cfg.Adaptive)
	old := r.cfg.Swap(&cfg)
	if old.Target != nil && old.Target != cfg.Target {
		// In-flight attempts hold the old target; idle connections can go now.
		defer old.Target.Close()
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	// A released hold lets stored deliveries flow; an idle runner learns of them here.
	e.kickScan()
}

// Remove stops the deliveries of a deleted endpoint, named by namespace and name (its
// UID, when set, must match) and retires it (see Options.Retired): its stored data
// belongs to the deleted object alone, never to one created later under its name.
func (e *Engine) Remove(k Key) {
	e.mu.Lock()
	r, ok := e.runners[nameOf(k)]
	if ok && k.UID != "" && r.key.UID != k.UID {
		ok = false
	}
	if ok {
		delete(e.runners, nameOf(k))
		delete(e.bySubject, r.subject)
	}
	e.mu.Unlock()
	if ok {
		e.retire(r)
	}
}

// retire stops a runner for good and tells Options.Retired.
func (e *Engine) retire(r *runner) {
	r.remove()
	if old := r.cfg.Load(); old.Target != nil {
		defer old.Target.Close()
	}
	if e.opts.Retired != nil {
		e.opts.Retired(r.key)
	}
}

// Known reports whether an endpoint exists (held or not): events are routed only to
// endpoints that exist.
func (e *Engine) Known(namespace, name string) bool {
	_, ok := e.Lookup(namespace, name)
	return ok
}

// Lookup returns the endpoint of that name that exists now, with its UID.
func (e *Engine) Lookup(namespace, endpoint string) (Key, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	r, ok := e.runners[name{namespace, endpoint}]
	if !ok {
		return Key{}, false
	}
	return r.key, true
}

// Config returns the current configuration of an endpoint, named by namespace and
// name (its UID, when set, must match).
func (e *Engine) Config(k Key) (EndpointConfig, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	r, ok := e.runners[nameOf(k)]
	if !ok || (k.UID != "" && r.key.UID != k.UID) {
		return EndpointConfig{}, false
	}
	return *r.cfg.Load(), true
}

// Stop stops every worker. Attempts in progress are abandoned; their deliveries are
// handed back to the store and attempted again by the next dispatcher.
func (e *Engine) Stop() {
	e.stop()
	e.wg.Wait()
}

// nextDelay is the wait before the next attempt after attempt n (1-based) failed.
func nextDelay(cfg *EndpointConfig, n int, out sender.Outcome, rnd func() float64) time.Duration {
	d := cfg.Schedule[n-1]
	if cfg.JitterPercent > 0 {
		spread := float64(d) * float64(cfg.JitterPercent) / 100
		d += time.Duration((rnd()*2 - 1) * spread)
	}
	// Retry-After is honoured as a lower bound: the receiver said it cannot take the
	// request sooner; capped so that a receiver cannot park deliveries for days.
	if out.RetryAfter > 0 {
		ra := out.RetryAfter
		if cfg.MaxRetryAfter > 0 && ra > cfg.MaxRetryAfter {
			ra = cfg.MaxRetryAfter
		}
		d = max(d, ra)
	}
	return max(d, 0)
}

func settleCtx() (context.Context, context.CancelFunc) {
	// Settling must survive shutdown's cancellation, or a finished attempt would be
	// repeated by the next dispatcher for no reason.
	return context.WithTimeout(context.Background(), 10*time.Second)
}

func jitterRand() float64 { return rand.Float64() }

// Observers fans one outcome out to several observers, in order.
type Observers []Observer

// Attempted implements Observer.
func (o Observers) Attempted(a Attempt) {
	for _, x := range o {
		x.Attempted(a)
	}
}

// DeadLettered implements Observer.
func (o Observers) DeadLettered(k Key, dl *queue.DeadLetter) {
	for _, x := range o {
		x.DeadLettered(k, dl)
	}
}

// Running is how many endpoints have a consumer and workers on this replica: those
// with deliveries, and those idle for less than IdleAfter.
func (e *Engine) Running() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	n := 0
	for _, r := range e.runners {
		r.runMu.Lock()
		if r.running {
			n++
		}
		r.runMu.Unlock()
	}
	return n
}

func (e *Engine) paceChanged(k Key) {
	if e.opts.PaceChanged != nil {
		e.opts.PaceChanged(k)
	}
}

// Pace returns an endpoint's pacing on this replica (the zero Pace when its configured
// limits apply).
func (e *Engine) Pace(k Key) Pace {
	e.mu.RLock()
	r, ok := e.runners[nameOf(k)]
	e.mu.RUnlock()
	if !ok || (k.UID != "" && r.key.UID != k.UID) {
		return Pace{}
	}
	return r.pace.state()
}

// Endpoints lists the endpoints with their hold reason ("" when deliveries flow).
func (e *Engine) Endpoints() map[Key]string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make(map[Key]string, len(e.runners))
	for _, r := range e.runners {
		out[r.key] = r.cfg.Load().Hold
	}
	return out
}
