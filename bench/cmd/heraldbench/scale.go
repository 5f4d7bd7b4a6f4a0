package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Scenario f: many endpoints on one dispatcher, as a platform team with many tenants
// has them. For each count in -idle-endpoints it registers that many endpoints that
// receive nothing (each subscribed to an event type of its own, behind a handful of
// receivers) and measures what they cost while idle, how soon one of them is served
// when an event comes, what one costs once busy, and how long a restarted dispatcher
// takes until it serves them. Then a, b and c run again with the largest count
// registered next to their endpoints.

// idleReceivers is how many receivers stand behind the idle endpoints.
const idleReceivers = 5

// sampleEndpoints is how many idle endpoints get one event each to time their service.
const sampleEndpoints = 20

// serveTimeout bounds the wait for the sample events.
const serveTimeout = 2 * time.Minute

// sampleEventBase numbers the sample events apart from the load's.
const sampleEventBase = 1 << 27

type scaleResult struct {
	Endpoints       int     `json:"endpoints"`
	RegisterSeconds float64 `json:"register_seconds"`
	// Resident memory after FreeOSMemory, with no endpoint and with every endpoint idle.
	RSSEmptyMiB           float64 `json:"rss_empty_mib"`
	RSSIdleMiB            float64 `json:"rss_idle_mib"`
	RSSPerIdleEndpointKiB float64 `json:"rss_per_idle_endpoint_kib"`
	HeapPerIdleEndpointB  float64 `json:"heap_per_idle_endpoint_bytes"`
	GoroutinesEmpty       uint64  `json:"goroutines_empty"`
	GoroutinesIdle        uint64  `json:"goroutines_idle"`
	// CPU of the idle dispatcher (scans, status, timers), percent of one core.
	IdleCPUPercent float64 `json:"idle_cpu_percent"`
	// First delivery to an idle endpoint: publish to receipt, over sampleEndpoints.
	FirstDelivery percentiles `json:"first_delivery_ms"`
	// What one endpoint costs once it is busy (consumer, workers), RSS after FreeOSMemory.
	RSSPerBusyEndpointKiB float64 `json:"rss_per_busy_endpoint_kib"`
	// Restart on the same store: process start to READY, to every endpoint registered,
	// and to the sample events (published after registration) all received.
	RestartReadySeconds    float64  `json:"restart_ready_seconds"`
	RestartRegisterSeconds float64  `json:"restart_registered_seconds"`
	RestartServedSeconds   float64  `json:"restart_served_seconds"` // -1: not within serveTimeout
	Notes                  []string `json:"notes,omitempty"`
}

