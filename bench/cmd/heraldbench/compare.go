package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// A comparison runs two builds of this program, the baseline (an older commit, built by
// hack/benchcompare.sh) and the current one (this binary), on the same machine in one
// go, interleaved: for each scenario, baseline then current, once per round. Each run is
// an ordinary heraldbench invocation of one scenario (its own ceilings, its own fresh
// dispatcher child: the child is the same binary, so each build measures its own
// dispatcher), writing its own results; the comparison reads them back and reports the
// medians of each design, their ratio and issue 25's targets. Interleaving spreads
// whatever else the machine does over both designs instead of charging it to one.

// compareScenarios are those whose figures the comparison tabulates; f and g report
// through nested runs and are left to `make bench`.
var compareScenarios = []string{"a", "b", "c", "d", "e", "h"}

// notForwarded are the flags of the comparison itself, or those it sets per run.
var notForwarded = map[string]bool{
	"baseline": true, "baseline-label": true, "rounds": true, "chart-values": true,
	"scenarios": true, "out": true, "tag": true,
}

type compareDesign struct {
	Name   string `json:"name"` // baseline or current
	Label  string `json:"label"`
	Binary string `json:"binary"`
}

type compareRun struct {
	Scenario string   `json:"scenario"`
	Round    int      `json:"round"`
	Design   string   `json:"design"`
	Args     []string `json:"args"`
	Seconds  float64  `json:"seconds"`
	// Error is why the run failed or is void (its results are kept when it wrote any).
	Error  string   `json:"error,omitempty"`
	Result *results `json:"result,omitempty"`
}

type comparison struct {
	Date     string          `json:"date"`
	Command  string          `json:"command"`
	Machine  machineInfo     `json:"machine"`
	Designs  []compareDesign `json:"designs"`
	Rounds   int             `json:"rounds"`
	Order    string          `json:"order"`
	Settings []string        `json:"settings"`
	// Forwarded are the flags every run got.
	Forwarded []string      `json:"forwarded_flags"`
	Runs      []*compareRun `json:"runs"`
	// MedianCeilings are the medians of the ceilings (POSTs/s, by receivers) every run
	// measured, both designs': one yardstick for both, steadier than each run's own.
	MedianCeilings map[int]float64     `json:"median_ceilings"`
	Summary        []compareSummaryRow `json:"summary"`
	Targets        []compareTarget     `json:"targets"`
	ElapsedSeconds float64             `json:"elapsed_seconds"`
}

// figures are what the comparison reads of one scenario's run.
type figures struct {
	DeliveriesPerSecond float64 `json:"deliveries_per_second"`
	CeilingPercent      float64 `json:"ceiling_percent"`
	CPUMsPerDelivery    float64 `json:"cpu_ms_per_delivery"`
	PeakRSSMiB          float64 `json:"peak_rss_mib"`
	P99Ms               float64 `json:"p99_ms"`
	StoreWrites         float64 `json:"store_writes_per_delivery"`
	Lost                int64   `json:"lost"`
	Duplicates          int64   `json:"duplicates"`
	Deliveries          int64   `json:"deliveries"`
	Rate                float64 `json:"e_rate,omitempty"`
}

type compareSummaryRow struct {
	Scenario string `json:"scenario"`
	Design   string `json:"design"`
	Runs     int    `json:"runs"`
	// Median of each figure over the design's runs; Lost and Duplicates are sums.
	Median figures `json:"median"`
	Min    figures `json:"min"`
	Max    figures `json:"max"`
	// OfMedianCeiling is the median deliveries/s in % of the comparison's median ceiling
	// (the targets' figure; Median.CeilingPercent is the median of each run's own).
	OfMedianCeiling float64 `json:"percent_of_median_ceiling"`
}

type compareTarget struct {
	Name     string `json:"name"`
	Want     string `json:"want"`
	Baseline string `json:"baseline"`
	Current  string `json:"current"`
	Met      bool   `json:"met"`
	// BaselineMet says whether the baseline would meet it, for reference.
	BaselineMet bool `json:"baseline_met"`
}

