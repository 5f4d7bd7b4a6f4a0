package routing

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"
)

// The issue's filter: S is a 200-character literal of x; without a static judge, one
// evaluation allocated 1.5 GB before cel-go's run-time cost limit answered.
func issueFilter() string {
	s := "'" + strings.Repeat("x", 200) + "'"
	return "(" + s + ".replace('x'," + s + ")).replace('x', " + s + ".replace('x'," + s + ")).size() > 0 && event.type == 'a'"
}

func TestCompileFilter_IssueFilterIsRefusedBeforeItRuns(t *testing.T) {
	expr := issueFilter()
	if len(expr) != 885 {
		t.Fatalf("the fixture is %d characters long, the issue's is 885", len(expr))
	}
	var f *Filter
	var err error
	allocated := allocatedBy(func() { f, err = CompileFilter(expr) })
	var budget *BudgetError
	if !errors.As(err, &budget) {
		t.Fatalf("CompileFilter = (%v, %v), want a *BudgetError", f, err)
	}
	if budget.Estimate <= FilterBudget || budget.Budget != FilterBudget {
		t.Errorf("BudgetError = %+v, want an estimate over the budget of %d", budget, FilterBudget)
	}
	for _, want := range []string{fmt.Sprint(FilterBudget), fmt.Sprint(budget.Estimate), "1048576 bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q should name %s", err, want)
		}
	}
	// Judging must not run any part of the filter (constant folding would build the
	// 1.5 GB string at compile time).
	if allocated > 8<<20 {
		t.Errorf("compiling the filter allocated %d bytes", allocated)
	}
}

// Ordinary filters: each must be admitted, and its estimate is logged so that a change
// of the cost model shows how much room they keep.
func TestCompileFilter_AdmitsOrdinaryFilters(t *testing.T) {
	for _, tt := range []struct{ why, expr string }{
		{"a field comparison", "event.data.amount > 1000"},
		{"type, number and membership in a literal list", "event.type == 'invoice.paid' && event.data.amount > 1000 && event.data.customer.tier in ['gold', 'platinum']"},
		{"has() guards an optional field", "has(event.data.refund) && event.data.refund > 0"},
		{"membership in an event list", "'vip' in event.data.tags"},
		{"startsWith on attributes", "event.source.startsWith('billing/') && event.id.startsWith('evt_')"},
		{"lowerAscii on a field", "event.data.customer.email.lowerAscii().endsWith('@example.com')"},
		{"lowerAscii on two fields", "event.data.customer.email.lowerAscii() == 'a@b.c' || event.data.customer.name.lowerAscii() == 'ana'"},
		{"exists() over an event list", "event.data.tags.exists(t, t == 'vip')"},
		{"exists() with two conditions on each element", "event.data.items.exists(i, i.sku.startsWith('A-') && i.qty > 10)"},
		{"all() with has()", "event.data.items.all(i, has(i.sku) && i.qty > 0)"},
		{"exists() and lowerAscii together", "event.data.items.exists(i, i.qty > 10) && event.data.customer.email.lowerAscii().endsWith('@example.com')"},
		{"timestamp arithmetic on created_at", "timestamp(event.created_at) > timestamp('2026-01-01T00:00:00Z') + duration('1h')"},
		{"a timestamp from the payload", "timestamp(event.data.due) - timestamp(event.created_at) < duration('72h')"},
		{"an hour in a time zone", "timestamp(event.created_at).getHours('Europe/Paris') >= 9"},
		{"contains on a payload string", "event.data.note.contains('urgent')"},
		{"a literal regular expression", "event.data.customer.email.matches('^[a-z.]+@example\\\\.com$')"},
		{"split of the event type", "event.type.split('.')[0] == 'invoice'"},
		{"size of a string", "size(event.data.note) > 3"},
		{"arithmetic on two payload numbers", "event.data.amount + event.data.fee > 1000"},
	} {
		t.Run(tt.why, func(t *testing.T) {
			if _, err := CompileFilter(tt.expr); err != nil {
				t.Fatalf("CompileFilter(%q): %v", tt.expr, err)
			}
			t.Logf("estimate %d of %d", mustEstimate(t, tt.expr), FilterBudget)
		})
	}
}

