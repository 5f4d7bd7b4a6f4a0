package metrics

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/delivery"
)

const (
	// stateTTL is how long one reading of the queue serves scrapes: several
	// Prometheus servers, or one scraping often, must not multiply the reads.
	stateTTL = 5 * time.Second
)

// stateCollector reads queue and endpoint state from the Sources when scraped, so that
// nothing polls the store when nobody scrapes.
type stateCollector struct {
	pending   *prometheus.Desc
	held      *prometheus.Desc
	endpoints *prometheus.Desc
	disabled  *prometheus.Desc
	state     *prometheus.Desc
	paced     *prometheus.Desc
	errors    prometheus.Counter

	ttl time.Duration
	now func() time.Time

	srcMu   sync.Mutex
	sources []*Metrics // newest last

	// mu is held for a whole reading: concurrent scrapes wait for one reading instead
	// of each making their own.
	mu     sync.Mutex
	cached []prometheus.Metric
	readAt time.Time
	// stale is outside mu so that marking the reading out of date (Forget, from the
	// watch) never waits for a reading in progress.
	stale atomic.Bool
}

func newStateCollector() *stateCollector {
	s := &stateCollector{
		pending: prometheus.NewDesc("herald_queue_pending_deliveries",
			"Deliveries stored for an endpoint and not yet settled (delivered or dead-lettered).",
			endpointLabels, nil),
		held: prometheus.NewDesc("herald_held_deliveries",
			"Pending deliveries of an endpoint that is held, by hold reason (Suspended, Disabled, SecretNotFound, ...).",
			[]string{"namespace", "endpoint", "reason"}, nil),
		endpoints: prometheus.NewDesc("herald_endpoints",
			"Endpoints served, by state: flowing, or held (suspended, disabled, misconfigured).",
			[]string{"state"}, nil),
		disabled: prometheus.NewDesc("herald_endpoints_disabled",
			"Endpoints auto-disabled after consecutive failures.", nil, nil),
		state: prometheus.NewDesc("herald_endpoint_state",
			"1 for an endpoint whose receiver is not Healthy, labelled with its state (Throttled, Failing, Disabled; status.state); healthy endpoints have no series.",
			[]string{"namespace", "endpoint", "state"}, nil),
		paced: prometheus.NewDesc("herald_endpoint_paced_requests_per_second",
			"The rate this replica holds a Throttled endpoint to while its receiver struggles (status.throttle).",
			endpointLabels, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_queue_pending_read_errors_total",
			Help: "Reads of an endpoint's pending deliveries that failed; its queue gauges are missing from that scrape.",
		}),
		ttl: stateTTL,
		now: time.Now,
	}
	s.stale.Store(true)
	return s
}

func (s *stateCollector) add(m *Metrics) {
	s.srcMu.Lock()
	s.sources = append(s.sources, m)
	s.srcMu.Unlock()
	s.invalidate()
}

func (s *stateCollector) remove(m *Metrics) {
	s.srcMu.Lock()
	s.sources = slices.DeleteFunc(s.sources, func(x *Metrics) bool { return x == m })
	s.srcMu.Unlock()
	s.invalidate()
}

func (s *stateCollector) invalidate() { s.stale.Store(true) }

// Describe implements prometheus.Collector.
func (s *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.pending
	ch <- s.held
	ch <- s.endpoints
	ch <- s.disabled
	ch <- s.state
	ch <- s.paced
	s.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	if s.stale.Swap(false) || s.now().Sub(s.readAt) >= s.ttl {
		s.cached = s.read()
		s.readAt = s.now()
	}
	cached := s.cached
	s.mu.Unlock()
	for _, m := range cached {
		ch <- m
	}
	// After the reading, so that this scrape already shows its errors.
	s.errors.Collect(ch)
}

type endpointState struct {
	key     delivery.Key
	src     Source
	reason  string // why deliveries are held; "" when they flow
	pending int64
	err     error
}

func (s *stateCollector) read() []prometheus.Metric {
	s.srcMu.Lock()
	sources := slices.Clone(s.sources)
	s.srcMu.Unlock()

	var (
		eps               []endpointState
		seen              = map[delivery.Key]bool{}
		flowing, disabled int
	)
	// Newest first: in a process that ran several dispatchers, a stopped one that was
	// not closed still lists its endpoints but can no longer read its store.
	for _, m := range slices.Backward(sources) {
		for k, hold := range m.src.Endpoints() {
			if seen[k] {
				continue
			}
			seen[k] = true
			off := m.src.Disabled(k) || hold == heraldv1.ReasonDisabled
			if off {
				disabled++
			}
			reason := hold
			if reason == "" && off {
				// Disabled in the shared state before the configuration says so: the
				// engine's gate holds the deliveries already.
				reason = heraldv1.ReasonDisabled
			}
			if reason == "" {
				flowing++
			}
			eps = append(eps, endpointState{key: k, src: m.src, reason: reason})
		}
	}
	readPending(eps)

	out := make([]prometheus.Metric, 0, 3+2*len(eps))
	out = append(out,
		prometheus.MustNewConstMetric(s.endpoints, prometheus.GaugeValue, float64(flowing), "flowing"),
		prometheus.MustNewConstMetric(s.endpoints, prometheus.GaugeValue, float64(len(eps)-flowing), "held"),
		prometheus.MustNewConstMetric(s.disabled, prometheus.GaugeValue, float64(disabled)),
	)
	for _, e := range eps {
		if e.err != nil {
			// A missing series, not a failed scrape: one endpoint's read must not
			// take every other metric of the process down with it.
			s.errors.Inc()
			continue
		}
		out = append(out, prometheus.MustNewConstMetric(s.pending, prometheus.GaugeValue, float64(e.pending), e.key.Namespace, e.key.Name))
		if ss, ok := e.src.(StateSource); ok {
			if state, pace := ss.State(e.key); state != "" && state != heraldv1.DeliveryHealthy {
				out = append(out, prometheus.MustNewConstMetric(s.state, prometheus.GaugeValue, 1, e.key.Namespace, e.key.Name, state))
				if pace.Throttled {
					out = append(out, prometheus.MustNewConstMetric(s.paced, prometheus.GaugeValue, pace.RequestsPerSecond, e.key.Namespace, e.key.Name))
				}
			}
		}
		if e.reason != "" {
			out = append(out, prometheus.MustNewConstMetric(s.held, prometheus.GaugeValue, float64(e.pending), e.key.Namespace, e.key.Name, e.reason))
		}
	}
	return out
}

// readPending reads the pending counts of every endpoint, one request per source
// whatever the number of endpoints (it was one per endpoint: 10,000 endpoints made a
// scrape take longer than Prometheus waits).
func readPending(eps []endpointState) {
	bySrc := map[Source][]int{}
	var order []Source
	for i := range eps {
		if _, ok := bySrc[eps[i].src]; !ok {
			order = append(order, eps[i].src)
		}
		bySrc[eps[i].src] = append(bySrc[eps[i].src], i)
	}
	for _, src := range order {
		idx := bySrc[src]
		keys := make([]delivery.Key, len(idx))
		for j, i := range idx {
			keys[j] = eps[i].key
		}
		counts, err := src.Pending(keys)
		for j, i := range idx {
			if err != nil {
				eps[i].err = err
				continue
			}
			eps[i].pending = counts[j]
		}
	}
}