// compareMain runs the comparison; o holds the parsed flags (before finish), fs the
// flag set, for the flags to hand on to every run.
func compareMain(o *options, fs *flag.FlagSet) error {
	started := time.Now()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if _, err := os.Stat(o.Baseline); err != nil {
		return fmt.Errorf("-baseline: %w", err)
	}
	if o.Rounds < 1 {
		return fmt.Errorf("-rounds must be at least 1, not %d", o.Rounds)
	}
	userSet := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { userSet[f.Name] = true })
	if !userSet["scenarios"] {
		o.Scenarios = "a,b,c,d,e"
	}
	var scenarios []string
	for _, s := range strings.Split(o.Scenarios, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(compareScenarios, s) {
			return fmt.Errorf("-scenarios: a comparison runs %s, not %q (f and g: make bench)", strings.Join(compareScenarios, ", "), s)
		}
		if !slices.Contains(scenarios, s) {
			scenarios = append(scenarios, s)
		}
	}
	slices.SortFunc(scenarios, func(a, b string) int { return strings.Compare(a, b) })
	if len(scenarios) == 0 {
		return errors.New("-scenarios: none given")
	}

	var forwarded []string
	fs.Visit(func(f *flag.Flag) {
		if !notForwarded[f.Name] && f.Name != "dispatcher-env" {
			forwarded = append(forwarded, "-"+f.Name+"="+f.Value.String())
		}
	})
	var settings []string
	// The chart's defaults: its dispatcher memory limit becomes the dispatcher's
	// GOMEMLIMIT (controllers/workload), so every run's child gets it unless
	// -dispatcher-env says otherwise.
	env := o.DispatcherEnv
	if !strings.Contains(env, "GOMEMLIMIT=") {
		limit, err := chartMemoryLimit(o.ChartValues)
		switch {
		case err != nil:
			return fmt.Errorf("the chart's dispatcher memory limit (-chart-values): %w", err)
		case limit > 0:
			env = strings.Trim(env+",GOMEMLIMIT="+strconv.FormatInt(limit, 10), ",")
			settings = append(settings, fmt.Sprintf("GOMEMLIMIT=%d (%d MiB) in every dispatcher child: the chart's dispatcher.resources.limits.memory (%s), which the manager hands to the dispatcher as its GOMEMLIMIT", limit, limit>>20, o.ChartValues))
		default:
			settings = append(settings, "no GOMEMLIMIT: the chart sets no dispatcher memory limit ("+o.ChartValues+")")
		}
	}
	if env != "" {
		forwarded = append(forwarded, "-dispatcher-env="+env)
	}
	quick := o.Quick
	tag := o.Tag
	if tag == "" {
		tag = "compare"
		if quick {
			tag += "-quick"
		}
	}
	stamp := started.Format("2006-01-02") + "-" + tag
	runsDir := filepath.Join(o.Out, stamp+"-runs")
	if err := os.MkdirAll(runsDir, 0o755); err != nil {
		return err
	}
	cur := machine()
	baseLabel := o.BaselineLabel
	if baseLabel == "" {
		baseLabel = filepath.Base(o.Baseline)
	}
	cmp := &comparison{
		Date:    started.Format(time.RFC3339),
		Command: strings.Join(os.Args, " "),
		Machine: cur,
		Designs: []compareDesign{
			{Name: "baseline", Label: baseLabel, Binary: o.Baseline},
			{Name: "current", Label: cur.Commit, Binary: self},
		},
		Rounds:    o.Rounds,
		Order:     "for each scenario, rounds of baseline then current",
		Settings:  settings,
		Forwarded: forwarded,
	}
	logf("comparing %s (baseline) with %s (current): scenarios %s, %d rounds, flags %v; runs in %s",
		baseLabel, cur.Commit, strings.Join(scenarios, ","), o.Rounds, forwarded, runsDir)

	for _, s := range scenarios {
		var extra []string
		if s == "e" && !userSet["rate"] {
			// e runs at half of a's deliveries/s: the current design's a of this
			// comparison, for both designs, so their latencies are at the same load.
			if a := cmp.median("a", "current"); a.DeliveriesPerSecond > 0 {
				rate := math.Round(a.DeliveriesPerSecond / 2)
				extra = append(extra, "-rate="+strconv.FormatFloat(rate, 'f', -1, 64))
				cmp.Settings = append(cmp.Settings, fmt.Sprintf("e at %.0f events/s for both designs: half of the current design's a (median %.0f deliveries/s)", rate, a.DeliveriesPerSecond))
			}
		}
		for round := 1; round <= o.Rounds; round++ {
			for _, d := range cmp.Designs {
				r := &compareRun{Scenario: s, Round: round, Design: d.Name}
				dir := filepath.Join(runsDir, fmt.Sprintf("%s-r%d-%s", s, round, d.Name))
				r.Args = append(append([]string{"-scenarios=" + s, "-out=" + dir, "-tag=run"}, forwarded...), extra...)
				runOne(d, r, dir)
				cmp.Runs = append(cmp.Runs, r)
				f := r.figures()
				logf("%s round %d %s: %.0f deliveries/s (%.0f %% of ceiling), %.3f ms CPU per delivery, peak RSS %.0f MiB, p99 %.1f ms, lost %d, duplicates %d%s",
					s, round, d.Name, f.DeliveriesPerSecond, f.CeilingPercent, f.CPUMsPerDelivery, f.PeakRSSMiB, f.P99Ms, f.Lost, f.Duplicates, errSuffix(r.Error))
			}
		}
	}
	cmp.poolCeilings()
	for _, s := range scenarios {
		for _, d := range cmp.Designs {
			cmp.Summary = append(cmp.Summary, cmp.summarize(s, d.Name))
		}
	}
	cmp.Targets = cmp.targets()
	cmp.ElapsedSeconds = time.Since(started).Seconds()

	var md bytes.Buffer
	cmp.markdown(&md)
	jsonPath := filepath.Join(o.Out, stamp+".json")
	mdPath := filepath.Join(o.Out, stamp+".md")
	raw, err := json.MarshalIndent(cmp, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(jsonPath, append(raw, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(mdPath, md.Bytes(), 0o644); err != nil {
		return err
	}
	_, _ = os.Stdout.Write(md.Bytes())
	fmt.Printf("\nResults: %s, %s (each run's own output in %s)\n", mdPath, jsonPath, runsDir)
	var failed []string
	for _, r := range cmp.Runs {
		if r.Error != "" {
			failed = append(failed, fmt.Sprintf("%s round %d %s: %s", r.Scenario, r.Round, r.Design, r.Error))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("runs failed or void:\n  %s", strings.Join(failed, "\n  "))
	}
	return nil
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return "; FAILED: " + firstLine(e)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// runOne runs one scenario of one design, its output kept in dir (stdout.md, log), and
// reads back the results it wrote. A void run writes its results and fails: both kept.
func runOne(d compareDesign, r *compareRun, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.Error = err.Error()
		return
	}
	start := time.Now()
	defer func() { r.Seconds = time.Since(start).Seconds() }()
	stdout, err := os.Create(filepath.Join(dir, "stdout.md"))
	if err != nil {
		r.Error = err.Error()
		return
	}
	defer stdout.Close()
	logFile, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		r.Error = err.Error()
		return
	}
	defer logFile.Close()
	var tail lastLines
	cmd := exec.Command(d.Binary, r.Args...)
	cmd.Stdout = stdout
	cmd.Stderr = io.MultiWriter(logFile, &prefixWriter{w: os.Stderr, prefix: fmt.Sprintf("  [%s r%d %s] ", r.Scenario, r.Round, d.Name)}, &tail)
	logf("%s round %d: %s %s", r.Scenario, r.Round, d.Name, strings.Join(append([]string{d.Binary}, r.Args...), " "))
	runErr := cmd.Run()
	files, _ := filepath.Glob(filepath.Join(dir, "*-run.json"))
	if len(files) == 1 {
		if raw, err := os.ReadFile(files[0]); err == nil {
			var res results
			if err := json.Unmarshal(raw, &res); err != nil {
				r.Error = fmt.Sprintf("reading %s: %v", files[0], err)
				return
			}
			// Each build names the commit of the directory it runs in, the same for
			// both: say which build it was.
			res.Machine.Commit = d.Label
			r.Result = &res
		}
	}
	switch {
	case runErr != nil:
		r.Error = fmt.Sprintf("%v: %s", runErr, tail.String())
	case r.Result == nil:
		r.Error = fmt.Sprintf("no results in %s", dir)
	}
}

// figures are the run's figures of its scenario (zero when it wrote none).
func (r *compareRun) figures() figures {
	if r.Result == nil {
		return figures{}
	}
	s := r.Result.Scenarios[r.Scenario]
	if s == nil {
		return figures{}
	}
	f := figures{
		DeliveriesPerSecond: s.DeliveriesPerSecond,
		CeilingPercent:      s.CeilingPercent,
		CPUMsPerDelivery:    s.CPUSecondsPer1k, // seconds per 1,000 = milliseconds per 1
		PeakRSSMiB:          s.PeakRSSMiB,
		P99Ms:               s.Latency.P99,
		StoreWrites:         s.StoreWritesPerDelivery,
		Duplicates:          s.Duplicates,
		Deliveries:          s.Deliveries,
		Rate:                s.TargetRate,
	}
	if s.Accounting != nil {
		f.Lost = s.Accounting.Missing
	}
	return f
}

// ceilingOf is the ceiling the run's scenario was judged against (1 or 10 receivers):
// the one its % of ceiling was computed with.
func (r *compareRun) ceilingOf() (receivers int, perSecond float64) {
	if r.Result == nil || r.Result.Scenarios[r.Scenario] == nil {
		return 0, 0
	}
	s := r.Result.Scenarios[r.Scenario]
	if s.CeilingPercent <= 0 {
		return 0, 0
	}
	implied, best := 100*s.DeliveriesPerSecond/s.CeilingPercent, math.Inf(1)
	for _, c := range []*ceilingResult{r.Result.Ceiling1, r.Result.Ceiling10} {
		if c != nil && math.Abs(c.PerSecond-implied) < best {
			best, receivers, perSecond = math.Abs(c.PerSecond-implied), c.Receivers, c.PerSecond
		}
	}
	return receivers, perSecond
}

// poolCeilings sets the medians of the ceilings all runs measured.
func (c *comparison) poolCeilings() {
	by := map[int][]float64{}
	for _, r := range c.Runs {
		if r.Result == nil {
			continue
		}
		for _, x := range []*ceilingResult{r.Result.Ceiling1, r.Result.Ceiling10} {
			if x != nil && x.PerSecond > 0 {
				by[x.Receivers] = append(by[x.Receivers], x.PerSecond)
			}
		}
	}
	c.MedianCeilings = map[int]float64{}
	for n, vs := range by {
		c.MedianCeilings[n] = median(vs)
	}
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	vs = slices.Clone(vs)
	slices.Sort(vs)
	if len(vs)%2 == 0 {
		return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
	}
	return vs[len(vs)/2]
}

func (c *comparison) runsOf(scenario, design string) []*compareRun {
	var out []*compareRun
	for _, r := range c.Runs {
		if r.Scenario == scenario && r.Design == design && r.Result != nil && r.Result.Scenarios[scenario] != nil {
			out = append(out, r)
		}
	}
	return out
}

func (c *comparison) median(scenario, design string) figures {
	return c.summarize(scenario, design).Median
}

// summarize is the median, least and most of each figure over a design's runs of a
// scenario; lost and duplicates are summed (one lost delivery in any run is one too many).
func (c *comparison) summarize(scenario, design string) compareSummaryRow {
	runs := c.runsOf(scenario, design)
	row := compareSummaryRow{Scenario: scenario, Design: design, Runs: len(runs)}
	if len(runs) == 0 {
		return row
	}
	pick := []func(*figures) *float64{
		func(f *figures) *float64 { return &f.DeliveriesPerSecond },
		func(f *figures) *float64 { return &f.CeilingPercent },
		func(f *figures) *float64 { return &f.CPUMsPerDelivery },
		func(f *figures) *float64 { return &f.PeakRSSMiB },
		func(f *figures) *float64 { return &f.P99Ms },
		func(f *figures) *float64 { return &f.StoreWrites },
		func(f *figures) *float64 { return &f.Rate },
	}
	all := make([]figures, len(runs))
	for i, r := range runs {
		all[i] = r.figures()
		row.Median.Lost += all[i].Lost
		row.Median.Duplicates += all[i].Duplicates
		row.Median.Deliveries += all[i].Deliveries
	}
	row.Min.Lost, row.Max.Lost = row.Median.Lost, row.Median.Lost
	row.Min.Duplicates, row.Max.Duplicates = row.Median.Duplicates, row.Median.Duplicates
	for _, p := range pick {
		vs := make([]float64, len(all))
		for i := range all {
			vs[i] = *p(&all[i])
		}
		m := median(vs)
		*p(&row.Median), *p(&row.Min), *p(&row.Max) = m, slices.Min(vs), slices.Max(vs)
	}
	if n, _ := runs[0].ceilingOf(); c.MedianCeilings[n] > 0 {
		row.OfMedianCeiling = 100 * row.Median.DeliveriesPerSecond / c.MedianCeilings[n]
	}
	return row
}

func (c *comparison) row(scenario, design string) *compareSummaryRow {
	for i := range c.Summary {
		if c.Summary[i].Scenario == scenario && c.Summary[i].Design == design {
			return &c.Summary[i]
		}
	}
	return nil
}

// targets are issue 25's, judged on the current design's medians (lost and duplicates
// on the sums of all its runs); the baseline's figure is beside each.
func (c *comparison) targets() []compareTarget {
	var t []compareTarget
	add := func(scenario, name, want string, measure func(*compareSummaryRow) (string, bool)) {
		b, cu := c.row(scenario, "baseline"), c.row(scenario, "current")
		if b == nil || cu == nil || cu.Runs == 0 {
			return
		}
		bs, bm := "–", false
		if b.Runs > 0 {
			bs, bm = measure(b)
		}
		cs, cm := measure(cu)
		t = append(t, compareTarget{Name: name, Want: want, Baseline: bs, Current: cs, Met: cm, BaselineMet: bm})
	}
	ms := func(most float64) func(*compareSummaryRow) (string, bool) {
		return func(r *compareSummaryRow) (string, bool) {
			return fmt.Sprintf("%.3f ms", r.Median.CPUMsPerDelivery), r.Median.CPUMsPerDelivery <= most
		}
	}
	// Against the comparison's median ceiling; each run's own is beside it.
	ceil := func(least float64) func(*compareSummaryRow) (string, bool) {
		return func(r *compareSummaryRow) (string, bool) {
			return fmt.Sprintf("%.0f %% (of each run's ceiling: %.0f %%)", r.OfMedianCeiling, r.Median.CeilingPercent), r.OfMedianCeiling >= least
		}
	}
	add("a", "a: CPU per delivery (1:1)", "≤ 0.12 ms", ms(0.12))
	add("b", "b: CPU per delivery (fan-out 1:10)", "≤ 0.06 ms", ms(0.06))
	add("a", "a: deliveries/s", "≥ 35 % of the median ceiling", ceil(35))
	add("b", "b: deliveries/s", "≥ 55 % of the median ceiling", ceil(55))
	add("a", "a: peak RSS, the chart's defaults", "≤ 150 MiB", func(r *compareSummaryRow) (string, bool) {
		return fmt.Sprintf("%.0f MiB", r.Median.PeakRSSMiB), r.Median.PeakRSSMiB <= 150
	})
	add("e", "e: p99 ingest-to-receipt at half of a", "≤ 50 ms", func(r *compareSummaryRow) (string, bool) {
		return fmt.Sprintf("%.1f ms at %.0f/s", r.Median.P99Ms, r.Median.Rate), r.Median.P99Ms <= 50
	})
	// Nothing lost, in any run of any scenario; duplicates no more than the baseline's.
	var lost [2]int64
	var dups [2]int64
	var deliveries [2]int64
	for _, r := range c.Summary {
		i := 0
		if r.Design == "current" {
			i = 1
		}
		lost[i] += r.Median.Lost
		dups[i] += r.Median.Duplicates
		deliveries[i] += r.Median.Deliveries
	}
	t = append(t, compareTarget{Name: "all runs: deliveries lost", Want: "0",
		Baseline: strconv.FormatInt(lost[0], 10), Current: strconv.FormatInt(lost[1], 10), Met: lost[1] == 0, BaselineMet: lost[0] == 0})
	perM := func(i int) float64 {
		if deliveries[i] == 0 {
			return 0
		}
		return float64(dups[i]) / float64(deliveries[i]) * 1e6
	}
	t = append(t, compareTarget{Name: "all runs: duplicate deliveries", Want: "as the baseline's (per million deliveries)",
		Baseline: fmt.Sprintf("%d (%.1f per million)", dups[0], perM(0)), Current: fmt.Sprintf("%d (%.1f per million)", dups[1], perM(1)),
		Met: perM(1) <= perM(0), BaselineMet: true})
	return t
}

func (c *comparison) markdown(w io.Writer) {
	base, cur := c.Designs[0], c.Designs[1]
	fmt.Fprintf(w, "\n## heraldbench comparison — %s\n\n", c.Date)
	rounds := fmt.Sprintf("%d rounds", c.Rounds)
	if c.Rounds == 1 {
		rounds = "1 round"
	}
	fmt.Fprintf(w, "Baseline %s against current %s, on this machine in one run: %s, %s. Machine: %d CPUs (%s), %s, kernel %s. Took %.0f min.\n\n",
		base.Label, cur.Label, rounds, c.Order, c.Machine.CPUs, c.Machine.CPUModel, c.Machine.GoVersion, c.Machine.Kernel, c.ElapsedSeconds/60)
	for _, s := range c.Settings {
		fmt.Fprintf(w, "- %s\n", s)
	}
	fmt.Fprintf(w, "- every run: `%s`\n\n", strings.Join(c.Forwarded, " "))
	var ceilings []string
	for _, n := range slices.Sorted(maps.Keys(c.MedianCeilings)) {
		ceilings = append(ceilings, fmt.Sprintf("%.0f POSTs/s to %d receiver(s)", c.MedianCeilings[n], n))
	}
	fmt.Fprintf(w, "Medians over the rounds (least–most in brackets). %% of the median ceiling: of the medians of the ceilings all runs measured (%s), the targets' yardstick; %% of each run's ceiling: the median of each run against the ceiling it measured just before. Lost (published, neither received nor still held) and duplicates summed over the rounds. CPU per delivery is the dispatcher's (embedded NATS included) and the steadiest figure on a shared machine.\n",
		strings.Join(ceilings, ", "))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | design | deliveries/s | % of the median ceiling | % of each run's ceiling | CPU ms / delivery | peak RSS MiB | p99 ms | store writes / delivery | lost | duplicates |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	rng := func(m, lo, hi float64, format string) string {
		if lo == hi {
			return fmt.Sprintf(format, m)
		}
		return fmt.Sprintf(format+" ("+format+"–"+format+")", m, lo, hi)
	}
	ratio := func(cu, b float64) string {
		if b == 0 || cu == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f×", cu/b)
	}
	for _, s := range compareScenarios {
		b, cu := c.row(s, "baseline"), c.row(s, "current")
		if b == nil || cu == nil {
			continue
		}
		title := s
		for _, r := range c.runsOf(s, "current") {
			title = s + ". " + r.Result.Scenarios[s].Title
			break
		}
		for _, x := range []struct {
			row   *compareSummaryRow
			label string
		}{{b, "baseline " + base.Label}, {cu, "current " + cur.Label}} {
			if x.row.Runs == 0 {
				fmt.Fprintf(w, "| %s | %s | no run | | | | | | | | |\n", title, x.label)
				continue
			}
			m, lo, hi := x.row.Median, x.row.Min, x.row.Max
			writes := "–" // the baseline's heraldbench does not count them
			if m.StoreWrites > 0 {
				writes = rng(m.StoreWrites, lo.StoreWrites, hi.StoreWrites, "%.2f")
			}
			fmt.Fprintf(w, "| %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %d | %d |\n", title, x.label,
				rng(m.DeliveriesPerSecond, lo.DeliveriesPerSecond, hi.DeliveriesPerSecond, "%.0f"), x.row.OfMedianCeiling,
				rng(m.CeilingPercent, lo.CeilingPercent, hi.CeilingPercent, "%.0f"),
				rng(m.CPUMsPerDelivery, lo.CPUMsPerDelivery, hi.CPUMsPerDelivery, "%.3f"),
				rng(m.PeakRSSMiB, lo.PeakRSSMiB, hi.PeakRSSMiB, "%.0f"),
				rng(m.P99Ms, lo.P99Ms, hi.P99Ms, "%.1f"), writes, m.Lost, m.Duplicates)
			title = ""
		}
		fmt.Fprintf(w, "| | current ÷ baseline | %s | %s | %s | %s | %s | %s | | | |\n",
			ratio(cu.Median.DeliveriesPerSecond, b.Median.DeliveriesPerSecond), ratio(cu.OfMedianCeiling, b.OfMedianCeiling),
			ratio(cu.Median.CeilingPercent, b.Median.CeilingPercent),
			ratio(cu.Median.CPUMsPerDelivery, b.Median.CPUMsPerDelivery), ratio(cu.Median.PeakRSSMiB, b.Median.PeakRSSMiB),
			ratio(cu.Median.P99Ms, b.Median.P99Ms))
	}
	fmt.Fprintln(w, "\n| target (issue 25; reported, not asserted) | want | baseline | current | met |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, t := range c.Targets {
		met := "met"
		if !t.Met {
			met = "**missed**"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", t.Name, t.Want, t.Baseline, t.Current, met)
	}
	fmt.Fprintln(w, "\nEach run, in the order run (the 1-minute load average at the scenario's start → end):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | round | design | deliveries/s | % of ceiling | ceiling POSTs/s | CPU ms / delivery | peak RSS MiB | p99 ms | lost | duplicates | load avg | s |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
	for _, r := range c.Runs {
		f := r.figures()
		load := ""
		if r.Result != nil && r.Result.Scenarios[r.Scenario] != nil {
			load = oneMinuteLoad(r.Result.Scenarios[r.Scenario].LoadAvg)
		}
		_, ceiling := r.ceilingOf()
		if r.Error != "" {
			load += " **" + strings.ReplaceAll(firstLine(r.Error), "|", "/") + "**"
		}
		fmt.Fprintf(w, "| %s | %d | %s | %.0f | %.0f | %.0f | %.3f | %.0f | %.1f | %d | %d | %s | %.0f |\n", r.Scenario, r.Round, r.Design,
			f.DeliveriesPerSecond, f.CeilingPercent, ceiling, f.CPUMsPerDelivery, f.PeakRSSMiB, f.P99Ms, f.Lost, f.Duplicates, load, r.Seconds)
	}
}

// oneMinuteLoad shortens "l1 l5 l15 → l1 l5 l15" to "l1 → l1".
func oneMinuteLoad(s string) string {
	parts := strings.Split(s, "→")
	for i, p := range parts {
		if f := strings.Fields(p); len(f) > 0 {
			parts[i] = f[0]
		}
	}
	return strings.Join(parts, " → ")
}

// chartMemoryLimit is the chart's default dispatcher memory limit in bytes (0: none).
func chartMemoryLimit(path string) (int64, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var v struct {
		Dispatcher struct {
			Resources struct {
				Limits map[string]string `json:"limits"`
			} `json:"resources"`
		} `json:"dispatcher"`
	}
	if err := yaml.Unmarshal(raw, &v); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	m, ok := v.Dispatcher.Resources.Limits["memory"]
	if !ok || m == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(m)
	if err != nil {
		return 0, fmt.Errorf("%s: dispatcher.resources.limits.memory %q: %w", path, m, err)
	}
	return q.Value(), nil
}

// prefixWriter writes each line with a prefix (the run's progress on the comparison's
// stderr).
type prefixWriter struct {
	w      io.Writer
	prefix string
	mu     sync.Mutex
	mid    bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out bytes.Buffer
	for _, c := range b {
		if !p.mid {
			out.WriteString(p.prefix)
			p.mid = true
		}
		out.WriteByte(c)
		if c == '\n' {
			p.mid = false
		}
	}
	_, err := p.w.Write(out.Bytes())
	return len(b), err
}

// lastLines keeps the end of a run's stderr, for the reason it failed.
type lastLines struct {
	mu  sync.Mutex
	buf []byte
}

func (l *lastLines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	if len(l.buf) > 2048 {
		l.buf = l.buf[len(l.buf)-2048:]
	}
	return len(b), nil
}

func (l *lastLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(l.buf)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, " / ")
}