func TestCompileFilter_RefusesHostileFilters(t *testing.T) {
	for _, tt := range []struct{ why, expr, wantErr string }{
		{"the issue's growth by replacement", issueFilter(), "too expensive"},
		{"replacement grows a payload string", "event.data.s.replace('', event.data.s).size() > 0", "too expensive"},
		{"a loop inside a loop over event lists", "event.data.a.exists(x, event.data.b.exists(y, x == y))", "too expensive"},
		{"a string function on every element of an event list", "event.data.tags.exists(t, t.lowerAscii() == 'vip')", "too expensive"},
		{"map() builds a list as long as the event's", "event.data.tags.map(t, t).size() > 3", "too expensive"},
		{"filter() builds a list as long as the event's", "event.data.tags.filter(t, t == 'x').size() > 3", "too expensive"},
		{"split('') of a payload string makes a list per character", "event.data.s.split('').size() > 3", "too expensive"},
		{"a short pattern that compiles to a large program", "event.data.s.matches('a{1000}')", "too expensive"},
		{"concatenations of payload strings", "event.data.s + event.data.s + event.data.s + event.data.s + event.data.s + event.data.s == 'x'", "too expensive"},
		{"nested loops over literal lists multiply", "[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, [1,2,3,4,5,6,7,8,9,10].all(f, [1,2,3,4,5,6,7,8,9,10].all(g, a+b+c+d+e+f+g > 0)))))))", "too expensive"},
		{"deep comparisons of payload values, each as long as the event", strings.Repeat("event.data.a == event.data.b || ", 9) + "event.data.a == event.data.b", "too expensive"},
		{"hashing a payload string as a map key on every element", "event.data.l.exists(x, event.data.s in {'a': 1})", "too expensive"},
		{"a pattern from the event is compiled on every evaluation", "event.data.s.matches(event.data.pattern)", "string literal"},
		{"format() output cannot be bounded", "'%s'.format([event.data]) == 'x'", "format is not available"},
		{"join() output cannot be bounded", "event.data.tags.join(',') == 'x'", "join is not available"},
		{"an invalid literal pattern", "event.data.s.matches('(')", "string literal"},
	} {
		t.Run(tt.why, func(t *testing.T) {
			_, err := CompileFilter(tt.expr)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CompileFilter(%q) = %v, want an error containing %q", tt.expr, err, tt.wantErr)
			}
		})
	}
}

// Every function of the environment is either charged by the cost model, cheap by
// cel-go's own estimate, or refused: a cel-go upgrade that adds a function fails here
// until someone decides which.
func TestFilterEnv_EveryFunctionIsJudged(t *testing.T) {
	cheap := map[string]bool{
		// Operators and O(1) functions; string comparison and `in` are charged by
		// cel-go per character or element.
		"!_": true, "-_": true, "@in": true, "@not_strictly_false": true, "_!=_": true, "_%_": true, "_&&_": true,
		"_*_": true, "_+_": true, "_-_": true, "_/_": true, "_<=_": true, "_<_": true, "_==_": true, "_>=_": true,
		"_>_": true, "_?_:_": true, "_[_]": true, "__not_strictly_false__": true, "_in_": true, "_||_": true,
		"in": true, "dyn": true, "type": true, "double": true, "int": true, "uint": true, "bool": true,
		"duration": true, "timestamp": true, "bytes": true, "string": true, "size": true,
		"getDate": true, "getDayOfMonth": true, "getDayOfWeek": true, "getDayOfYear": true, "getFullYear": true,
		"getHours": true, "getMilliseconds": true, "getMinutes": true, "getMonth": true, "getSeconds": true,
		// Charged by cel-go per character.
		"contains": true, "startsWith": true, "endsWith": true,
		// Charged by costModel.
		"matches": true, "charAt": true, "indexOf": true, "lastIndexOf": true, "lowerAscii": true,
		"upperAscii": true, "replace": true, "split": true, "substring": true, "trim": true,
	}
	for name := range filterEnv.Functions() {
		if _, refused := refusedFunctions[name]; !cheap[name] && !refused {
			t.Errorf("function %s is in the filter environment but neither judged nor refused", name)
		}
	}
}

