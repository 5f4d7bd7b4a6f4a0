package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// setup is one scenario's processes: receivers, a fresh dispatcher child, a load
// generator.
type setup struct {
	b     *bench
	name  string
	child *child
	// more are the other dispatcher replicas and nats the external NATS cluster, in
	// scale-out runs; their CPU counts with the child's.
	more    []*child
	nats    *natsCluster
	healthy []*receiver
	dead    []*receiver
	lg      *loadgen
	specs   []endpointSpec

	// result is the scenario's, once end filled it in: close adds the accounting.
	result *scenarioResult

	t0      int64
	writes0 storeWrites
	dcpu0   time.Duration
	ncpu0   time.Duration
	hcpu0   time.Duration
	load0   string
}

func (s *setup) children() []*child { return append([]*child{s.child}, s.more...) }

// dispatcherCPU is the CPU time of every dispatcher replica.
func (s *setup) dispatcherCPU() time.Duration {
	var d time.Duration
	for _, c := range s.children() {
		d += c.cpu()
	}
	return d
}

// natsCPU is the CPU time of the external NATS servers (none with the embedded one,
// which counts with its dispatcher). What deliveries cost is both.
func (s *setup) natsCPU() time.Duration {
	if s.nats == nil {
		return 0
	}
	return s.nats.cpu()
}

// retrySchedule of healthy endpoints: short, as nothing is expected to fail.
var retrySchedule = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}

func (b *bench) newSetup(name string, healthy, dead int, hold string) (*setup, error) {
	return b.newSetupOn(name, healthy, dead, hold, nil, 1)
}

// newSetupOn starts replicas dispatchers, on the external NATS cluster nc or (nil) each
// on an embedded one; every replica gets every endpoint, as from the API server.
func (b *bench) newSetupOn(name string, healthy, dead int, hold string, nc *natsCluster, replicas int) (*setup, error) {
	s := &setup{b: b, name: name, nats: nc}
	for i := range healthy {
		rc, err := startReceiver(fmt.Sprintf("ep-%d", i), false)
		if err != nil {
			return nil, err
		}
		s.healthy = append(s.healthy, rc)
		s.specs = append(s.specs, endpointSpec{Name: rc.name, URL: rc.url, Timeout: 10 * time.Second,
			Schedule: retrySchedule, MaxInFlight: b.o.MaxInFlight, Hold: hold})
	}
	for i := range dead {
		rc, err := startReceiver(fmt.Sprintf("dead-%d", i), true)
		if err != nil {
			return nil, err
		}
		s.dead = append(s.dead, rc)
		// Times out quickly, then waits an hour before the next attempt: the worst
		// case for its neighbours, as it keeps its workers busy with requests that
		// never answer.
		s.specs = append(s.specs, endpointSpec{Name: rc.name, URL: rc.url, Timeout: b.o.DeadTimeout,
			Schedule: []time.Duration{time.Hour}, MaxInFlight: b.o.MaxInFlight})
	}
	url := ""
	if nc != nil {
		url = nc.url()
	}
	var ingest []string
	for i := range replicas {
		c, err := startChild(fmt.Sprintf("%s-%d", name, i), url, b.o.Observer, b.o.DispatcherEnv, b.o.Verbosity)
		if err != nil {
			s.close()
			return nil, err
		}
		if s.child == nil {
			s.child = c
		} else {
			s.more = append(s.more, c)
		}
		ingest = append(ingest, c.ingest)
		if err := register(c, append(append([]endpointSpec{}, s.specs...), b.registered...)); err != nil {
			s.close()
			return nil, err
		}
	}
	s.lg = newLoadgen(s.child.ingest, b.o.Concurrency, b.data)
	s.lg.spread(ingest)
	return s, nil
}

// begin marks the start of the measured part and starts the profiles.
func (s *setup) begin() error {
	if s.b.profDir != "" {
		if err := s.child.call("POST", "/profile/start", s.profilePaths(), nil); err != nil {
			return err
		}
	}
	s.load0 = loadAvg()
	if err := s.child.call("GET", "/storewrites", nil, &s.writes0); err != nil {
		return err
	}
	s.dcpu0, s.ncpu0, s.hcpu0 = s.dispatcherCPU(), s.natsCPU(), selfCPU()
	s.t0 = now()
	return nil
}

