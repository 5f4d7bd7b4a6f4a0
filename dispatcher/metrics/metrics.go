// Package metrics exposes the dispatcher's Prometheus metrics: what happened to
// deliveries (an observer of the delivery engine), what is waiting in the queue (read at
// scrape time), and what the ingest API answered (an HTTP middleware).
//
// Series are labelled by endpoint (namespace, endpoint) at most, never by event or
// delivery id, so their number grows with the endpoints a cluster declares and not with
// its traffic.
//
// Delivery outcomes (the engine's observer):
//
//	herald_deliveries_total{namespace,endpoint,outcome}
//	    outcome="delivered"      a delivery succeeded (2xx)
//	    outcome="failed"         an attempt failed; a retry or a dead letter follows
//	    outcome="dead_lettered"  a delivery was given up on (retries exhausted, or held
//	                             longer or in greater numbers than the limits allow)
//	herald_delivery_attempt_duration_seconds{namespace,endpoint}   histogram, per attempt
//	herald_delivery_http_responses_total{namespace,endpoint,code_class}
//	    code_class 2xx|3xx|4xx|5xx, "none" when no answer arrived (timeout, refused
//	    connection), "other" for a status outside 200-599
//	herald_ingest_to_delivery_seconds{namespace,endpoint}
//	    histogram, from ingest's acceptance of the event to its successful delivery,
//	    retries and replays included
//
// Dead letters are counted once, as herald_deliveries_total{outcome="dead_lettered"};
// there is no separate herald_dead_letters_total, so the ratio of dead-lettered to
// delivered reads from one metric and the two can never disagree.
//
// Queue and endpoint state (read from the Source when scraped, cached for a few seconds):
//
//	herald_queue_pending_deliveries{namespace,endpoint}   stored, not yet settled
//	herald_held_deliveries{namespace,endpoint,reason}     the same, for held endpoints;
//	                                                      reason is the hold reason
//	herald_endpoints{state}                               state flowing|held
//	herald_endpoints_disabled                             auto-disabled endpoints
//	herald_endpoint_state{namespace,endpoint,state}       1 for an endpoint that is not
//	                                                      Healthy: Throttled, Failing
//	                                                      or Disabled (status.state)
//	herald_endpoint_paced_requests_per_second{namespace,endpoint}
//	                                                      a Throttled endpoint's current
//	                                                      rate on this replica
//	herald_queue_pending_read_errors_total                reads of Pending that failed
//
// The event catalog and operational events: see catalog.go.
//
// Ingest API (the middleware):
//
//	herald_ingest_requests_total{code}
//	herald_ingest_request_duration_seconds
//
// With several dispatcher replicas each counts its own attempts (sum them), while the
// queue gauges read the shared store and are the same on every replica (take max).
package metrics

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
)

// Source answers the gauges' questions at scrape time.
type Source interface {
	// Endpoints lists the endpoints this dispatcher serves, with their hold reason
	// ("" when deliveries flow).
	Endpoints() map[delivery.Key]string
	// Disabled reports whether an endpoint is auto-disabled (shared state).
	Disabled(k delivery.Key) bool
	// Pending is how many deliveries of each endpoint are stored and not settled, in
	// the order of keys, read at once.
	Pending(keys []delivery.Key) ([]int64, error)
}

// StateSource is what a Source may also answer: an endpoint's state (status.state) and
// its pacing on this replica, for herald_endpoint_state.
type StateSource interface {
	State(k delivery.Key) (state string, pace delivery.Pace)
}

// Label values of herald_deliveries_total's outcome.
const (
	OutcomeDelivered    = "delivered"
	OutcomeFailed       = "failed"
	OutcomeDeadLettered = "dead_lettered"
)

// Code classes of herald_delivery_http_responses_total, indexed by codeClass.
var codeClasses = [...]string{"none", "2xx", "3xx", "4xx", "5xx", "other"}

func codeClass(code int) int {
	switch {
	case code == 0:
		return 0
	case code >= 200 && code < 600:
		return code/100 - 1
	default:
		return 5
	}
}

var (
	// An attempt is bounded by the endpoint's timeout (30s by default, longer if
	// configured), so the buckets end past it.
	attemptBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	// Ingest to delivery spans the retry schedule (1m 5m 30m 2h 8h by default): the
	// buckets reach from a first-attempt success to the end of the default schedule.
	ingestToDeliveryBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60,
		120, 300, 600, 1800, 3600, 7200, 14400, 28800, 43200}
	ingestBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

