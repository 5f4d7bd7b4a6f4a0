package metrics

import (
	"errors"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/sender"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

var (
	billing = delivery.Key{Namespace: "shop", Name: "billing"}
	crm     = delivery.Key{Namespace: "shop", Name: "crm"}
)

// fakeSource answers the gauges from maps; the real Source (engine, store, shared
// state) is exercised in pipeline_test.go.
type fakeSource struct {
	mu       sync.Mutex
	holds    map[delivery.Key]string
	disabled map[delivery.Key]bool
	pending  map[delivery.Key]int64
	failing  map[delivery.Key]bool
	// delay slows every Pending, to make concurrent scrapes overlap.
	delay time.Duration
	reads atomic.Int64
}

func (f *fakeSource) Endpoints() map[delivery.Key]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.holds)
}

func (f *fakeSource) Disabled(k delivery.Key) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.disabled[k]
}

func (f *fakeSource) Pending(keys []delivery.Key) ([]int64, error) {
	f.reads.Add(1)
	time.Sleep(f.delay)
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]int64, len(keys))
	for i, k := range keys {
		if f.failing[k] {
			return nil, errors.New("stream info: timeout")
		}
		out[i] = f.pending[k]
	}
	return out, nil
}

func newMetrics(t *testing.T, src Source) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg, src)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m, reg
}

func attempt(k delivery.Key, code int, latency time.Duration, err error) delivery.Attempt {
	return delivery.Attempt{
		Endpoint: k,
		Delivery: &queue.Delivery{Namespace: k.Namespace, Endpoint: k.Name, EventID: "evt_1", DeliveryID: "dlv_1", Attempt: 1},
		Outcome:  sender.Outcome{StatusCode: code, Latency: latency, Err: err},
	}
}

// histogram returns the histogram of one series, failing when there is none.
func histogram(t *testing.T, g prometheus.Gatherer, name string, k delivery.Key) *dto.Histogram {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["namespace"] == k.Namespace && l["endpoint"] == k.Name {
				return m.GetHistogram()
			}
		}
	}
	t.Fatalf("no %s series for %s", name, k)
	return nil
}

