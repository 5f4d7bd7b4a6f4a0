// Command heraldbench measures Herald's dispatcher on one machine, end to end, and
// compares it with what the machine does with no Herald in between.
//
// Everything runs here, on 127.0.0.1: no Kubernetes API server. Endpoints and
// subscriptions are handed to the dispatcher in-process (delivery.Engine.Upsert and
// router.Table.Set, as the watch would), the store is the embedded JetStream server
// with file storage in a temporary directory, the load generator publishes through the
// public ingest HTTP API (the batch route, except for the fixed-rate scenario) and the
// receivers are plain net/http servers answering 204.
//
// The dispatcher side runs in a child process (this binary, role "dispatcher-child"), a
// fresh one per scenario, so that its peak RSS (VmHWM) and CPU time (utime+stime from
// /proc/<pid>/stat) are its own. Load generator and receivers share the harness
// process and its clock, so ingest-to-receipt latency needs no clock sync.
//
//	go run ./bench/cmd/heraldbench                 # full run, ~4 minutes
//	go run ./bench/cmd/heraldbench -quick          # CI-size run, ~1 minute
//	go run ./bench/cmd/heraldbench -scenarios a,e -profile cpu,alloc,block
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

const childRole = "dispatcher-child"

type options struct {
	Quick           bool          `json:"quick"`
	Scenarios       string        `json:"scenarios"`
	NATSServer      string        `json:"natsServer,omitempty"`
	Duration        time.Duration `json:"duration"`
	CeilingDuration time.Duration `json:"ceilingDuration"`
	Concurrency     int           `json:"concurrency"`
	Batch           int           `json:"batch"`
	Window          int           `json:"windowPerEndpoint"`
	PayloadBytes    int           `json:"payloadBytes"`
	Backlog         int           `json:"backlogDeliveries"`
	Rate            float64       `json:"rate"`
	OpenWorkers     int           `json:"openLoopWorkers"`
	MaxInFlight     int           `json:"maxInFlight"`
	DeadTimeout     time.Duration `json:"deadTimeout"`
	DrainTimeout    time.Duration `json:"drainTimeout"`
	Observer        string        `json:"observer"`
	Profile         string        `json:"profile"`
	DispatcherEnv   string        `json:"dispatcherEnv,omitempty"`
	Verbosity       int           `json:"dispatcherVerbosity,omitempty"`
	IdleEndpoints   string        `json:"idleEndpoints"`
	Out             string        `json:"-"`
	Tag             string        `json:"tag"`

	// A comparison of two builds (compare.go): the baseline's binary, its label, the
	// rounds, and the chart whose defaults the dispatchers get.
	Baseline      string `json:"-"`
	BaselineLabel string `json:"-"`
	Rounds        int    `json:"-"`
	ChartValues   string `json:"-"`
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == childRole {
		if err := runDispatcher(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "dispatcher child:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	o.register(flag.CommandLine)
	flag.Parse()
	if o.Baseline != "" {
		if err := compareMain(&o, flag.CommandLine); err != nil {
			fmt.Fprintln(os.Stderr, "heraldbench:", err)
			os.Exit(1)
		}
		return
	}
	o.finish()
	if err := run(&o); err != nil {
		fmt.Fprintln(os.Stderr, "heraldbench:", err)
		os.Exit(1)
	}
}

// register defines the command's flags on fs, each setting a field of o.
func (o *options) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.Quick, "quick", false, "CI-size run: 3s scenarios, 10k-delivery backlog (overrides -duration, -ceiling-duration, -backlog)")
	fs.StringVar(&o.Scenarios, "scenarios", "a,b,c,d,e,f,g,h", "scenarios to run: a (1:1), b (fan-out 1:10), c (isolation), d (backlog drain), e (steady latency), f (endpoints at scale; reruns those of a, b, c that are listed with the most idle endpoints registered), g (scale-out: a on an external 3-node NATS cluster with 1 and 3 dispatchers; needs -nats-server), h (a with the event type's JSON Schema enforced at ingest)")
	fs.StringVar(&o.NATSServer, "nats-server", "", "g: the nats-server binary (make bench builds the version in go.mod with hack/nats-server.sh)")
	fs.StringVar(&o.IdleEndpoints, "idle-endpoints", "1000,10000", "f: counts of idle endpoints to register, each on a fresh dispatcher")
	fs.DurationVar(&o.Duration, "duration", 20*time.Second, "how long the load runs in a, b, c and e")
	fs.DurationVar(&o.CeilingDuration, "ceiling-duration", 10*time.Second, "how long each ceiling measurement runs")
	fs.IntVar(&o.Concurrency, "concurrency", 8, "load generator connections (and the ceiling's)")
	fs.IntVar(&o.Batch, "batch", 100, "events per ingest batch request in a, b, c, d")
	fs.IntVar(&o.Window, "window", 2000, "a, b, c: the producer pauses while more than this many deliveries per endpoint are undelivered (keeps the run at the sustainable rate instead of growing a backlog)")
	fs.IntVar(&o.PayloadBytes, "payload", 1024, "bytes of event data")
	fs.IntVar(&o.Backlog, "backlog", 100_000, "d: deliveries queued while the endpoints are held (over 10 endpoints)")
	fs.Float64Var(&o.Rate, "rate", 0, "e: events per second (0: half of a's deliveries/s, or 200 when a did not run)")
	fs.IntVar(&o.OpenWorkers, "open-workers", 64, "e: producer goroutines (each event is one POST at its scheduled time)")
	fs.IntVar(&o.MaxInFlight, "max-in-flight", 8, "each endpoint's maxInFlight (the CRD default is 8)")
	fs.DurationVar(&o.DeadTimeout, "dead-timeout", 2*time.Second, "c: timeout of the endpoint that never answers")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 5*time.Minute, "give up waiting for deliveries after this long")
	fs.StringVar(&o.Observer, "observer", "tracker", "delivery observer in the dispatcher: tracker (production failure tracking) or none")
	fs.StringVar(&o.Profile, "profile", "", "comma-separated dispatcher profiles to write per scenario: cpu, alloc, block, mutex")
	fs.StringVar(&o.DispatcherEnv, "dispatcher-env", "", "comma-separated KEY=VALUE added to the dispatcher child's environment only (e.g. GOGC=200,GOMEMLIMIT=120MiB)")
	fs.IntVar(&o.Verbosity, "dispatcher-v", 0, "log verbosity of the dispatcher child (its log is kept in <out>/<date>-logs/ when not empty)")
	fs.StringVar(&o.Out, "out", "bench/results", "directory for results")
	fs.StringVar(&o.Tag, "tag", "", "suffix of the result file names (default: quick in -quick mode; compare or compare-quick with -baseline)")
	fs.StringVar(&o.Baseline, "baseline", "", "compare with this heraldbench binary (an older build; hack/benchcompare.sh builds one at a commit): for each scenario (default a,b,c,d,e), -rounds pairs of runs, baseline then this binary, each an ordinary run of that scenario with the other flags given; then both designs' medians, their ratio and issue 25's targets in <out>/<date>-<tag>.md and .json")
	fs.StringVar(&o.BaselineLabel, "baseline-label", "", "-baseline: the name of the baseline in the report (hack/benchcompare.sh gives its commit)")
	fs.IntVar(&o.Rounds, "rounds", 2, "-baseline: runs of each scenario per design")
	fs.StringVar(&o.ChartValues, "chart-values", "charts/herald/values.yaml", "-baseline: the chart whose dispatcher memory limit becomes every dispatcher child's GOMEMLIMIT (as the manager sets it), unless -dispatcher-env sets one")
}