// The worst filters the budget admits, each on the event that makes it most expensive.
// Allocation is what one evaluation allocates; peak is the most it holds at once.
var worstAdmitted = []struct {
	why, expr, event string
	// garbage marks a filter that fails on every element of a list: cel-go allocates
	// an error (72 bytes) per failure, freed as the loop goes on, so the allocation is
	// not bounded by the cost model but what is held at once is.
	garbage bool
}{
	{"a loop over the longest list, near the budget", "event.data.l.exists(x, x == 'a' || x == 'b' || x == 'c')", "numbers", false},
	{"a loop over the longest list of strings, near the budget", "event.data.l.exists(x, x.startsWith('a') || x.endsWith('b') || x == 'c')", "strings", false},
	{"a loop over a list of objects with two conditions", "event.data.l.exists(x, x.k.startsWith('B') && x.n > 10)", "objects", false},
	{"a loop over a map's keys", "event.data.m.exists(k, k.startsWith('z') || k == 'y')", "map", false},
	{"a loop failing on every element", "event.data.l.exists(x, x.k == 'a' || x.n > 1)", "numbers", true},
	{"case changes of the longest string", "event.data.s.lowerAscii() == 'a' || event.data.s.upperAscii() == 'b' || event.data.s.lowerAscii().endsWith('c') || event.data.s.upperAscii().startsWith('d')", "string", false},
	{"concatenation of the longest string", "string(event.data.s) + string(event.data.s) == 'x'", "string", false},
	{"replace() on the longest string", "event.data.s.replace('A', 'bb') == 'x'", "string", false},
	{"indexOf() converts the longest string to runes", "event.data.s.indexOf('B') > 3", "string", false},
	{"a regular expression of 20-odd instructions on the longest string", "event.data.s.matches('A{20}B')", "string", false},
}

// memoryBound is "a few MiB": what one evaluation may allocate and hold.
const memoryBound = 8 << 20

func TestFilterBudget_WorstAdmittedFiltersStayWithinAFewMiB(t *testing.T) {
	for _, tt := range worstAdmitted {
		t.Run(tt.why, func(t *testing.T) {
			f, err := CompileFilter(tt.expr)
			if err != nil {
				t.Fatalf("CompileFilter(%q): %v", tt.expr, err)
			}
			est := mustEstimate(t, tt.expr)
			if est < FilterBudget/4 {
				t.Errorf("estimate %d is not near the budget of %d; the row does not test the worst case", est, FilterBudget)
			}
			f.timeout = time.Minute // a slow test machine must not cut the evaluation short
			allocated, held, evalErr := evaluationMemory(t, f, tt.expr, tt.event)
			t.Logf("estimate %d: allocated %d bytes, held at most %d (%v)", est, allocated, held, evalErr)
			if held > memoryBound {
				t.Errorf("one evaluation held %d bytes at once, more than %d", held, memoryBound)
			}
			if !tt.garbage && allocated > memoryBound {
				t.Errorf("one evaluation allocated %d bytes, more than %d", allocated, memoryBound)
			}
		})
	}
}

// maximalEventNames name events of the largest size the ingest API accepts, each making
// one field as large as it can be (the worst case of a filter depends on which field it
// works on), with the other fields present and small.
var maximalEventNames = []string{"string", "numbers", "strings", "objects", "map"}