func (s *setup) profilePaths() profileRequest {
	var p profileRequest
	for _, k := range strings.Split(s.b.o.Profile, ",") {
		path, _ := filepath.Abs(filepath.Join(s.b.profDir, s.name+"."+strings.TrimSpace(k)+".pprof"))
		switch strings.TrimSpace(k) {
		case "cpu":
			p.CPU = path
		case "alloc":
			p.Alloc = path
		case "block":
			p.Block = path
		case "mutex":
			p.Mutex = path
		}
	}
	return p
}

// end stops the profiles and fills in what every scenario reports.
func (s *setup) end(r *scenarioResult) {
	s.result = r
	dcpu, ncpu, hcpu := s.dispatcherCPU()-s.dcpu0, s.natsCPU()-s.ncpu0, selfCPU()-s.hcpu0
	if s.b.profDir != "" {
		if err := s.child.call("POST", "/profile/stop", s.profilePaths(), nil); err != nil {
			r.Notes = append(r.Notes, "profile: "+err.Error())
		}
	}
	for _, c := range s.children() {
		r.PeakRSSMiB = max(r.PeakRSSMiB, mib(c.mem().HWM))
	}
	r.CPUSeconds = (dcpu + ncpu).Seconds()
	if s.nats != nil {
		r.ScaleOut = &scaleOutResult{Replicas: len(s.children()), NATSNodes: len(s.nats.nodes),
			DispatcherCPUSeconds: dcpu.Seconds(), NATSCPUSeconds: ncpu.Seconds()}
		for _, n := range s.nats.nodes {
			r.ScaleOut.NATSPeakRSSMiB = max(r.ScaleOut.NATSPeakRSSMiB, mib(n.mem().HWM))
		}
	}
	r.HarnessCPUSeconds = hcpu.Seconds()
	s.storeWrites(r)
	r.LoadAvg = s.load0 + " → " + loadAvg()
	r.Retried429or503 = s.lg.retried.Load()
	r.FailedEvents = s.lg.failed.Load()
	if s.lg.errMsg != "" {
		r.Notes = append(r.Notes, "ingest error: "+s.lg.errMsg)
	}
	for _, rc := range s.healthy {
		r.Duplicates += rc.dups.Load()
	}
}

func (s *setup) closeReceivers() {
	for _, rc := range s.healthy {
		rc.close()
	}
	for _, rc := range s.dead {
		rc.close()
	}
}

func (s *setup) close() {
	if s.result != nil {
		s.account(s.result)
	}
	for i, c := range s.children() {
		if c == nil {
			continue
		}
		c.stop()
		name := s.name
		if i > 0 {
			name = fmt.Sprintf("%s-%d", s.name, i)
		}
		s.b.copyLog(c, name)
		c.remove()
	}
	s.closeReceivers()
	if s.lg != nil {
		s.lg.transport.CloseIdleConnections()
	}
}

// undelivered is how many deliveries to healthy endpoints are handed to the producer
// and not yet received.
func (s *setup) undelivered(next int64) int64 {
	var got int64
	for _, rc := range s.healthy {
		got += rc.unique.Load()
	}
	return next*int64(len(s.healthy)) - got
}