// finish applies what -quick implies, once the flags are parsed.
func (o *options) finish() {
	if o.Quick {
		o.Duration, o.CeilingDuration, o.Backlog, o.DrainTimeout = 3*time.Second, 3*time.Second, 10_000, 2*time.Minute
		o.IdleEndpoints = "1000"
		if o.Tag == "" {
			o.Tag = "quick"
		}
	}
}

func (o *options) has(s string) bool {
	for _, x := range strings.Split(o.Scenarios, ",") {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}

func run(o *options) error {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return err
	}
	started := time.Now()
	stamp := started.Format("2006-01-02")
	if o.Tag != "" {
		stamp += "-" + o.Tag
	}
	res := &results{
		Date:    started.Format(time.RFC3339),
		Options: *o,
		Machine: machine(),
		Setup: "Single machine, everything on 127.0.0.1. No Kubernetes API server: endpoints and " +
			"subscriptions are given to the dispatcher in-process (Engine.Upsert, router.Table.Set). " +
			"Embedded JetStream, file storage in a temp dir. Dispatcher in a child process (fresh per " +
			"scenario) measured from /proc; load generator (public ingest HTTP API over TCP) and receivers " +
			"(net/http, 204) in the harness process, sharing the same cores.",
		Scenarios: map[string]*scenarioResult{},
	}
	b := &bench{o: o, res: res, data: payloadData(o.PayloadBytes), stamp: stamp}
	if o.Profile != "" {
		b.profDir = filepath.Join(o.Out, stamp+"-profiles")
		if err := os.MkdirAll(b.profDir, 0o755); err != nil {
			return err
		}
	}
	logf("payload %d bytes of data; concurrency %d; batch %d; observer %s; GOMAXPROCS %d; load %s",
		len(b.data), o.Concurrency, o.Batch, o.Observer, runtime.GOMAXPROCS(0), loadAvg())

	if err := b.ceilings(); err != nil {
		return err
	}
	steps := []struct {
		name string
		f    func() (*scenarioResult, error)
	}{
		{"a", b.scenarioA}, {"b", b.scenarioB}, {"c", b.scenarioC}, {"d", b.scenarioD}, {"e", b.scenarioE},
		{"f", b.scenarioF}, {"g", b.scenarioG}, {"h", b.scenarioH},
	}
	for _, s := range steps {
		if !o.has(s.name) {
			continue
		}
		r, err := s.f()
		if err != nil {
			return fmt.Errorf("scenario %s: %w", s.name, err)
		}
		if r.Deliveries > 0 {
			r.CPUSecondsPer1k = r.CPUSeconds / float64(r.Deliveries) * 1000
			r.StoreWritesPerDelivery = float64(r.StoreWrites) / float64(r.Deliveries)
			r.FileBytesPerDelivery = float64(r.DispatcherFileBytes) / float64(r.Deliveries)
		}
		res.Scenarios[s.name] = r
	}
	res.Targets = targets(res)
	res.ElapsedSeconds = time.Since(started).Seconds()
	voided := void(res)
	res.Void = voided

	jsonPath := filepath.Join(o.Out, stamp+".json")
	f, err := os.Create(jsonPath)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		f.Close()
		return err
	}
	f.Close()
	var charts []string
	if s := res.Scenarios["e"]; s != nil {
		p := filepath.Join(o.Out, stamp+"-e-latency.svg")
		if err := os.WriteFile(p, latencyChart(s, res), 0o644); err != nil {
			return err
		}
		charts = append(charts, p)
	}
	if s := res.Scenarios["c"]; s != nil {
		p := filepath.Join(o.Out, stamp+"-c-isolation.svg")
		if err := os.WriteFile(p, isolationChart(s, res.Scenarios["b"]), 0o644); err != nil {
			return err
		}
		charts = append(charts, p)
	}
	markdown(os.Stdout, res)
	fmt.Printf("\nResults: %s\n", jsonPath)
	for _, c := range charts {
		fmt.Printf("Chart:   %s\n", c)
	}
	if b.profDir != "" {
		fmt.Printf("Profiles: %s (go tool pprof -top <file>)\n", b.profDir)
	}
	if len(voided) > 0 {
		return fmt.Errorf("the run is void, deliveries do not balance (published = delivered + cut off + missing, missing must be 0):\n  %s", strings.Join(voided, "\n  "))
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

type bench struct {
	o       *options
	res     *results
	data    []byte
	stamp   string
	profDir string
	// registered are idle endpoints every dispatcher gets next to its scenario's own.
	registered []endpointSpec
}

// ceilings measure plain POSTs of the delivered body from the load generator's client
// to fresh receivers, with the load generator's concurrency: to one receiver (the
// reference of a and e) and round-robin to ten (the reference of b, c and d).
func (b *bench) ceilings() error {
	for _, n := range []int{1, 10} {
		var rcs []*receiver
		for i := range n {
			rc, err := startReceiver(fmt.Sprintf("ceiling-%d", i), false)
			if err != nil {
				return err
			}
			rcs = append(rcs, rc)
		}
		hcpu0 := selfCPU()
		load0 := loadAvg()
		sent, done, elapsed := ceiling(b.o.Concurrency, b.o.CeilingDuration, b.data, rcs)
		hcpu := selfCPU() - hcpu0
		var lat []time.Duration
		var got int64
		for _, rc := range rcs {
			got += rc.unique.Load()
			rc.got.each(done+int64(b.o.Concurrency)*2+1, func(i, v int64) {
				if s := sent.get(i); s != 0 {
					lat = append(lat, time.Duration(v-s))
				}
			})
			rc.close()
		}
		c := &ceilingResult{
			Receivers: n, Concurrency: b.o.Concurrency, Requests: done,
			Seconds: elapsed.Seconds(), PerSecond: float64(got) / elapsed.Seconds(),
			Latency: pct(lat), HarnessCPUSeconds: hcpu.Seconds(), LoadAvg: load0 + " → " + loadAvg(),
		}
		if n == 1 {
			b.res.Ceiling1 = c
		} else {
			b.res.Ceiling10 = c
		}
		logf("ceiling, %d receiver(s): %.0f POSTs/s, p50 %.2f ms, p99 %.2f ms", n, c.PerSecond, c.Latency.P50, c.Latency.P99)
	}
	return nil
}

func selfCPU() time.Duration {
	d, _ := readProcCPU(os.Getpid())
	return d
}

// copyLog keeps the dispatcher's log next to the results when it says anything.
func (b *bench) copyLog(c *child, name string) {
	st, err := os.Stat(c.logFile)
	if err != nil || st.Size() == 0 {
		return
	}
	dir := filepath.Join(b.o.Out, b.stamp+"-logs")
	_ = os.MkdirAll(dir, 0o755)
	src, err := os.Open(c.logFile)
	if err != nil {
		return
	}
	defer src.Close()
	dst, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return
	}
	defer dst.Close()
	_, _ = io.Copy(dst, src)
}

var _ = context.Background