// maximalEvent builds one of them: the filter's input and the request body it comes
// from.
func maximalEvent(name string) (map[string]any, []byte, error) {
	var key, value string
	switch name {
	case "string":
		key, value = "s", `"`+repeatUpTo(`A`, "")+`"`
	case "numbers":
		key, value = "l", `[`+repeatUpTo(`0`, ",")+`]`
	case "strings":
		key, value = "l", `[`+repeatUpTo(`"A"`, ",")+`]`
	case "objects":
		key, value = "l", `[`+repeatUpTo(`{"k":"A","n":1}`, ",")+`]`
	case "map":
		key, value = "m", `{`+repeatKeysUpTo()+`}`
	default:
		return nil, nil, fmt.Errorf("no maximal event %q", name)
	}
	fields := []string{`"` + key + `":` + value}
	for _, small := range []struct{ key, value string }{
		{"s", `"A"`}, {"n", `1`}, {"l", `["A"]`}, {"m", `{"k":"A"}`}, {"pattern", `"A"`},
	} {
		if small.key != key {
			fields = append(fields, `"`+small.key+`":`+small.value)
		}
	}
	data := "{" + strings.Join(fields, ",") + "}"
	body := `{"id":"evt_1","type":"invoice.paid","source":"billing","data":` + data + `}`
	if len(body) > MaxEventBytes {
		return nil, nil, fmt.Errorf("event %s is %d bytes, over %d", name, len(body), MaxEventBytes)
	}
	var v any
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		return nil, nil, fmt.Errorf("event %s: %w", name, err)
	}
	return EventInput("evt_1", "invoice.paid", "billing", time.Now(), v), []byte(body), nil
}

// maximalEvents builds every maximal event once per test binary.
func maximalEvents(t testing.TB) map[string]map[string]any {
	t.Helper()
	maximalOnce.Do(func() {
		maximal = map[string]map[string]any{}
		for _, name := range maximalEventNames {
			input, body, err := maximalEvent(name)
			if err != nil {
				maximalErr = err
				return
			}
			maximal[name] = input
			maximalBodies = append(maximalBodies, body)
		}
	})
	if maximalErr != nil {
		t.Fatal(maximalErr)
	}
	return maximal
}

var (
	maximalOnce   sync.Once
	maximal       map[string]map[string]any
	maximalBodies [][]byte
	maximalErr    error
)

// room is what a maximal event's own field has, leaving space for the envelope and the
// small fields.
const room = MaxEventBytes - 256

func repeatUpTo(item, sep string) string {
	n := (room + len(sep)) / (len(item) + len(sep))
	return strings.TrimSuffix(strings.Repeat(item+sep, n), sep)
}

func repeatKeysUpTo() string {
	var b strings.Builder
	for i := 0; ; i++ {
		entry := fmt.Sprintf(`"k%d":0`, i)
		if b.Len()+len(entry)+1 > room {
			return b.String()
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(entry)
	}
}

func mustEstimate(t testing.TB, expr string) uint64 {
	t.Helper()
	a, iss := filterEnv.Compile(expr)
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	est, err := estimate(a)
	if err != nil {
		t.Fatal(err)
	}
	return est.Max
}

// allocatedBy returns the bytes f allocated.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// evaluationMemory evaluates filter (expr) on the maximal event of that name and returns
// what the evaluation allocated and the most it held at once. What it held is at most
// what it allocated; only when that is over memoryBound (a loop that fails on every
// element: cel-go allocates each error, and drops it at the next element) is it measured,
// by heldInChild.
func evaluationMemory(t testing.TB, filter *Filter, expr, event string) (allocated, held uint64, err error) {
	t.Helper()
	input := maximalEvents(t)[event]
	allocated = allocatedBy(func() { _, err = filter.Match(input) })
	if allocated <= memoryBound {
		return allocated, allocated, err
	}
	return allocated, heldInChild(t, expr, event), err
}

// The child process heldInChild starts: the test binary itself, told by these variables
// to measure one evaluation instead of running tests (see TestMain).
const (
	heldFilterEnv = "HERALD_TEST_HELD_FILTER"
	heldEventEnv  = "HERALD_TEST_HELD_EVENT"
)

// heldInChild measures the most one evaluation holds at once in a process of its own,
// whose collector stops the world (GODEBUG=gcstoptheworld=1): a concurrent collector
// counts what the evaluation allocates while it marks as live, which for a loop
// allocating an error per element is several MiB of garbage counted as held.
func heldInChild(t testing.TB, expr, event string) uint64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GODEBUG=gcstoptheworld=1", heldFilterEnv+"="+expr, heldEventEnv+"="+event)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("measuring %q on the %s event in a child process: %v\n%s", expr, event, err, out)
	}
	var held uint64
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "held %d", &held); err != nil {
		t.Fatalf("the child process said %q: %v", out, err)
	}
	return held
}