func (o *options) idleCounts() ([]int, error) {
	var out []int
	for _, f := range strings.Split(o.IdleEndpoints, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-idle-endpoints: %q is not a positive count", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// idleSpecs are n endpoints behind rcs, each subscribed to an event type of its own.
func idleSpecs(n int, rcs []*receiver, maxInFlight int) []endpointSpec {
	specs := make([]endpointSpec, n)
	for i := range specs {
		name := fmt.Sprintf("idle-%05d", i)
		specs[i] = endpointSpec{Name: name, URL: rcs[i%len(rcs)].url, Timeout: 10 * time.Second,
			Schedule: retrySchedule, MaxInFlight: maxInFlight, Types: []string{"idle." + name}}
	}
	return specs
}

// register hands specs to the child in chunks (one request of 10,000 would be a few MB).
func register(c *child, specs []endpointSpec) error {
	for i := 0; i < len(specs); i += 1000 {
		if err := c.call("POST", "/endpoints", specs[i:min(i+1000, len(specs))], nil); err != nil {
			return err
		}
	}
	return nil
}

type memstats struct {
	HeapInuse  uint64 `json:"heapInuse"`
	Goroutines uint64 `json:"goroutines"`
}

// settled frees what the runtime can and reads RSS and the heap.
func settled(c *child) (rss int64, ms memstats) {
	time.Sleep(time.Second)
	_ = c.call("POST", "/gc", nil, nil)
	time.Sleep(200 * time.Millisecond)
	_ = c.call("GET", "/memstats", nil, &ms)
	return c.mem().RSS, ms
}

// serve publishes one event to each sampled idle endpoint and returns publish-to-receipt
// times; the receivers are those behind the specs.
func serve(lg *loadgen, specs []endpointSpec, rcs []*receiver, round int, timeout time.Duration) ([]time.Duration, error) {
	step := max(1, len(specs)/sampleEndpoints)
	type sample struct {
		rc   *receiver
		i    int64
		sent int64
	}
	var samples []sample
	for k := 0; k < sampleEndpoints && k*step < len(specs); k++ {
		j := k*step + step - 1 // the last of each stretch: the last registered is among them
		i := int64(sampleEventBase + round*sampleEndpoints + k)
		body := fmt.Appendf(nil, `{"id":"e%d","type":"idle.%s","data":{"n":%d}}`, i, specs[j].Name, k)
		sent := now()
		if !lg.post(lg.pub, body, false) {
			return nil, fmt.Errorf("publishing to %s: %s", specs[j].Name, lg.errMsg)
		}
		samples = append(samples, sample{rc: rcs[j%len(rcs)], i: i, sent: sent})
	}
	deadline := time.Now().Add(timeout)
	var out []time.Duration
	for _, s := range samples {
		for s.rc.got.get(s.i) == 0 {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("event e%d not delivered within %s", s.i, timeout)
			}
			time.Sleep(2 * time.Millisecond)
		}
		out = append(out, time.Duration(s.rc.got.get(s.i)-s.sent))
	}
	return out, nil
}

func (b *bench) scenarioF() (*scenarioResult, error) {
	counts, err := b.o.idleCounts()
	if err != nil {
		return nil, err
	}
	var rcs []*receiver
	for i := range idleReceivers {
		rc, err := startReceiver(fmt.Sprintf("idle-rc-%d", i), false)
		if err != nil {
			return nil, err
		}
		defer rc.close()
		rcs = append(rcs, rc)
	}
	r := &scenarioResult{Name: "f", Title: "endpoints at scale — idle endpoints registered on one dispatcher"}
	for round, n := range counts {
		logf("f: %d idle endpoints", n)
		sr, err := b.scale(n, rcs, round)
		if err != nil {
			return nil, fmt.Errorf("%d endpoints: %w", n, err)
		}
		r.Scale = append(r.Scale, sr)
		logf("f: %d endpoints: registered in %.1fs; RSS %.0f → %.0f MiB = %.1f KiB per idle endpoint (heap %.0f B); goroutines %d → %d; idle CPU %.1f %% of a core; first delivery to an idle endpoint p50 %.1f ms, max %.1f ms; %.0f KiB per busy endpoint; restart: ready %.1fs, registered %.1fs, served %.1fs",
			n, sr.RegisterSeconds, sr.RSSEmptyMiB, sr.RSSIdleMiB, sr.RSSPerIdleEndpointKiB, sr.HeapPerIdleEndpointB,
			sr.GoroutinesEmpty, sr.GoroutinesIdle, sr.IdleCPUPercent, sr.FirstDelivery.P50, sr.FirstDelivery.Max,
			sr.RSSPerBusyEndpointKiB, sr.RestartReadySeconds, sr.RestartRegisterSeconds, sr.RestartServedSeconds)
	}
	// a, b and c again, next to the most endpoints.
	most := counts[len(counts)-1]
	b.registered = idleSpecs(most, rcs, b.o.MaxInFlight)
	defer func() { b.registered = nil }()
	for _, step := range []struct {
		name string
		f    func() (*scenarioResult, error)
	}{{"a", b.scenarioA}, {"b", b.scenarioB}, {"c", b.scenarioC}} {
		if !b.o.has(step.name) {
			continue
		}
		s, err := step.f()
		if err != nil {
			return nil, fmt.Errorf("%s with %d endpoints registered: %w", step.name, most, err)
		}
		s.Title += fmt.Sprintf(", %d idle endpoints registered", most)
		if s.Deliveries > 0 {
			s.CPUSecondsPer1k = s.CPUSeconds / float64(s.Deliveries) * 1000
		}
		r.WithRegistered = append(r.WithRegistered, s)
	}
	// c against b with the same endpoints registered.
	var bN, cN *scenarioResult
	for _, s := range r.WithRegistered {
		switch s.Name {
		case "b":
			bN = s
		case "c":
			cN = s
		}
	}
	if bN != nil && cN != nil && bN.DeliveriesPerSecond > 0 {
		cN.HealthyVsB = 100 * cN.DeliveriesPerSecond / bN.DeliveriesPerSecond
		minEP := math.Inf(1)
		for _, e := range cN.PerEndpoint {
			if e.Healthy {
				minEP = min(minEP, e.PerSecond)
			}
		}
		cN.WorstHealthyVsB = 100 * minEP / (bN.DeliveriesPerSecond / 10)
	}
	return r, nil
}

// scale measures one count of idle endpoints on a fresh dispatcher, then restarts it.
func (b *bench) scale(n int, rcs []*receiver, round int) (*scaleResult, error) {
	sr := &scaleResult{Endpoints: n}
	c, err := startChild(fmt.Sprintf("f%d", n), "", b.o.Observer, b.o.DispatcherEnv, b.o.Verbosity)
	if err != nil {
		return nil, err
	}
	dir := c.dir
	defer func() { c.stop(); b.copyLog(c, fmt.Sprintf("f%d", n)); c.remove() }()
	lg := newLoadgen(c.ingest, 1, nil)
	defer lg.transport.CloseIdleConnections()

	rss0, ms0 := settled(c)
	specs := idleSpecs(n, rcs, b.o.MaxInFlight)
	t := time.Now()
	if err := register(c, specs); err != nil {
		return nil, err
	}
	sr.RegisterSeconds = time.Since(t).Seconds()
	// Let whatever starts with an endpoint start, then measure it idle.
	time.Sleep(3 * time.Second)
	rss1, ms1 := settled(c)
	sr.RSSEmptyMiB, sr.RSSIdleMiB = mib(rss0), mib(rss1)
	sr.RSSPerIdleEndpointKiB = float64(rss1-rss0) / float64(n) / 1024
	sr.HeapPerIdleEndpointB = (float64(ms1.HeapInuse) - float64(ms0.HeapInuse)) / float64(n)
	sr.GoroutinesEmpty, sr.GoroutinesIdle = ms0.Goroutines, ms1.Goroutines
	cpu0 := c.cpu()
	const idleFor = 10 * time.Second
	time.Sleep(idleFor)
	sr.IdleCPUPercent = 100 * (c.cpu() - cpu0).Seconds() / idleFor.Seconds()

	// What cannot be served in time is reported, not fatal: it is the finding.
	if lat, err := serve(lg, specs, rcs, 2*round, serveTimeout); err != nil {
		sr.Notes = append(sr.Notes, "first delivery to idle endpoints: "+err.Error())
	} else {
		sr.FirstDelivery = pct(lat)
		rss2, _ := settled(c)
		sr.RSSPerBusyEndpointKiB = float64(rss2-rss1) / float64(len(lat)) / 1024
	}

	// Restart on the same store.
	c.stop()
	t = time.Now()
	if c, err = startChildIn(dir, "", b.o.Observer, b.o.DispatcherEnv, b.o.Verbosity); err != nil {
		return nil, fmt.Errorf("restarting: %w", err)
	}
	sr.RestartReadySeconds = time.Since(t).Seconds()
	lg2 := newLoadgen(c.ingest, 1, nil)
	defer lg2.transport.CloseIdleConnections()
	if err := register(c, specs); err != nil {
		return nil, err
	}
	sr.RestartRegisterSeconds = time.Since(t).Seconds()
	if _, err := serve(lg2, specs, rcs, 2*round+1, serveTimeout); err != nil {
		sr.Notes = append(sr.Notes, "after the restart: "+err.Error())
		sr.RestartServedSeconds = -1 // not within serveTimeout
	} else {
		sr.RestartServedSeconds = time.Since(t).Seconds()
	}
	return sr, nil
}
