package app

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-dev/herald/dispatcher/accept"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/ingest"
	"github.com/herald-dev/herald/dispatcher/metrics"
	"github.com/herald-dev/herald/dispatcher/outcome"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/replay"
	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/internal/tracing"
)

// PipelineOptions configure an event's route through the dispatcher.
type PipelineOptions struct {
	// Config is the dispatcher's configuration (package config), of which the route
	// reads the store, the history, ingest, delivery and the operational events'
	// interval: start from config.Default() (its zero value leaves the attempt log off
	// and replays unpaced).
	Config     config.Dispatcher
	Authorizer auth.Authorizer
	// IdleAfter is how long an endpoint's consumer and workers outlive its last
	// delivery (see delivery.Options).
	IdleAfter time.Duration
	// Events receives the outcome's Kubernetes Events; nil sends none (no API server).
	Events *outcome.EventSink
	// Notify asks for an endpoint's configuration to be rebuilt after its shared state
	// changed elsewhere; nil when nothing rebuilds configurations.
	Notify func(delivery.Key)
	// Metrics, when set, gets the dispatcher's Prometheus collectors.
	Metrics prometheus.Registerer
	// WithoutOutcome leaves out the shared failure state, for benchmarks that measure
	// the route up to the receiver alone.
	WithoutOutcome bool
	// Instance names this dispatcher replica (in replay leases and tombstones).
	Instance string
	// Retired hears of every endpoint the engine retired: deleted, or replaced by an
	// object of the same name. Its local figures are dropped here; Retired reclaims its
	// stored data.
	Retired func(delivery.Key)
	// Now is the dispatcher's clock: when events are accepted, what "since 2h" means
	// (default time.Now). Tests spread events over hours with it.
	Now func() time.Time
	// FilterFailed hears of subscription filters that failed on an event.
	FilterFailed func(namespace, subscription, eventID string, err error)
	// Tracer, when set, records spans for ingest, store and every attempt; nil records
	// none (trace context is forwarded either way).
	Tracer *tracing.Tracer
	// Catalog, when set, holds the namespaces' event types that ingest enforces; nil
	// accepts every type (no namespace has a catalog).
	Catalog ingest.Catalog
	Log     logr.Logger
}

// Pipeline is an event's route through the dispatcher, in the order the event takes
// it: Ingest → accept → Store → Engine (sender) → Tracker (outcome). The Kubernetes
// side (the watch that configures endpoints and routes, status, Events) is added by
// Run; the benchmark configures endpoints itself.
type Pipeline struct {
	Store   queue.Store
	Router  *router.Table
	Engine  *delivery.Engine
	Tracker *outcome.Tracker // nil WithoutOutcome
	// Replayer runs replays by selection; nil WithoutOutcome (its progress is status).
	Replayer *replay.Replayer
	History  *queue.HistoryWriter
	// Now is the dispatcher's clock (PipelineOptions.Now).
	Now     func() time.Time
	Metrics *metrics.Metrics // nil without PipelineOptions.Metrics
	// Ingest is the ingest API.
	Ingest http.Handler
	// Operational publishes Herald's operational events into the namespaces' routes;
	// nil WithoutOutcome.
	Operational *outcome.Operational
	stopOps     context.CancelFunc
	opsDone     chan struct{}
}