// waitDelivered waits until every healthy receiver has n distinct events.
func (s *setup) waitDelivered(n int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ok := true
		for _, rc := range s.healthy {
			if rc.unique.Load() < n {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// watchStalls looks for receipts stopping while deliveries wait; for each stall of
// more than 1.5 s it records what the server says of the consumers and keeps the
// dispatcher's goroutines next to the results. The returned func stops it and gives
// one note per stall.
func (s *setup) watchStalls() func() []string {
	stop := make(chan struct{})
	done := make(chan []string)
	go func() {
		var notes []string
		reported := int64(0)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				done <- notes
				return
			case <-tick.C:
			}
			last := s.lastReceipt()
			if last == 0 || last == reported || s.undelivered(s.lg.next.Load()) <= 0 ||
				time.Duration(now()-last) < 1500*time.Millisecond {
				continue
			}
			reported = last
			var consumers map[string]any
			_ = s.child.call("GET", "/consumers", nil, &consumers)
			state, _ := json.Marshal(consumers)
			note := fmt.Sprintf("stall: no receipt for %.1f s at %.1f s into the run with %d undelivered; consumers: %s",
				toTime(now()-last).Seconds(), toTime(now()-s.t0).Seconds(), s.undelivered(s.lg.next.Load()), state)
			dir := filepath.Join(s.b.o.Out, s.b.stamp+"-logs")
			if err := os.MkdirAll(dir, 0o755); err == nil {
				path := filepath.Join(dir, fmt.Sprintf("%s-stall-%d.goroutines", s.name, len(notes)+1))
				if resp, err := http.Get(s.child.control + "/debug/pprof/goroutine?debug=2"); err == nil {
					if f, err := os.Create(path); err == nil {
						_, _ = io.Copy(f, resp.Body)
						f.Close()
						note += "; goroutines in " + path
					}
					resp.Body.Close()
				}
			}
			logf("%s: %s", s.name, note)
			notes = append(notes, note)
		}
	}()
	return func() []string { close(stop); return <-done }
}

func (s *setup) lastReceipt() int64 {
	var last int64
	for _, rc := range s.healthy {
		last = max(last, rc.last.Load())
	}
	return last
}

// latencies are ingest-to-receipt (from when the producer started the POST carrying
// the event, or its scheduled time in open loop) of every first receipt.
func (s *setup) latencies(n int64) []time.Duration {
	var out []time.Duration
	for _, rc := range s.healthy {
		rc.got.each(n, func(i, v int64) {
			if sent := s.lg.sent.get(i); sent != 0 {
				out = append(out, time.Duration(v-sent))
			}
		})
	}
	return out
}

// receiptSeries counts first receipts (all healthy endpoints) per second since t0 and
// finds the longest time without any receipt between the first and the last: a stall
// detector.
func (s *setup) receiptSeries(n int64) ([]int64, float64) {
	var ts []int64
	for _, rc := range s.healthy {
		rc.got.each(n, func(_, v int64) { ts = append(ts, v) })
	}
	if len(ts) == 0 {
		return nil, 0
	}
	slices.Sort(ts)
	var gap int64
	for i := 1; i < len(ts); i++ {
		gap = max(gap, ts[i]-ts[i-1])
	}
	last := int(toTime(ts[len(ts)-1] - s.t0 + 1).Seconds())
	series := make([]int64, max(last+1, 0))
	for _, v := range ts {
		if sec := int(toTime(v - s.t0 + 1).Seconds()); sec >= 0 && sec < len(series) {
			series[sec]++
		}
	}
	return series, ms(time.Duration(gap))
}

// saturate is a, b and c: the batch producer runs for the duration, paced so that at
// most window deliveries per healthy endpoint are undelivered (the sustainable rate,
// not a backlog), then the rest is delivered.
func (b *bench) saturate(name, title string, healthy, dead int) (*scenarioResult, *setup, error) {
	logf("%s: %s", name, title)
	s, err := b.newSetup(name, healthy, dead, "")
	if err != nil {
		return nil, nil, err
	}
	defer s.close()
	r, err := b.measure(s, name, title, healthy, dead)
	return r, s, err
}

// measure runs the paced producer of a, b and c on a setup.
func (b *bench) measure(s *setup, name, title string, healthy, dead int) (*scenarioResult, error) {
	window := int64(b.o.Window) * int64(healthy)
	_ = s.child.call("POST", "/gc", nil, nil)
	gc0 := s.child.mem()
	if err := s.begin(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.o.Duration)
	stalls := s.watchStalls()
	s.lg.closedLoop(ctx, b.o.Concurrency, b.o.Batch, 0, func(next int64) bool {
		return s.undelivered(next+int64(b.o.Batch)) <= window
	})
	cancel()
	accepted := s.lg.accepted.Load()
	r := &scenarioResult{Name: name, Title: title, Endpoints: healthy + dead, Fanout: healthy + dead}
	if !s.waitDelivered(accepted, b.o.DrainTimeout) {
		r.Incomplete = true
		r.Notes = append(r.Notes, fmt.Sprintf("not every accepted event was delivered within %s", b.o.DrainTimeout))
	}
	r.Notes = append(r.Notes, stalls()...)
	last := s.lastReceipt()
	s.end(r)
	// What the run left behind once everything was delivered: the dedupe records and
	// the stream's duplicate window live on for their windows (24h and 10 min).
	_ = s.child.call("POST", "/gc", nil, nil)
	gc1 := s.child.mem()
	r.RSSAfterRunMiB = mib(gc1.RSS)
	if accepted > 0 {
		r.RetainedPerEvent = float64(gc1.RSS-gc0.RSS) / float64(accepted)
	}
	r.Events = accepted
	for _, rc := range s.healthy {
		r.Deliveries += rc.unique.Load()
	}
	r.IngestSeconds = toTime(s.lg.lastAt.Load() - s.t0 + 1).Seconds()
	r.Seconds = toTime(last - s.t0 + 1).Seconds()
	r.EventsPerSecond = float64(accepted) / r.IngestSeconds
	r.DeliveriesPerSecond = float64(r.Deliveries) / r.Seconds
	r.Latency = pct(s.latencies(s.lg.next.Load()))
	for _, rc := range append(append([]*receiver{}, s.healthy...), s.dead...) {
		r.PerEndpoint = append(r.PerEndpoint, endpointRate{
			Name: rc.name, Healthy: !rc.hang, Deliveries: rc.unique.Load(), Requests: rc.requests.Load(),
			PerSecond: float64(rc.unique.Load()) / r.Seconds,
		})
	}
	r.UndeliveredWindow = window
	r.PerSecond, r.LongestGapMs = s.receiptSeries(s.lg.next.Load())
	logf("%s: %d events accepted (%.0f/s), %d deliveries in %.1fs (%.0f/s), p99 %.0f ms, peak RSS %.0f MiB, retained after the run %.0f B per event, longest pause between receipts %.0f ms",
		name, accepted, r.EventsPerSecond, r.Deliveries, r.Seconds, r.DeliveriesPerSecond, r.Latency.P99, r.PeakRSSMiB, r.RetainedPerEvent, r.LongestGapMs)
	return r, nil
}

func (b *bench) scenarioA() (*scenarioResult, error) {
	r, _, err := b.saturate("a", "1:1 — one endpoint", 1, 0)
	if err != nil {
		return nil, err
	}
	r.CeilingPercent = 100 * r.DeliveriesPerSecond / b.res.Ceiling1.PerSecond
	return r, nil
}

func (b *bench) scenarioB() (*scenarioResult, error) {
	r, _, err := b.saturate("b", "fan-out — each event to 10 endpoints", 10, 0)
	if err != nil {
		return nil, err
	}
	r.CeilingPercent = 100 * r.DeliveriesPerSecond / b.res.Ceiling10.PerSecond
	return r, nil
}

func (b *bench) scenarioC() (*scenarioResult, error) {
	r, s, err := b.saturate("c", "isolation — 10 healthy endpoints + 1 that never answers", 10, 1)
	if err != nil {
		return nil, err
	}
	r.CeilingPercent = 100 * r.DeliveriesPerSecond / b.res.Ceiling10.PerSecond
	var dead int64
	for _, rc := range s.dead {
		dead += rc.requests.Load()
	}
	r.Notes = append(r.Notes, fmt.Sprintf("the dead endpoint (timeout %s, next retry in 1h) received %d requests and answered none", b.o.DeadTimeout, dead))
	if bs := b.res.Scenarios["b"]; bs != nil && bs.Deliveries > 0 {
		r.HealthyVsB = 100 * (r.DeliveriesPerSecond / 10) / (bs.DeliveriesPerSecond / 10)
		minEP := 0.0
		for _, e := range r.PerEndpoint {
			if e.Healthy && (minEP == 0 || e.PerSecond < minEP) {
				minEP = e.PerSecond
			}
		}
		r.WorstHealthyVsB = 100 * minEP / (bs.DeliveriesPerSecond / 10)
	}
	return r, nil
}

// scenarioD queues the backlog while every endpoint is held (as auto-disable or suspend
// holds them: the consumers stop, deliveries stay in the stream), measures the memory
// it costs, then releases the endpoints and times the drain.
func (b *bench) scenarioD() (*scenarioResult, error) {
	const endpoints = 10
	title := fmt.Sprintf("backlog drain — %d deliveries queued on %d held endpoints, then released", b.o.Backlog, endpoints)
	logf("d: %s", title)
	s, err := b.newSetup("d", endpoints, 0, "Suspended")
	if err != nil {
		return nil, err
	}
	defer s.close()
	events := int64(b.o.Backlog / endpoints)
	r := &scenarioResult{Name: "d", Title: title, Endpoints: endpoints, Fanout: endpoints}

	time.Sleep(time.Second)
	nat0 := s.child.mem()
	_ = s.child.call("POST", "/gc", nil, nil)
	gc0 := s.child.mem()
	if err := s.begin(); err != nil {
		return nil, err
	}
	s.lg.closedLoop(context.Background(), b.o.Concurrency, b.o.Batch, events, nil)
	ingestCPU := s.child.cpu() - s.dcpu0
	accepted := s.lg.accepted.Load()
	r.Events = accepted
	r.IngestSeconds = toTime(s.lg.lastAt.Load() - s.t0 + 1).Seconds()
	r.EventsPerSecond = float64(accepted) / r.IngestSeconds
	var pending map[string]int64
	if err := s.child.call("GET", "/pending", nil, &pending); err != nil {
		return nil, err
	}
	var queued int64
	for _, n := range pending {
		queued += n
	}
	time.Sleep(2 * time.Second)
	nat1 := s.child.mem()
	_ = s.child.call("POST", "/gc", nil, nil)
	time.Sleep(200 * time.Millisecond)
	gc1 := s.child.mem()
	d := &backlogResult{
		Queued: queued, PayloadBytes: len(b.data),
		RSSBeforeMiB: mib(nat0.RSS), RSSQueuedMiB: mib(nat1.RSS),
		RSSBeforeAfterGCMiB: mib(gc0.RSS), RSSQueuedAfterGCMiB: mib(gc1.RSS),
		IngestCPUSeconds: ingestCPU.Seconds(),
	}
	if queued > 0 {
		d.RSSPerPending = float64(nat1.RSS-nat0.RSS) / float64(queued)
		d.RSSPerPendingAfterGC = float64(gc1.RSS-gc0.RSS) / float64(queued)
		d.BeyondPayload = max(0, d.RSSPerPending-float64(len(b.data)))
		d.BeyondPayloadAfterGC = max(0, d.RSSPerPendingAfterGC-float64(len(b.data)))
	}
	logf("d: %d events (%d deliveries) stored in %.1fs (%.0f events/s); RSS %.0f → %.0f MiB (%.0f B per pending delivery; after FreeOSMemory %.0f → %.0f MiB, %.0f B)",
		accepted, queued, r.IngestSeconds, r.EventsPerSecond, d.RSSBeforeMiB, d.RSSQueuedMiB, d.RSSPerPending,
		d.RSSBeforeAfterGCMiB, d.RSSQueuedAfterGCMiB, d.RSSPerPendingAfterGC)

	// Receivers come back: release the holds.
	cpu1 := s.child.cpu()
	release := now()
	for i := range s.specs {
		s.specs[i].Hold = ""
	}
	if err := s.child.call("POST", "/endpoints", s.specs, nil); err != nil {
		return nil, err
	}
	if !s.waitDelivered(accepted, b.o.DrainTimeout) {
		r.Incomplete = true
		r.Notes = append(r.Notes, fmt.Sprintf("the backlog did not drain within %s", b.o.DrainTimeout))
	}
	last := s.lastReceipt()
	d.DrainCPUSeconds = (s.child.cpu() - cpu1).Seconds()
	s.end(r)
	for _, rc := range s.healthy {
		r.Deliveries += rc.unique.Load()
	}
	d.DrainSeconds = toTime(last - release + 1).Seconds()
	r.Seconds = d.DrainSeconds
	r.DeliveriesPerSecond = float64(r.Deliveries) / d.DrainSeconds
	r.CeilingPercent = 100 * r.DeliveriesPerSecond / b.res.Ceiling10.PerSecond
	if r.Deliveries > 0 {
		d.DrainCPUSecondsPer1k = d.DrainCPUSeconds / float64(r.Deliveries) * 1000
	}
	// Latency here is from the release to the receipt: how long a queued delivery
	// waited once its receiver was back.
	var lat []time.Duration
	for _, rc := range s.healthy {
		rc.got.each(accepted, func(i, v int64) { lat = append(lat, time.Duration(v-release)) })
	}
	r.Latency = pct(lat)
	r.LatencyNote = "release-to-receipt"
	r.PerSecond, r.LongestGapMs = s.receiptSeries(accepted)
	r.Backlog = d
	logf("d: drained %d deliveries in %.1fs (%.0f/s)", r.Deliveries, d.DrainSeconds, r.DeliveriesPerSecond)
	return r, nil
}

// scenarioE publishes single events at a fixed rate, half of a's, and measures
// ingest-to-receipt latency over time.
func (b *bench) scenarioE() (*scenarioResult, error) {
	rate := b.o.Rate
	src := "-rate"
	if rate <= 0 {
		if a := b.res.Scenarios["a"]; a != nil && a.DeliveriesPerSecond > 0 {
			rate, src = a.DeliveriesPerSecond/2, "half of a"
		} else {
			rate, src = 200, "default (a did not run)"
		}
	}
	title := fmt.Sprintf("steady latency — %.0f events/s (%s), one event per POST, one endpoint", rate, src)
	logf("e: %s", title)
	s, err := b.newSetup("e", 1, 0, "")
	if err != nil {
		return nil, err
	}
	defer s.close()
	total := int64(rate * b.o.Duration.Seconds())
	if err := s.begin(); err != nil {
		return nil, err
	}
	s.lg.openLoop(context.Background(), b.o.OpenWorkers, rate, total)
	r := &scenarioResult{Name: "e", Title: title, Endpoints: 1, Fanout: 1, TargetRate: rate}
	accepted := s.lg.accepted.Load()
	if !s.waitDelivered(accepted, b.o.DrainTimeout) {
		r.Incomplete = true
		r.Notes = append(r.Notes, "not every accepted event was delivered")
	}
	last := s.lastReceipt()
	s.end(r)
	r.Events = accepted
	r.Deliveries = s.healthy[0].unique.Load()
	r.IngestSeconds = toTime(s.lg.lastAt.Load() - s.t0 + 1).Seconds()
	r.Seconds = toTime(last - s.t0 + 1).Seconds()
	r.EventsPerSecond = float64(accepted) / r.IngestSeconds
	r.DeliveriesPerSecond = float64(r.Deliveries) / r.Seconds
	r.CeilingPercent = 100 * r.DeliveriesPerSecond / b.res.Ceiling1.PerSecond
	r.Latency = pct(s.latencies(total))
	r.IngestLatency = pct(s.lg.rtts)
	r.PerSecond, r.LongestGapMs = s.receiptSeries(total)
	if late := s.lg.late.Load(); late > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d of %d events were sent more than 1 ms after their scheduled time (producer behind; latency counts from the schedule)", late, total))
	}
	// Per-second series by scheduled send time.
	buckets := map[int][]time.Duration{}
	rc := s.healthy[0]
	rc.got.each(total, func(i, v int64) {
		sent := s.lg.sent.get(i)
		if sent == 0 {
			return
		}
		sec := int(toTime(sent - s.t0 + 1).Seconds())
		buckets[sec] = append(buckets[sec], time.Duration(v-sent))
	})
	for sec := 0; sec <= int(b.o.Duration.Seconds())+1; sec++ {
		if ds := buckets[sec]; len(ds) > 0 {
			p := pct(ds)
			r.Series = append(r.Series, seriesPoint{Second: sec, Count: p.N, P50: p.P50, P95: p.P95, P99: p.P99, Max: p.Max})
		}
	}
	logf("e: %d events at %.0f/s, latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms; ingest POST p99 %.1f ms",
		accepted, rate, r.Latency.P50, r.Latency.P95, r.Latency.P99, r.Latency.Max, r.IngestLatency.P99)
	return r, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

var _ = os.Getpid

// storeWrites fills in what the store was written since begin: messages per stream (the
// streams are shared by every replica, so one child's view is the run's), and the bytes
// the dispatcher wrote to files when its store is embedded.
func (s *setup) storeWrites(r *scenarioResult) {
	var w storeWrites
	if err := s.child.call("GET", "/storewrites", nil, &w); err != nil {
		r.Notes = append(r.Notes, "store writes: "+err.Error())
		return
	}
	r.StoreWritesByStream = map[string]uint64{}
	for name, seq := range w.Streams {
		if n := seq - s.writes0.Streams[name]; n > 0 {
			r.StoreWritesByStream[name] = n
			r.StoreWrites += int64(n)
		}
	}
	if s.nats == nil {
		r.DispatcherFileBytes = w.FileBytes - s.writes0.FileBytes
	}
}
