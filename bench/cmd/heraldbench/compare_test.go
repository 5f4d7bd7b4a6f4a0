package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRun is one finished run of a comparison with the figures the report reads; its
// ceilings are `ceiling` POSTs/s, to one receiver and to ten.
func fakeRun(scenario string, round int, design string, dps, ceiling, cpuMs, rss, p99 float64, lost, dups int64) *compareRun {
	s := &scenarioResult{
		Name: scenario, Title: "t", Fanout: 1, Deliveries: 1000, DeliveriesPerSecond: dps, CeilingPercent: 100 * dps / ceiling,
		CPUSecondsPer1k: cpuMs, PeakRSSMiB: rss, Latency: percentiles{P99: p99}, Duplicates: dups,
		Accounting: &accounting{Published: 1000, Delivered: 1000 - lost, Missing: lost},
	}
	c1, c10 := &ceilingResult{Receivers: 1, PerSecond: ceiling}, &ceilingResult{Receivers: 10, PerSecond: ceiling}
	switch scenario {
	case "b":
		s.Fanout = 10
		c1.PerSecond = 1 // so that the ceiling b was judged against is told by its figures
	case "e":
		s.TargetRate = dps
	}
	return &compareRun{Scenario: scenario, Round: round, Design: design,
		Result: &results{Ceiling1: c1, Ceiling10: c10, Scenarios: map[string]*scenarioResult{scenario: s}}}
}

// TestCompare_MediansRatiosAndTargets checks what the report makes of the runs: the
// median of each design's rounds, the ceiling as the median of every run's, lost and
// duplicates summed over every run, and issue 25's targets judged on the current design.
func TestCompare_MediansRatiosAndTargets(t *testing.T) {
	c := &comparison{
		Designs: []compareDesign{{Name: "baseline", Label: "old"}, {Name: "current", Label: "new"}},
		Rounds:  3,
		Runs: []*compareRun{
			fakeRun("a", 1, "baseline", 4000, 20000, 0.20, 240, 300, 0, 0),
			fakeRun("a", 1, "current", 7000, 20000, 0.11, 140, 200, 1, 0), // one lost delivery
			fakeRun("a", 2, "baseline", 5000, 20000, 0.25, 250, 310, 0, 0),
			fakeRun("a", 2, "current", 9000, 20000, 0.13, 160, 250, 0, 0),
			fakeRun("a", 3, "baseline", 4500, 20000, 0.22, 245, 305, 0, 0),
			fakeRun("a", 3, "current", 8000, 20000, 0.115, 145, 220, 0, 0),
			fakeRun("b", 1, "baseline", 8000, 20000, 0.16, 300, 900, 0, 0),
			// Its own ceiling measured low: 83 % of it, 50 % of the median one.
			fakeRun("b", 1, "current", 10000, 12000, 0.07, 300, 800, 0, 2),
			fakeRun("e", 1, "baseline", 4000, 20000, 0.4, 150, 70, 0, 0),
			fakeRun("e", 1, "current", 4000, 20000, 0.3, 140, 45, 0, 0),
			{Scenario: "b", Round: 2, Design: "current", Error: "exit status 1"}, // failed: not counted
		},
	}
	c.poolCeilings()
	if c.MedianCeilings[1] != 20000 || c.MedianCeilings[10] != 20000 {
		t.Errorf("median ceilings %v, want 20000 to 1 and to 10 receivers", c.MedianCeilings)
	}
	for _, s := range []string{"a", "b", "e"} {
		for _, d := range c.Designs {
			c.Summary = append(c.Summary, c.summarize(s, d.Name))
		}
	}
	a := c.row("a", "current")
	if a.Runs != 3 || a.Median.DeliveriesPerSecond != 8000 || a.Min.DeliveriesPerSecond != 7000 || a.Max.DeliveriesPerSecond != 9000 ||
		a.Median.CPUMsPerDelivery != 0.115 || a.Median.PeakRSSMiB != 145 || a.Median.Lost != 1 || a.OfMedianCeiling != 40 {
		t.Errorf("a, current: %+v", a)
	}
	if b := c.row("b", "current"); b.Runs != 1 || b.Median.Duplicates != 2 || b.OfMedianCeiling != 50 || int(b.Median.CeilingPercent) != 83 {
		t.Errorf("b, current: %+v (the failed run must not count)", b)
	}
	c.Targets = c.targets()
	want := map[string]bool{
		"a: CPU per delivery (1:1)":             true,  // 0.115
		"b: CPU per delivery (fan-out 1:10)":    false, // 0.07
		"a: deliveries/s":                       true,  // 40 % of the median ceiling
		"b: deliveries/s":                       false, // 50 % of it (83 % of its own)
		"a: peak RSS, the chart's defaults":     true,  // 145
		"e: p99 ingest-to-receipt at half of a": true,  // 45
		"all runs: deliveries lost":             false, // one in a's first round
		"all runs: duplicate deliveries":        false, // 2 against none
	}
	if len(c.Targets) != len(want) {
		t.Fatalf("targets: %+v", c.Targets)
	}
	for _, tg := range c.Targets {
		met, ok := want[tg.Name]
		if !ok || met != tg.Met {
			t.Errorf("target %q: met %v (%s against %s), want %v", tg.Name, tg.Met, tg.Current, tg.Baseline, met)
		}
	}
	var md bytes.Buffer
	c.markdown(&md)
	for _, s := range []string{"| a. t | baseline old | 4500 (4000–5000) |", "| | current ÷ baseline | 1.78× |", "**missed**", "exit status 1"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("the report lacks %q:\n%s", s, md.String())
		}
	}
}

// TestChartMemoryLimit reads the dispatcher's memory limit from the chart the way the
// comparison gives it to every dispatcher child as GOMEMLIMIT.
func TestChartMemoryLimit(t *testing.T) {
	got, err := chartMemoryLimit(filepath.Join("..", "..", "..", "charts", "herald", "values.yaml"))
	if err != nil || got != 512<<20 {
		t.Errorf("the chart's limit: %d, %v; want 512Mi (charts/herald/values.yaml)", got, err)
	}
	dir := t.TempDir()
	none := filepath.Join(dir, "none.yaml")
	_ = os.WriteFile(none, []byte("dispatcher:\n  resources:\n    requests:\n      memory: 128Mi\n"), 0o644)
	if got, err := chartMemoryLimit(none); got != 0 || err != nil {
		t.Errorf("no limit: %d, %v", got, err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("dispatcher:\n  resources:\n    limits:\n      memory: lots\n"), 0o644)
	if _, err := chartMemoryLimit(bad); err == nil || !strings.Contains(err.Error(), "lots") {
		t.Errorf("a bad quantity: %v", err)
	}
}
