// Package app assembles the dispatcher: the JetStream store, the delivery engine, the
// watch that feeds it from the cluster and the ingest API. The herald CLI and the tests
// run the same assembly.
package app

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/admin"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/catalog"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/outcome"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/receiverdocs"
	"github.com/herald-dev/herald/dispatcher/reclaim"
	"github.com/herald-dev/herald/dispatcher/watch"
	"github.com/herald-dev/herald/internal/scheme"
	"github.com/herald-dev/herald/internal/tracing"
)

// Options configure the dispatcher: its configuration, and what only a Go caller gives
// (how callers authenticate, the clock, the logger).
type Options struct {
	// Config is the dispatcher's configuration (package config): start from
	// config.Default(). Run refuses what config.Validate refuses.
	Config config.Dispatcher
	// EgressUsername and EgressPassword are the login sent to Config.Egress.Proxy, which
	// `herald dispatcher` reads from its environment (config.EnvProxyUsername,
	// config.EnvProxyPassword): a credential is no setting.
	EgressUsername, EgressPassword string
	// Authorizer decides who may publish. Built from the cluster when nil by
	// NewAuthorizer.
	Authorizer func(mgr manager.Manager) (auth.Authorizer, error)
	// AdminAuthorizers decide who may do what through the endpoint API (read, replay,
	// re-enable, read response bodies); nil leaves that API out.
	AdminAuthorizers func(mgr manager.Manager) (admin.Access, error)
	// IdleAfter is how long an endpoint's consumer and workers outlive its last
	// delivery (default 30s; see delivery.Options).
	IdleAfter time.Duration
	// TraceBatchTimeout is the longest a finished span waits before it is exported
	// (default 5s; see tracing.Options).
	TraceBatchTimeout time.Duration
	// Now is the clock of acceptance and of relative times (default time.Now).
	Now func() time.Time
	Log logr.Logger
	// Ready, when not nil, receives the ingest API's address once it serves.
	Ready chan<- string

	// cacheAllSecrets reads Secrets from an informer of their whole content, as the
	// dispatcher did before it held only the referenced ones: the memory benchmark's
	// baseline (export_test.go), never set otherwise.
	cacheAllSecrets bool
}

// slimCached drops from every cached object what the dispatcher never reads and what
// makes up much of its size: managedFields (status is written by server-side apply,
// which does not need them) and kubectl's last-applied-configuration annotation (a
// second copy of the object, Secret data included, for everything made by kubectl apply).
// Of a metadata-only object (the Secrets of the namespaces served) it keeps only what
// says which one it is and whether it changed.
func slimCached(obj any) (any, error) {
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		return &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
			Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
			DeletionTimestamp: m.DeletionTimestamp,
		}}, nil
	}
	obj, err := cache.TransformStripManagedFields()(obj)
	if o, ok := obj.(metav1.Object); ok && err == nil {
		if a := o.GetAnnotations(); a != nil {
			if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
				delete(a, corev1.LastAppliedConfigAnnotation)
				if len(a) == 0 {
					a = nil // a map emptied keeps its buckets
				}
				o.SetAnnotations(a)
			}
		}
	}
	return obj, err
}