// Metrics is the dispatcher's view of its collectors: a delivery.Observer, the ingest
// middleware, and a Source for the gauges. It is safe for concurrent use.
type Metrics struct {
	c   *collectors
	src Source
}

// New registers the dispatcher's collectors with reg and answers the gauges from src
// (nil leaves the gauges empty).
//
// Several dispatchers may share one registry (tests start several in one process,
// all on controller-runtime's global registry). The first New registers the
// collectors; later ones reuse them (counters then sum over the process's
// dispatchers) and add their Source to the gauges until Close. An endpoint served by
// several of them is reported once.
func New(reg prometheus.Registerer, src Source) (*Metrics, error) {
	c := newCollectors()
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("registering dispatcher metrics: %w", err)
		}
		existing, ok := are.ExistingCollector.(*collectors)
		if !ok {
			return nil, fmt.Errorf("registering dispatcher metrics: the names are taken by a %T", are.ExistingCollector)
		}
		c = existing
	}
	m := &Metrics{c: c, src: src}
	if src != nil {
		c.state.add(m)
	}
	return m, nil
}

// Close stops answering the gauges from this Metrics' Source, whose store may be
// closed once the dispatcher stops. The counters stay registered and keep their values.
func (m *Metrics) Close() {
	if m.src != nil {
		m.c.state.remove(m)
	}
}

// Attempted implements delivery.Observer.
func (m *Metrics) Attempted(a delivery.Attempt) {
	s := m.c.endpoint(a.Endpoint)
	// Zero latency means the request was never sent (it could not be built): no
	// sender latency to report.
	if a.Outcome.Latency > 0 {
		s.attempt.Observe(a.Outcome.Latency.Seconds())
	}
	s.codes[codeClass(a.Outcome.StatusCode)].Inc()
	if !a.Outcome.OK() {
		s.failed.Inc()
		return
	}
	s.delivered.Inc()
	if a.Delivery != nil && !a.Delivery.AcceptedAt.IsZero() {
		// Another replica's clock stamped AcceptedAt; a little skew must not make a
		// negative latency.
		s.ingestToDelivery.Observe(max(m.c.now().Sub(a.Delivery.AcceptedAt), 0).Seconds())
	}
}

// DeadLettered implements delivery.Observer.
func (m *Metrics) DeadLettered(k delivery.Key, _ *queue.DeadLetter) {
	m.c.endpoint(k).deadLettered.Inc()
}

// FilterFailed counts a subscription filter that failed to evaluate on an event. The
// namespace is the only label: subscriptions are many, and status.filterErrors and the
// FilterFailed Event name the subscription.
func (m *Metrics) FilterFailed(namespace string) { m.c.filterErrors.WithLabelValues(namespace).Inc() }

// Forget deletes every series of a deleted endpoint, so that a cluster whose
// endpoints come and go does not accumulate them. Call it after the engine has
// stopped the endpoint's deliveries: an attempt that was already on the wire and
// succeeds afterwards still counts, and brings back that endpoint's series.
func (m *Metrics) Forget(k delivery.Key) { m.c.forget(k) }

// collectors are all the dispatcher's metrics, registered as one Collector so that a
// second New finds every piece of them (and the per-endpoint cache that belongs to
// them) through AlreadyRegisteredError.
type collectors struct {
	deliveries       *prometheus.CounterVec
	attemptDuration  *prometheus.HistogramVec
	ingestToDelivery *prometheus.HistogramVec
	responses        *prometheus.CounterVec
	ingestRequests   *prometheus.CounterVec
	ingestDuration   prometheus.Histogram
	filterErrors     *prometheus.CounterVec
	catalog          *catalogCollectors
	state            *stateCollector

	now func() time.Time

	// endpoints caches each endpoint's children (delivery.Key → *endpointSeries) so
	// that an attempt costs a lock-free lookup and atomic adds, not a label hash and
	// vector lookup per series. Writers (a new endpoint, Forget) hold mu, so that
	// Forget cannot interleave with the creation of children and leave the cache
	// holding children the vectors no longer export.
	mu        sync.Mutex
	endpoints sync.Map

	codesMu sync.RWMutex
	codes   map[int]prometheus.Counter
}

