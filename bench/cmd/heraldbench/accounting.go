package main

import (
	"fmt"
	"strings"
)

// accounting says where every delivery a scenario published ended up, counted the way
// Hookdeck's Outpost load test counts its events: published = delivered + cut off +
// missing. Published are the events the producer got a 202 for, times the endpoints they
// route to; delivered, those of them their receiver got (first receipts, from the
// receivers); cut off, those the store still held when the scenario ended (the dead
// endpoint's in c, a drain cut short), asked of the store after the dispatchers stopped;
// missing, the rest: neither received nor kept. A scenario whose missing is not 0 does
// not balance, and the run is void: its rates would count deliveries that did not
// happen, or hide ones that were lost.
type accounting struct {
	Published int64 `json:"published"`
	Delivered int64 `json:"delivered"`
	CutOff    int64 `json:"cut_off"`
	Missing   int64 `json:"missing"`
	// Unpublished were received although the producer never saw their 202 (a POST whose
	// answer was lost): not in the balance, shown when there are any.
	Unpublished int64 `json:"received_unpublished,omitempty"`
	// Error is why the store could not be asked what it still holds.
	Error string `json:"error,omitempty"`
}

func (a *accounting) balanced() bool { return a.Error == "" && a.Missing == 0 }

func (a *accounting) String() string {
	s := fmt.Sprintf("published %d = delivered %d + cut off %d + missing %d", a.Published, a.Delivered, a.CutOff, a.Missing)
	if a.Unpublished > 0 {
		s += fmt.Sprintf(" (and %d received without a 202)", a.Unpublished)
	}
	if a.Error != "" {
		s += "; the store could not be asked: " + a.Error
	}
	return s
}

// count fills in published, delivered and unpublished from the producer's 202s and the
// receivers' first receipts; every receiver gets every event (all subscribe to "*").
func (s *setup) count(a *accounting) {
	a.Published, a.Delivered, a.Unpublished = 0, 0, 0
	n := s.lg.next.Load()
	for _, rc := range append(append([]*receiver{}, s.healthy...), s.dead...) {
		for i := range n {
			accepted, got := s.lg.acc.get(i) != 0, rc.got.get(i) != 0
			switch {
			case accepted && got:
				a.Published++
				a.Delivered++
			case accepted:
				a.Published++
			case got:
				a.Unpublished++
			}
		}
	}
}

// account fills in r's accounting when the scenario is over. When something published
// was not received, the dispatchers are stopped (they finish the attempts under way, so
// the receipts are final), and one is started again on the same store, with every
// endpoint held, to ask how many deliveries it still holds.
func (s *setup) account(r *scenarioResult) {
	if s.lg == nil || s.child == nil {
		return
	}
	a := &accounting{}
	s.count(a)
	if a.Delivered < a.Published {
		for _, c := range s.children() {
			c.stop()
		}
		s.count(a)
		held, err := s.held()
		if err != nil {
			a.Error = err.Error()
		}
		a.CutOff = held
	}
	a.Missing = a.Published - a.Delivered - a.CutOff
	r.Accounting = a
	if !a.balanced() {
		r.Notes = append(r.Notes, "VOID, the deliveries do not balance: "+a.String())
	}
	logf("%s: %s", s.name, a)
}

// held starts a dispatcher on the stopped one's store with the scenario's endpoints held
// (nothing is taken) and returns how many deliveries the store holds for them.
func (s *setup) held() (int64, error) {
	url := ""
	if s.nats != nil {
		url = s.nats.url()
	}
	c, err := startChildIn(s.child.dir, url, s.b.o.Observer, s.b.o.DispatcherEnv, 0)
	if err != nil {
		return 0, err
	}
	defer c.stop()
	specs := append([]endpointSpec{}, s.specs...)
	for i := range specs {
		specs[i].Hold = "Suspended"
	}
	if err := c.call("POST", "/endpoints", specs, nil); err != nil {
		return 0, err
	}
	var pending map[string]int64
	if err := c.call("GET", "/pending", nil, &pending); err != nil {
		return 0, err
	}
	var n int64
	for _, spec := range specs {
		n += pending[spec.Name]
	}
	return n, nil
}

// void lists the scenarios (and the runs inside f and g) whose deliveries do not balance.
func void(res *results) []string {
	var out []string
	var check func(name string, r *scenarioResult)
	check = func(name string, r *scenarioResult) {
		if r == nil {
			return
		}
		if a := r.Accounting; a != nil && !a.balanced() {
			out = append(out, name+": "+a.String())
		}
		for i, w := range r.WithRegistered {
			check(fmt.Sprintf("%s (with registered endpoints, run %d)", name, i+1), w)
		}
		for i, g := range r.ScaleOutRuns {
			check(fmt.Sprintf("%s (scale-out run %d)", name, i+1), g)
		}
	}
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		check(k, res.Scenarios[k])
	}
	return out
}

// accountingLines is the accounting of every scenario, for the report.
func accountingLines(res *results) string {
	var b strings.Builder
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		if r := res.Scenarios[k]; r != nil && r.Accounting != nil {
			fmt.Fprintf(&b, "- %s: %s\n", k, r.Accounting)
		}
	}
	return b.String()
}