// Run runs the dispatcher until ctx ends.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	log, c := o.Log, o.Config
	if err := c.Validate(); err != nil {
		return err
	}
	c.SetDefaults()
	egress, err := c.Egress.Outbound(o.EgressUsername, o.EgressPassword)
	if err != nil {
		return err
	}
	cacheOpts := cache.Options{DefaultTransform: slimCached}
	if len(c.WatchNamespaces) > 0 {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range c.WatchNamespaces {
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	metricsAddr := cmp.Or(c.Serving.MetricsBindAddress, "0")
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme.New(),
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: c.Serving.HealthProbeBindAddress,
		PprofBindAddress:       c.Serving.PprofBindAddress,
		Logger:                 log,
		// Several dispatchers in one process (tests) each register their own
		// controllers.
		Controller: ctrlConfigSkipNameValidation(),
	})
	if err != nil {
		return fmt.Errorf("creating dispatcher: %w", err)
	}
	// The object of the key's UID: a deleted endpoint's Events and status never land on
	// one created later under its name.
	lookup := func(k delivery.Key) (*heraldv1.WebhookEndpoint, bool) {
		var ep heraldv1.WebhookEndpoint
		if err := mgr.GetClient().Get(context.Background(), types.NamespacedName{Namespace: k.Namespace, Name: k.Name}, &ep); err != nil {
			return nil, false
		}
		return &ep, string(ep.UID) == k.UID
	}
	notify := make(chan event.GenericEvent, 1024)
	instance, _ := os.Hostname()
	sink := outcome.NewEventSink(mgr.GetClient(), instance, lookup, 10, 6*time.Second, log.WithName("events"))
	if err := mgr.Add(manager.RunnableFunc(sink.Run)); err != nil {
		return fmt.Errorf("adding the event sink: %w", err)
	}
	filters := &outcome.FilterReporter{Client: mgr.GetClient(), Events: sink, Log: log.WithName("filters")}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		return filters.Run(ctx, c.Status.Interval)
	})); err != nil {
		return fmt.Errorf("adding the filter reporter: %w", err)
	}
	if o.Authorizer == nil {
		return errors.New("no authorizer configured")
	}
	authorizer, err := o.Authorizer(mgr)
	if err != nil {
		return fmt.Errorf("configuring ingest authentication: %w", err)
	}
	tracer, err := tracing.Start(ctx, tracing.Options{Endpoint: c.Tracing.OTLPEndpoint, BatchTimeout: o.TraceBatchTimeout})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracer.Shutdown(sctx); err != nil {
			log.Error(err, "exporting the last spans")
		}
	}()
	cat := catalog.New()
	retired := make(chan delivery.Key, 1024)
	p, err := NewPipeline(ctx, PipelineOptions{
		Config: c, Catalog: cat, Authorizer: authorizer, IdleAfter: o.IdleAfter,
		Events: sink,
		Notify: func(k delivery.Key) {
			select {
			case notify <- event.GenericEvent{Object: &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}}:
			default: // a full queue already holds enough reasons to look again
			}
		},
		Metrics:      ctrlmetrics.Registry,
		FilterFailed: filters.Failed,
		Tracer:       tracer,
		Instance:     instance,
		Retired: func(k delivery.Key) {
			select {
			case retired <- k:
			default: // the next sweep finds its data
				log.Info("too many endpoints retired at once; the data of this one waits for the next sweep", "endpoint", k.String())
			}
		},
		Now: o.Now,
		Log: log,
	})
	if err != nil {
		return err
	}
	defer p.Close()
	store, engine, tracker := p.Store, p.Engine, p.Tracker

	reclaimer := reclaim.New(reclaim.Options{
		Store: store, Cached: engine.Lookup, Reader: mgr.GetAPIReader(), Namespaces: c.WatchNamespaces,
		Known: func() []queue.Endpoint {
			known := engine.Endpoints()
			out := make([]queue.Endpoint, 0, len(known))
			for k := range known {
				out = append(out, k)
			}
			return out
		},
		Retired: retired, Instance: instance, Log: log.WithName("reclaim"),
	})
	if err := mgr.Add(manager.RunnableFunc(reclaimer.Run)); err != nil {
		return fmt.Errorf("adding the reclaimer: %w", err)
	}
	requests := outcome.NewRequests(tracker, p.Replayer, outcome.AnnotationManager(mgr.GetAPIReader()), p.Now)
	endpoints := &watch.Endpoints{Client: mgr.GetClient(), Engine: engine, Policy: c.Outbound, Egress: egress,
		Lifecycle: afterMigration{requests, reclaimer.Migrated()}, Notify: notify}
	if o.cacheAllSecrets {
		endpoints.Secrets = watch.InformerSecrets{Client: mgr.GetClient()}
	}
	if err := endpoints.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("watching endpoints: %w", err)
	}
	subscriptions := &watch.Subscriptions{Client: mgr.GetClient(), Router: p.Router, Filters: filters}
	if err := subscriptions.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("watching subscriptions: %w", err)
	}
	eventTypes := &watch.EventTypes{Client: mgr.GetClient(), Catalog: cat}
	if err := eventTypes.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("watching event types: %w", err)
	}

	statusWriter := &outcome.StatusWriter{
		Client: mgr.GetClient(), Tracker: tracker, Store: store, Lookup: lookup,
		Holds: func(k delivery.Key) (string, string) {
			cfg, _ := engine.Config(k)
			return cfg.Hold, cfg.HoldMessage
		},
		Pace:     engine.Pace,
		Interval: c.Status.Interval, Log: log.WithName("status"),
	}
	if err := mgr.Add(manager.RunnableFunc(statusWriter.Run)); err != nil {
		return fmt.Errorf("adding the status writer: %w", err)
	}
	if err := mgr.Add(manager.RunnableFunc(tracker.Watch)); err != nil {
		return fmt.Errorf("adding the state watch: %w", err)
	}

	mux := http.NewServeMux()
	mux.Handle("/", p.Ingest)
	if o.AdminAuthorizers != nil {
		access, err := o.AdminAuthorizers(mgr)
		if err != nil {
			return fmt.Errorf("configuring endpoint API authentication: %w", err)
		}
		admin.NewHandler(admin.Options{
			Store: store, Lifecycle: tracker, Replayer: p.Replayer, Lookup: engine.Lookup, Now: p.Now,
			Docs:   receiverDocs(mgr.GetClient(), cat),
			Access: access, Log: log.WithName("admin"),
		}).Register(mux)
	}

	var certs *certReloader
	if c.Serving.TLS.Enabled() {
		if certs, err = newCertReloader(c.Serving.TLS, log.WithName("tls")); err != nil {
			return err
		}
	}
	primed := make(chan struct{})
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		return serveIngest(ctx, log, mgr, c.Serving.IngestBindAddress, o.Ready, mux, certs, primed, endpoints, subscriptions, eventTypes, reclaimer)
	})); err != nil {
		return fmt.Errorf("adding the ingest API: %w", err)
	}
	if a := c.Serving.HealthProbeBindAddress; a != "" && a != "0" {
		if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
			return fmt.Errorf("adding health check: %w", err)
		}
		if err := mgr.AddReadyzCheck("ingest", func(*http.Request) error {
			select {
			case <-primed:
			default:
				return errors.New("configuration not loaded yet")
			}
			return store.Writable()
		}); err != nil {
			return fmt.Errorf("adding ready check: %w", err)
		}
	}
	log.Info("starting dispatcher", "ingest", c.Serving.IngestBindAddress, "embedded", c.Store.URL == "", "policy", c.Outbound, "tracing", tracer != nil,
		"egressProxy", c.Egress.Proxy, "noProxy", c.Egress.NoProxy)
	return mgr.Start(ctx)
}