func TestAttempted_CountsOutcomesAndResponseClassesPerEndpoint(t *testing.T) {
	m, reg := newMetrics(t, nil)
	fail := errors.New("receiver answered 503")
	m.Attempted(attempt(billing, 503, 40*time.Millisecond, fail))
	m.Attempted(attempt(billing, 0, 2*time.Second, errors.New("no answer within the 2s timeout")))
	m.Attempted(attempt(billing, 302, 10*time.Millisecond, errors.New("redirect")))
	m.Attempted(attempt(billing, 204, 20*time.Millisecond, nil))
	m.Attempted(attempt(crm, 404, 30*time.Millisecond, errors.New("receiver answered 404")))
	m.DeadLettered(crm, &queue.DeadLetter{Reason: heraldv1.DeadLetterRetriesExhausted})

	want := `
# HELP herald_deliveries_total Deliveries by outcome: delivered, failed (one per failed attempt), dead_lettered.
# TYPE herald_deliveries_total counter
herald_deliveries_total{endpoint="billing",namespace="shop",outcome="dead_lettered"} 0
herald_deliveries_total{endpoint="billing",namespace="shop",outcome="delivered"} 1
herald_deliveries_total{endpoint="billing",namespace="shop",outcome="failed"} 3
herald_deliveries_total{endpoint="crm",namespace="shop",outcome="dead_lettered"} 1
herald_deliveries_total{endpoint="crm",namespace="shop",outcome="delivered"} 0
herald_deliveries_total{endpoint="crm",namespace="shop",outcome="failed"} 1
# HELP herald_delivery_http_responses_total Delivery attempts by the class of the receiver's HTTP status; none when no answer arrived.
# TYPE herald_delivery_http_responses_total counter
herald_delivery_http_responses_total{code_class="2xx",endpoint="billing",namespace="shop"} 1
herald_delivery_http_responses_total{code_class="2xx",endpoint="crm",namespace="shop"} 0
herald_delivery_http_responses_total{code_class="3xx",endpoint="billing",namespace="shop"} 1
herald_delivery_http_responses_total{code_class="3xx",endpoint="crm",namespace="shop"} 0
herald_delivery_http_responses_total{code_class="4xx",endpoint="billing",namespace="shop"} 0
herald_delivery_http_responses_total{code_class="4xx",endpoint="crm",namespace="shop"} 1
herald_delivery_http_responses_total{code_class="5xx",endpoint="billing",namespace="shop"} 1
herald_delivery_http_responses_total{code_class="5xx",endpoint="crm",namespace="shop"} 0
herald_delivery_http_responses_total{code_class="none",endpoint="billing",namespace="shop"} 1
herald_delivery_http_responses_total{code_class="none",endpoint="crm",namespace="shop"} 0
herald_delivery_http_responses_total{code_class="other",endpoint="billing",namespace="shop"} 0
herald_delivery_http_responses_total{code_class="other",endpoint="crm",namespace="shop"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "herald_deliveries_total", "herald_delivery_http_responses_total"); err != nil {
		t.Error(err)
	}

	h := histogram(t, reg, "herald_delivery_attempt_duration_seconds", billing)
	if h.GetSampleCount() != 4 {
		t.Errorf("billing attempt durations: %d samples, want 4", h.GetSampleCount())
	}
	if got, want := h.GetSampleSum(), 2.07; got < want-1e-9 || got > want+1e-9 {
		t.Errorf("billing attempt durations sum to %v s, want %v", got, want)
	}
	// 10, 20 and 40ms are under 50ms; the 2s timeout is not.
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == .05 && b.GetCumulativeCount() != 3 {
			t.Errorf("le=0.05 holds %d attempts, want 3", b.GetCumulativeCount())
		}
	}
}

func TestAttempted_IngestToDeliveryOnlyForSuccessWithAcceptanceTime(t *testing.T) {
	m, reg := newMetrics(t, nil)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	m.c.now = func() time.Time { return now }

	ok := attempt(billing, 200, 5*time.Millisecond, nil)
	ok.Delivery.AcceptedAt = now.Add(-90 * time.Second)
	m.Attempted(ok)
	failed := attempt(billing, 500, 5*time.Millisecond, errors.New("receiver answered 500"))
	failed.Delivery.AcceptedAt = now.Add(-time.Hour)
	m.Attempted(failed)
	// Deliveries stored before AcceptedAt existed carry none; a latency from the
	// year 1 would poison every quantile.
	m.Attempted(attempt(billing, 200, 5*time.Millisecond, nil))

	h := histogram(t, reg, "herald_ingest_to_delivery_seconds", billing)
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 90 {
		t.Errorf("ingest to delivery: %d samples summing to %v s, want one of 90 s", h.GetSampleCount(), h.GetSampleSum())
	}

	// Accepted by a replica whose clock runs ahead: counted as immediate.
	skewed := attempt(crm, 200, 5*time.Millisecond, nil)
	skewed.Delivery.AcceptedAt = now.Add(2 * time.Second)
	m.Attempted(skewed)
	if h := histogram(t, reg, "herald_ingest_to_delivery_seconds", crm); h.GetSampleCount() != 1 || h.GetSampleSum() != 0 {
		t.Errorf("skewed clock: %d samples summing to %v s, want one of 0 s", h.GetSampleCount(), h.GetSampleSum())
	}
}

func TestAttempted_RequestNeverSentHasNoAttemptDuration(t *testing.T) {
	m, reg := newMetrics(t, nil)
	m.Attempted(attempt(billing, 0, 0, errors.New("building request: bad url")))
	if n := histogram(t, reg, "herald_delivery_attempt_duration_seconds", billing).GetSampleCount(); n != 0 {
		t.Errorf("%d attempt durations recorded for a request never sent", n)
	}
	if got := testutil.ToFloat64(m.c.deliveries.WithLabelValues("shop", "billing", OutcomeFailed)); got != 1 {
		t.Errorf("failed = %v, want 1: it is still a failed attempt", got)
	}
}

func TestForget_DeletesTheEndpointsSeriesAndCountsAfreshWhenItReturns(t *testing.T) {
	m, reg := newMetrics(t, nil)
	m.Attempted(attempt(billing, 200, time.Millisecond, nil))
	m.Attempted(attempt(crm, 200, time.Millisecond, nil))
	m.DeadLettered(billing, &queue.DeadLetter{})

	m.Forget(billing)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "endpoint" && l.GetValue() == "billing" {
					t.Errorf("%s still has a series for the forgotten endpoint", mf.GetName())
				}
			}
		}
	}
	if got := testutil.ToFloat64(m.c.deliveries.WithLabelValues("shop", "crm", OutcomeDelivered)); got != 1 {
		t.Errorf("crm delivered = %v after forgetting billing, want 1", got)
	}

	// An endpoint of the same name created later starts from zero, and its counts
	// reach the exported series (not children the vector no longer holds).
	m.Attempted(attempt(billing, 200, time.Millisecond, nil))
	m.Attempted(attempt(billing, 200, time.Millisecond, nil))
	if got := testutil.ToFloat64(m.c.deliveries.WithLabelValues("shop", "billing", OutcomeDelivered)); got != 2 {
		t.Errorf("billing delivered = %v after it came back, want 2", got)
	}
	if got := testutil.ToFloat64(m.c.deliveries.WithLabelValues("shop", "billing", OutcomeDeadLettered)); got != 0 {
		t.Errorf("billing dead_lettered = %v after it came back, want 0", got)
	}
}

// TestForget_ConcurrentWithAttempts is for the race detector (go test -race): it cannot
// force the one interleaving mu guards against (Forget between the creation of an
// endpoint's children and their caching), only exercise both paths at once.
func TestForget_ConcurrentWithAttempts(t *testing.T) {
	m, _ := newMetrics(t, nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 2000 {
				m.Attempted(attempt(billing, 200, time.Millisecond, nil))
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			m.Forget(billing)
		}
	})
	wg.Wait()
	// Whatever the interleaving, the next attempt must be visible in the exported
	// series: the cache may not hold children that Forget removed.
	before := testutil.ToFloat64(m.c.deliveries.WithLabelValues("shop", "billing", OutcomeDelivered))
	m.Attempted(attempt(billing, 200, time.Millisecond, nil))
	if after := testutil.ToFloat64(m.c.deliveries.WithLabelValues("shop", "billing", OutcomeDelivered)); after != before+1 {
		t.Errorf("delivered went from %v to %v after one more delivery", before, after)
	}
}

func TestNew_SecondDispatcherOnOneRegistrySharesCollectorsAndReportsEndpointsOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	first := &fakeSource{holds: map[delivery.Key]string{billing: ""}, pending: map[delivery.Key]int64{billing: 4}}
	second := &fakeSource{holds: map[delivery.Key]string{billing: "", crm: heraldv1.ReasonSuspended}, pending: map[delivery.Key]int64{billing: 4, crm: 2}}
	m1, err := New(reg, first)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := New(reg, second)
	if err != nil {
		t.Fatalf("second New on the same registry: %v", err)
	}
	m1.Attempted(attempt(billing, 200, time.Millisecond, nil))
	m2.Attempted(attempt(billing, 200, time.Millisecond, nil))

	// Gather fails on a series reported twice, so billing must come from one source.
	want := `
# HELP herald_deliveries_total Deliveries by outcome: delivered, failed (one per failed attempt), dead_lettered.
# TYPE herald_deliveries_total counter
herald_deliveries_total{endpoint="billing",namespace="shop",outcome="dead_lettered"} 0
herald_deliveries_total{endpoint="billing",namespace="shop",outcome="delivered"} 2
herald_deliveries_total{endpoint="billing",namespace="shop",outcome="failed"} 0
# HELP herald_endpoints Endpoints served, by state: flowing, or held (suspended, disabled, misconfigured).
# TYPE herald_endpoints gauge
herald_endpoints{state="flowing"} 1
herald_endpoints{state="held"} 1
# HELP herald_queue_pending_deliveries Deliveries stored for an endpoint and not yet settled (delivered or dead-lettered).
# TYPE herald_queue_pending_deliveries gauge
herald_queue_pending_deliveries{endpoint="billing",namespace="shop"} 4
herald_queue_pending_deliveries{endpoint="crm",namespace="shop"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "herald_deliveries_total", "herald_endpoints", "herald_queue_pending_deliveries"); err != nil {
		t.Error(err)
	}

	// A stopped dispatcher's endpoints go with it; the counters stay.
	m2.Close()
	want = `
# HELP herald_endpoints Endpoints served, by state: flowing, or held (suspended, disabled, misconfigured).
# TYPE herald_endpoints gauge
herald_endpoints{state="flowing"} 1
herald_endpoints{state="held"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "herald_endpoints"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(m1.c.deliveries.WithLabelValues("shop", "billing", OutcomeDelivered)); got != 2 {
		t.Errorf("delivered = %v after closing the second dispatcher, want 2", got)
	}
}

func TestNew_RefusesNamesTakenByAnotherCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := newCollectors()
	// Someone else's collector describing exactly our metrics is not ours to reuse.
	if err := reg.Register(foreign{c}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg, nil); err == nil {
		t.Fatal("New succeeded on a registry whose names belong to another collector")
	}
}

type foreign struct{ prometheus.Collector }

func TestState_GaugesFollowHoldsAndDisabledState(t *testing.T) {
	var (
		flowing   = delivery.Key{Namespace: "shop", Name: "flowing"}
		suspended = delivery.Key{Namespace: "shop", Name: "suspended"}
		gated     = delivery.Key{Namespace: "shop", Name: "gated"}
		disabled  = delivery.Key{Namespace: "shop", Name: "disabled"}
		noSecret  = delivery.Key{Namespace: "ops", Name: "nosecret"}
		broken    = delivery.Key{Namespace: "ops", Name: "broken"}
	)
	src := &fakeSource{
		holds: map[delivery.Key]string{
			flowing: "", suspended: heraldv1.ReasonSuspended, gated: "",
			disabled: heraldv1.ReasonDisabled, noSecret: heraldv1.ReasonSecretNotFound,
		},
		// gated: disabled in the shared state, configuration not updated yet.
		disabled: map[delivery.Key]bool{gated: true, disabled: true},
		pending:  map[delivery.Key]int64{flowing: 3, suspended: 7, gated: 2, disabled: 1, noSecret: 0},
	}
	_, reg := newMetrics(t, src)
	// A second dispatcher in the process whose store cannot be read: its endpoint's
	// queue gauges are missing and counted, the first one's are all there.
	if _, err := New(reg, &fakeSource{holds: map[delivery.Key]string{broken: ""}, failing: map[delivery.Key]bool{broken: true}}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP herald_endpoints Endpoints served, by state: flowing, or held (suspended, disabled, misconfigured).
# TYPE herald_endpoints gauge
herald_endpoints{state="flowing"} 2
herald_endpoints{state="held"} 4
# HELP herald_endpoints_disabled Endpoints auto-disabled after consecutive failures.
# TYPE herald_endpoints_disabled gauge
herald_endpoints_disabled 2
# HELP herald_held_deliveries Pending deliveries of an endpoint that is held, by hold reason (Suspended, Disabled, SecretNotFound, ...).
# TYPE herald_held_deliveries gauge
herald_held_deliveries{endpoint="disabled",namespace="shop",reason="Disabled"} 1
herald_held_deliveries{endpoint="gated",namespace="shop",reason="Disabled"} 2
herald_held_deliveries{endpoint="nosecret",namespace="ops",reason="SecretNotFound"} 0
herald_held_deliveries{endpoint="suspended",namespace="shop",reason="Suspended"} 7
# HELP herald_queue_pending_deliveries Deliveries stored for an endpoint and not yet settled (delivered or dead-lettered).
# TYPE herald_queue_pending_deliveries gauge
herald_queue_pending_deliveries{endpoint="disabled",namespace="shop"} 1
herald_queue_pending_deliveries{endpoint="flowing",namespace="shop"} 3
herald_queue_pending_deliveries{endpoint="gated",namespace="shop"} 2
herald_queue_pending_deliveries{endpoint="nosecret",namespace="ops"} 0
herald_queue_pending_deliveries{endpoint="suspended",namespace="shop"} 7
# HELP herald_queue_pending_read_errors_total Reads of an endpoint's pending deliveries that failed; its queue gauges are missing from that scrape.
# TYPE herald_queue_pending_read_errors_total counter
herald_queue_pending_read_errors_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"herald_endpoints", "herald_endpoints_disabled", "herald_held_deliveries",
		"herald_queue_pending_deliveries", "herald_queue_pending_read_errors_total"); err != nil {
		t.Error(err)
	}
}

func TestState_ReadsTheStoreOncePerTTLWhateverTheScrapes(t *testing.T) {
	src := &fakeSource{
		holds:   map[delivery.Key]string{billing: "", crm: ""},
		pending: map[delivery.Key]int64{billing: 1, crm: 1},
		delay:   20 * time.Millisecond,
	}
	m, reg := newMetrics(t, src)
	var mu sync.Mutex
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	m.c.state.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	// Eight scrapes at once share one reading.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := reg.Gather(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := src.reads.Load(); n != 1 {
		t.Fatalf("8 concurrent scrapes read Pending %d times, want 1 (one reading for every endpoint)", n)
	}

	advance(stateTTL - time.Millisecond)
	src.mu.Lock()
	src.pending[billing] = 9
	src.mu.Unlock()
	if got := gauge(t, reg, "herald_queue_pending_deliveries", billing); got != 1 || src.reads.Load() != 1 {
		t.Errorf("within the TTL: pending %v after %d reads, want the cached 1 after 1", got, src.reads.Load())
	}
	advance(time.Millisecond)
	if got := gauge(t, reg, "herald_queue_pending_deliveries", billing); got != 9 || src.reads.Load() != 2 {
		t.Errorf("after the TTL: pending %v after %d reads, want a fresh 9 after 2", got, src.reads.Load())
	}

	// A deleted endpoint's gauges go at once, not when the cache expires.
	src.mu.Lock()
	delete(src.holds, crm)
	src.mu.Unlock()
	m.Forget(crm)
	if n := testutil.CollectAndCount(m.c.state, "herald_queue_pending_deliveries"); n != 1 {
		t.Errorf("%d pending series right after Forget, want 1", n)
	}
}

func gauge(t *testing.T, g prometheus.Gatherer, name string, k delivery.Key) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["namespace"] == k.Namespace && l["endpoint"] == k.Name {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no %s series for %s", name, k)
	return 0
}

// histogramFamily returns the histogram of a metric without labels.
func histogramFamily(t *testing.T, g prometheus.Gatherer, name string) *dto.Histogram {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetHistogram()
		}
	}
	t.Fatalf("no single %s series", name)
	return nil
}

func TestState_NewestDispatcherAnswersForAnEndpointBothList(t *testing.T) {
	reg := prometheus.NewRegistry()
	// A stopped dispatcher that was not closed still lists its endpoints, but its
	// store is gone.
	stopped := &fakeSource{holds: map[delivery.Key]string{billing: ""}, failing: map[delivery.Key]bool{billing: true}}
	running := &fakeSource{holds: map[delivery.Key]string{billing: ""}, pending: map[delivery.Key]int64{billing: 5}}
	for _, src := range []Source{stopped, running} {
		if _, err := New(reg, src); err != nil {
			t.Fatal(err)
		}
	}
	if got := gauge(t, reg, "herald_queue_pending_deliveries", billing); got != 5 {
		t.Errorf("pending = %v, want 5 from the running dispatcher", got)
	}
}