// NewPipeline opens the store and assembles the route. Close releases it.
func NewPipeline(ctx context.Context, o PipelineOptions) (p *Pipeline, err error) {
	c := o.Config
	c.SetDefaults()
	store, err := queue.Open(ctx, queue.Options{Store: c.Store, History: c.History, Log: o.Log.WithName("store")})
	if err != nil {
		return nil, fmt.Errorf("opening the delivery store: %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p = &Pipeline{Store: store, Router: router.NewTable(), Now: o.Now}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()

	p.History = store.History()
	// The history is written first: an attempt's record is handed over before anything
	// else can take long.
	observers := delivery.Observers{&replay.Recorder{History: p.History}}
	var gate func(delivery.Key) bool
	if !o.WithoutOutcome {
		notify := o.Notify
		if notify == nil {
			notify = func(delivery.Key) {}
		}
		p.Tracker = outcome.NewTracker(store, thresholds{p}, o.Events, notify, o.Log.WithName("outcome"))
		observers = append(observers, p.Tracker)
		p.Replayer = replay.New(replay.Options{Store: store, Progress: p.Tracker, Rate: c.History.ReplayRate, Instance: o.Instance,
			Now: o.Now, Log: o.Log.WithName("replay")})
		gate = func(k delivery.Key) bool { _, disabled := p.Tracker.Disabled(k); return disabled }
	}
	if o.Metrics != nil {
		if p.Metrics, err = metrics.New(o.Metrics, metricsSource{p}); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
		observers = append(observers, p.Metrics)
	}
	opts := delivery.Options{
		Store: store, Delivery: c.Delivery, Log: o.Log.WithName("delivery"),
		IdleAfter: o.IdleAfter, Gate: gate, Tracer: o.Tracer,
		PaceChanged: func(k delivery.Key) {
			if p.Tracker != nil && p.Engine != nil {
				p.Tracker.PaceChanged(k, p.Engine.Pace(k))
			}
		},
		Retired: func(k delivery.Key) {
			if p.Tracker != nil {
				p.Tracker.Forget(k)
			}
			if p.Metrics != nil {
				p.Metrics.Forget(k)
			}
			if o.Retired != nil {
				o.Retired(k)
			}
		},
	}
	opts.Observer = observers
	p.Engine = delivery.New(opts)

	acceptor := &accept.Acceptor{
		Store: store, Router: p.Router, Lookup: p.Engine.Lookup, Now: o.Now, Log: o.Log.WithName("accept"),
		FilterFailed: func(namespace, subscription, eventID string, ferr error) {
			if p.Metrics != nil {
				p.Metrics.FilterFailed(namespace)
			}
			if o.FilterFailed != nil {
				o.FilterFailed(namespace, subscription, eventID, ferr)
			}
		},
	}
	if p.Tracker != nil {
		var published func(namespace, eventType string)
		if p.Metrics != nil {
			published = p.Metrics.OperationalPublished
		}
		p.Operational = outcome.NewOperational(operationalPublisher{acceptor}, c.Status.OperationalEventsInterval, published, o.Log.WithName("operational"))
		p.Tracker.SetOperational(p.Operational)
		opsCtx, stop := context.WithCancel(context.Background())
		p.stopOps, p.opsDone = stop, make(chan struct{})
		go func() {
			defer close(p.opsDone)
			_ = p.Operational.Run(opsCtx)
		}()
	}
	ingestOpts := ingest.Options{
		Acceptor:   acceptor,
		Authorizer: o.Authorizer,
		Limits:     c.Ingest,
		Tracer:     o.Tracer,
		Catalog:    o.Catalog,
		Log:        o.Log.WithName("ingest"),
	}
	if p.Metrics != nil {
		ingestOpts.DeprecatedAccepted, ingestOpts.CatalogRefused = p.Metrics.DeprecatedAccepted, p.Metrics.CatalogRefused
	}
	handler, err := ingest.NewHandler(ingestOpts)
	if err != nil {
		return nil, fmt.Errorf("building the ingest API: %w", err)
	}
	p.Ingest = handler
	if p.Metrics != nil {
		p.Ingest = p.Metrics.Ingest(handler)
	}
	return p, nil
}

// Close stops the engine, detaches the metrics from the store and closes it.
func (p *Pipeline) Close() {
	if p.stopOps != nil {
		p.stopOps()
		<-p.opsDone
	}
	if p.Replayer != nil {
		p.Replayer.Stop()
	}
	if p.Engine != nil {
		p.Engine.Stop()
	}
	if p.History != nil {
		// After the engine: the records of its last attempts are written before the
		// store closes.
		p.History.Close()
	}
	if p.Metrics != nil {
		// The registry is process-wide and outlives this dispatcher; its gauges must
		// stop reading a store that is about to close.
		p.Metrics.Close()
	}
	p.Store.Close()
}

// thresholds reads each endpoint's failure threshold from the engine's configuration.
type thresholds struct{ p *Pipeline }

func (t thresholds) FailureThreshold(k delivery.Key) (int32, int64, bool) {
	cfg, ok := t.p.Engine.Config(k)
	return cfg.FailureThreshold, cfg.Generation, ok
}

// metricsSource answers the metrics' gauges from the engine, the store and the shared
// state.
type metricsSource struct{ p *Pipeline }

func (s metricsSource) Endpoints() map[delivery.Key]string {
	if s.p.Engine == nil { // a scrape while the pipeline is being assembled
		return nil
	}
	return s.p.Engine.Endpoints()
}

func (s metricsSource) Disabled(k delivery.Key) bool {
	if s.p.Tracker == nil {
		return false
	}
	_, disabled := s.p.Tracker.Disabled(k)
	return disabled
}

// State judges the endpoint's state as its status does (outcome.DeliveryState).
func (s metricsSource) State(k delivery.Key) (string, delivery.Pace) {
	if s.p.Tracker == nil || s.p.Engine == nil {
		return "", delivery.Pace{}
	}
	st, _ := s.p.Tracker.Disabled(k)
	pace := s.p.Engine.Pace(k)
	return outcome.DeliveryState(st, pace.Throttled), pace
}

func (s metricsSource) Pending(keys []delivery.Key) ([]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.p.Store.PendingOf(ctx, len(keys), func(i int) queue.Endpoint { return keys[i] })
}

// operationalPublisher routes Herald's operational events like a producer's, through the
// same acceptor (dedupe, routing, storage), never to the endpoint they are about.
type operationalPublisher struct{ a *accept.Acceptor }

func (p operationalPublisher) PublishOperational(ctx context.Context, namespace, about string, e outcome.OperationalEvent) error {
	at := e.At.UTC().Truncate(time.Second)
	_, err := p.a.AcceptExcept(ctx, namespace, about, []ingest.Event{{
		ID: e.ID, Type: e.Type, Source: "herald", CreatedAt: at, Data: e.Data, DataContentType: "application/json",
	}})
	return err
}