// serveIngest opens the ingest API once the dispatcher knows every endpoint and
// subscription: an event accepted earlier could be routed to nothing.
func serveIngest(ctx context.Context, log logr.Logger, mgr manager.Manager, addr string, ready chan<- string, h http.Handler,
	certs *certReloader, primed chan struct{}, endpoints *watch.Endpoints, subscriptions *watch.Subscriptions,
	eventTypes *watch.EventTypes, reclaimer *reclaim.Reclaimer) error {
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return errors.New("informers did not sync")
	}
	// What an older release stored moves to its endpoint before anything acts on an
	// endpoint; what deleted endpoints left goes once the engine knows every endpoint,
	// before new events arrive.
	if err := reclaimer.Start(ctx, func(ctx context.Context) error {
		return prime(ctx, mgr.GetClient(), endpoints, subscriptions, eventTypes)
	}); err != nil {
		return err
	}
	close(primed)
	addr = cmp.Or(addr, config.Default().Serving.IngestBindAddress)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for ingest on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: stdlog.New(serverErrors{log.WithName("ingest")}, "", 0)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if certs != nil {
		srv.TLSConfig = certs.serverTLS()
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	log.Info("ingest API listening", "address", ln.Addr().String(), "tls", certs != nil)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving ingest: %w", err)
	}
	return nil
}