type endpointSeries struct {
	delivered, failed, deadLettered prometheus.Counter
	attempt, ingestToDelivery       prometheus.Observer
	codes                           [len(codeClasses)]prometheus.Counter
}

var endpointLabels = []string{"namespace", "endpoint"}

func newCollectors() *collectors {
	c := &collectors{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_deliveries_total",
			Help: "Deliveries by outcome: delivered, failed (one per failed attempt), dead_lettered.",
		}, []string{"namespace", "endpoint", "outcome"}),
		attemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_delivery_attempt_duration_seconds",
			Help:    "Duration of delivery attempts, from sending the request to reading the answer.",
			Buckets: attemptBuckets,
		}, endpointLabels),
		ingestToDelivery: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_ingest_to_delivery_seconds",
			Help:    "Time from the ingest API accepting an event to its successful delivery, retries included.",
			Buckets: ingestToDeliveryBuckets,
		}, endpointLabels),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_delivery_http_responses_total",
			Help: "Delivery attempts by the class of the receiver's HTTP status; none when no answer arrived.",
		}, []string{"namespace", "endpoint", "code_class"}),
		ingestRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ingest_requests_total",
			Help: "Requests to the ingest API by HTTP status code.",
		}, []string{"code"}),
		ingestDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_ingest_request_duration_seconds",
			Help:    "Duration of requests to the ingest API.",
			Buckets: ingestBuckets,
		}),
		filterErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_filter_errors_total",
			Help: "Events on which a subscription's CEL filter failed to evaluate (the event is not routed through that subscription).",
		}, []string{"namespace"}),
		catalog: newCatalogCollectors(),
		now:     time.Now,
		codes:   map[int]prometheus.Counter{},
	}
	c.state = newStateCollector()
	return c
}

// Describe implements prometheus.Collector.
func (c *collectors) Describe(ch chan<- *prometheus.Desc) {
	c.deliveries.Describe(ch)
	c.attemptDuration.Describe(ch)
	c.ingestToDelivery.Describe(ch)
	c.responses.Describe(ch)
	c.ingestRequests.Describe(ch)
	c.ingestDuration.Describe(ch)
	c.filterErrors.Describe(ch)
	c.catalog.Describe(ch)
	c.state.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *collectors) Collect(ch chan<- prometheus.Metric) {
	c.state.Collect(ch)
	c.deliveries.Collect(ch)
	c.attemptDuration.Collect(ch)
	c.ingestToDelivery.Collect(ch)
	c.responses.Collect(ch)
	c.ingestRequests.Collect(ch)
	c.ingestDuration.Collect(ch)
	c.filterErrors.Collect(ch)
	c.catalog.Collect(ch)
}

func (c *collectors) endpoint(k delivery.Key) *endpointSeries {
	if s, ok := c.endpoints.Load(k); ok {
		return s.(*endpointSeries)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.endpoints.Load(k); ok {
		return s.(*endpointSeries)
	}
	// Every series of the endpoint starts at zero, so that rate() and alerts on
	// failures see the first one rather than a series appearing from nowhere.
	s := &endpointSeries{
		delivered:        c.deliveries.WithLabelValues(k.Namespace, k.Name, OutcomeDelivered),
		failed:           c.deliveries.WithLabelValues(k.Namespace, k.Name, OutcomeFailed),
		deadLettered:     c.deliveries.WithLabelValues(k.Namespace, k.Name, OutcomeDeadLettered),
		attempt:          c.attemptDuration.WithLabelValues(k.Namespace, k.Name),
		ingestToDelivery: c.ingestToDelivery.WithLabelValues(k.Namespace, k.Name),
	}
	for i, class := range codeClasses {
		s.codes[i] = c.responses.WithLabelValues(k.Namespace, k.Name, class)
	}
	c.endpoints.Store(k, s)
	return s
}

func (c *collectors) forget(k delivery.Key) {
	c.mu.Lock()
	c.endpoints.Delete(k)
	l := prometheus.Labels{"namespace": k.Namespace, "endpoint": k.Name}
	c.deliveries.DeletePartialMatch(l)
	c.attemptDuration.DeletePartialMatch(l)
	c.ingestToDelivery.DeletePartialMatch(l)
	c.responses.DeletePartialMatch(l)
	c.mu.Unlock()
	// Without this the deleted endpoint's gauges would linger until the cache expires.
	c.state.invalidate()
}
