package main

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// TestMain lets this test binary serve as the benchmark's dispatcher child, as the
// heraldbench binary does: startChild runs os.Executable().
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == childRole {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestBench_ShortRunAccountsForEveryDelivery runs the benchmark end to end at a size for
// `make test`: the ceilings, a (1:1), c (ten healthy endpoints and one that never
// answers) and d (a held backlog, then drained). Every delivery published must be
// delivered or, for c's dead endpoint, still held by the store: published = delivered +
// cut off, nothing missing. So the benchmark cannot rot unseen, and its accounting is
// checked on a case where cut off is not 0.
func TestBench_ShortRunAccountsForEveryDelivery(t *testing.T) {
	var o options
	fs := flag.NewFlagSet("heraldbench", flag.ContinueOnError)
	o.register(fs)
	out := t.TempDir()
	if err := fs.Parse([]string{"-scenarios", "a,c,d", "-duration", "1s", "-ceiling-duration", "500ms",
		"-concurrency", "4", "-batch", "20", "-window", "200", "-payload", "256", "-backlog", "1000",
		"-dead-timeout", "1s", "-drain-timeout", "1m", "-out", out, "-tag", "test"}); err != nil {
		t.Fatal(err)
	}
	o.finish()
	if err := run(&o); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*-test.json"))
	if len(files) != 1 {
		t.Fatalf("results: %v", files)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var res results
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "c", "d"} {
		r := res.Scenarios[k]
		if r == nil || r.Accounting == nil {
			t.Fatalf("scenario %s has no accounting", k)
		}
		a := r.Accounting
		t.Logf("%s: %s", k, a)
		if a.Published == 0 || a.Missing != 0 || a.Published != a.Delivered+a.CutOff {
			t.Errorf("%s: %s", k, a)
		}
		switch k {
		case "c":
			// The dead endpoint's deliveries, one per event, are all still in the store.
			if a.CutOff == 0 || a.CutOff != a.Published/11 {
				t.Errorf("c: cut off %d, want the dead endpoint's %d", a.CutOff, a.Published/11)
			}
		default:
			if a.CutOff != 0 || a.Delivered != a.Published {
				t.Errorf("%s: every delivery should have arrived: %s", k, a)
			}
		}
	}
	// The store's writes are reported, and a 1:1 delivery costs at most two (issue 25:
	// the delivery, and shares of the request's accepted ids, the tally and the history).
	a := res.Scenarios["a"]
	t.Logf("a: %.3f store writes per delivery %v, %.0f B written to files", a.StoreWritesPerDelivery, a.StoreWritesByStream, a.FileBytesPerDelivery)
	if a.StoreWritesByStream["HERALD_DELIVERIES"] < uint64(a.Deliveries) || a.StoreWritesPerDelivery > 2 || a.FileBytesPerDelivery <= 0 {
		t.Errorf("a: %.3f store writes per delivery %v (want the deliveries' own and at most 2 in all), %.0f B written to files",
			a.StoreWritesPerDelivery, a.StoreWritesByStream, a.FileBytesPerDelivery)
	}
}