// serverErrors takes net/http's server log: a TLS handshake that failed (a port check,
// a scanner, a client that does not trust the CA, which then says so itself) at V(1),
// anything else as it comes.
type serverErrors struct{ log logr.Logger }

func (w serverErrors) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.Contains(msg, "TLS handshake error") {
		w.log.V(1).Info(msg)
	} else {
		w.log.Info(msg)
	}
	return len(p), nil
}

// prime loads every endpoint, subscription and event type synchronously before ingest
// opens (an event accepted earlier could be routed to nothing, or escape its namespace's
// catalog); the controllers keep them current afterwards.
func prime(ctx context.Context, c client.Client, endpoints *watch.Endpoints, subscriptions *watch.Subscriptions, eventTypes *watch.EventTypes) error {
	var eps heraldv1.WebhookEndpointList
	if err := c.List(ctx, &eps); err != nil {
		return fmt.Errorf("listing endpoints: %w", err)
	}
	for i := range eps.Items {
		req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: eps.Items[i].Namespace, Name: eps.Items[i].Name}}
		if _, err := endpoints.Reconcile(ctx, req); err != nil {
			return err
		}
	}
	var subs heraldv1.WebhookSubscriptionList
	if err := c.List(ctx, &subs); err != nil {
		return fmt.Errorf("listing subscriptions: %w", err)
	}
	for i := range subs.Items {
		req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: subs.Items[i].Namespace, Name: subs.Items[i].Name}}
		if _, err := subscriptions.Reconcile(ctx, req); err != nil {
			return err
		}
	}
	var ets heraldv1.WebhookEventTypeList
	if err := c.List(ctx, &ets); err != nil {
		return fmt.Errorf("listing event types: %w", err)
	}
	for i := range ets.Items {
		req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ets.Items[i].Namespace, Name: ets.Items[i].Name}}
		if _, err := eventTypes.Reconcile(ctx, req); err != nil {
			return err
		}
	}
	return nil
}

func ctrlConfigSkipNameValidation() ctrlconfig.Controller {
	skip := true
	return ctrlconfig.Controller{SkipNameValidation: &skip}
}

// afterMigration holds the endpoints' requests (re-enable, replay) until the start-up
// migration has moved their shared state where this release reads it: a request
// handled before an upgrade must not look new.
type afterMigration struct {
	*outcome.Requests
	migrated <-chan struct{}
}

func (a afterMigration) Handle(ctx context.Context, k delivery.Key, ep *heraldv1.WebhookEndpoint) (bool, error) {
	select {
	case <-a.migrated:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	return a.Requests.Handle(ctx, k, ep)
}

// receiverDocs writes an endpoint's receiver documentation from the dispatcher's cache
// and its compiled catalog.
func receiverDocs(c client.Client, cat *catalog.Catalog) admin.Docs {
	return func(ctx context.Context, k delivery.Key) ([]byte, error) {
		var ep heraldv1.WebhookEndpoint
		if err := c.Get(ctx, types.NamespacedName{Namespace: k.Namespace, Name: k.Name}, &ep); err != nil {
			return nil, fmt.Errorf("reading endpoint: %w", err)
		}
		var subs heraldv1.WebhookSubscriptionList
		if err := c.List(ctx, &subs, client.InNamespace(k.Namespace)); err != nil {
			return nil, fmt.Errorf("listing subscriptions: %w", err)
		}
		return receiverdocs.Build(receiverdocs.Input{Endpoint: &ep, Subscriptions: subs.Items, Catalog: cat.Definitions(k.Namespace)})
	}
}