func TestMain(m *testing.M) {
	if expr := os.Getenv(heldFilterEnv); expr != "" {
		held, err := measureHeld(expr, os.Getenv(heldEventEnv))
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Printf("held %d\n", held)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// measureHeld runs one evaluation with the collector kept off until the heap has grown
// by memoryBound, and returns the most that was live at a collection, above what was
// live before: if the evaluation holds more than memoryBound at some point, the heap
// reaches the limit while it does, and that collection sees it. With a collector that
// stops the world, what a collection sees as live is exactly what is reachable.
func measureHeld(expr, event string) (uint64, error) {
	filter, err := CompileFilter(expr)
	if err != nil {
		return 0, err
	}
	filter.timeout = time.Hour
	input, _, err := maximalEvent(event)
	if err != nil {
		return 0, err
	}
	// Collect and hand free memory back, so that the limit below is met by what the
	// evaluation allocates, not by reusing what building the event left free.
	debug.FreeOSMemory()
	base := readMetric("/gc/heap/live:bytes")
	total := readMetric("/memory/classes/total:bytes") - readMetric("/memory/classes/heap/released:bytes")
	heapBefore := readMetric("/memory/classes/heap/objects:bytes")
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(int64(total + memoryBound))

	cycles := readMetric("/gc/cycles/total:gc-cycles")
	var maxLive uint64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			if readMetric("/gc/cycles/total:gc-cycles") != cycles {
				maxLive = max(maxLive, readMetric("/gc/heap/live:bytes"))
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Microsecond):
			}
		}
	}()
	_, _ = filter.Match(input)
	close(stop)
	<-done
	runtime.KeepAlive(input)
	if readMetric("/gc/cycles/total:gc-cycles") == cycles {
		// No collection: the heap stayed under the limit, and what it grew by bounds
		// what the evaluation held.
		return readMetric("/memory/classes/heap/objects:bytes") - heapBefore, nil
	}
	if maxLive < base {
		return 0, nil
	}
	return maxLive - base, nil
}

func readMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// BenchmarkFilter_Match: a typical filter on a typical event, decoding the largest event
// (the baseline a filter's worst case is compared with), and the worst admitted filters
// on their worst events.
func BenchmarkFilter_Match(b *testing.B) {
	typical, err := CompileFilter("event.type == 'invoice.paid' && event.data.amount > 1000 && event.data.customer.tier in ['gold', 'platinum']")
	if err != nil {
		b.Fatal(err)
	}
	event := EventInput("evt_1", "invoice.paid", "billing", time.Now(), map[string]any{
		"amount":   float64(1500),
		"customer": map[string]any{"tier": "gold"},
	})
	b.Run("typical", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := typical.Match(event); !ok || err != nil {
				b.Fatalf("Match = %v, %v", ok, err)
			}
		}
	})
	events := maximalEvents(b)
	b.Run("decode-largest-event", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, body := range maximalBodies {
				var ev struct{ Data json.RawMessage }
				var data any
				if json.Unmarshal(body, &ev) != nil || json.Unmarshal(ev.Data, &data) != nil {
					b.Fatal("decoding")
				}
				EventInput("evt_1", "invoice.paid", "billing", time.Now(), data)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(maximalBodies)), "ns/event")
	})
	for _, w := range worstAdmitted {
		f, err := CompileFilter(w.expr)
		if err != nil {
			b.Fatal(err)
		}
		f.timeout = time.Minute
		b.Run("worst/"+w.why, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f.Match(events[w.event])
			}
		})
	}
}
