package routing

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzFilterBudget generates filters from a grammar of the environment's functions and
// operators (filterGrammar) and checks the judge's promise on each: a filter is either
// refused, or admitted with a worst-case estimate within the budget and then, evaluated
// on each maximal event, holds no more than a few MiB at once. The seed corpus in
// testdata/fuzz/FuzzFilterBudget (see fuzzSeeds) runs with every `go test`; `go test
// -fuzz FuzzFilterBudget ./internal/routing` explores further.
func FuzzFilterBudget(f *testing.F) {
	f.Fuzz(func(t *testing.T, program []byte) {
		expr := generateFilter(program)
		filter, err := CompileFilter(expr)
		if err != nil {
			var budget *BudgetError
			if errors.As(err, &budget) && !budget.Unbounded && budget.Estimate <= budget.Budget {
				t.Fatalf("%q refused with an estimate within the budget: %v", expr, err)
			}
			return
		}
		if est := mustEstimate(t, expr); est > FilterBudget {
			t.Fatalf("%q admitted with an estimate of %d, over the budget of %d", expr, est, FilterBudget)
		}
		filter.timeout = time.Minute
		for _, event := range maximalEventNames {
			allocated, held, _ := evaluationMemory(t, filter, expr, event)
			if held > memoryBound {
				t.Errorf("%q on the %s event held %d bytes at once (allocated %d), more than %d", expr, event, held, allocated, memoryBound)
			}
		}
	})
}

// fuzzSeeds are the checked-in corpus: each seed's program and the filter it generates,
// so that a change of the grammar that silently changes the seeds fails here. Run
// `go test -run TestFilterGrammar_Seeds ./internal/routing -update-fuzz-seeds` after
// changing them.
var fuzzSeeds = []struct {
	name    string
	program []byte
	want    string
}{
	// Admitted, ordinary.
	{"compare-number", []byte{0, 0, 0, 1, 100}, "event.data.n > 100"},
	{"lowerascii-endswith", []byte{7, 3, 0, 0, 1, 4}, "event.data.s.lowerAscii().endsWith('xxxx')"},
	{"exists-over-list", []byte{11, 0, 0, 1, 0, 5, 1, 3}, "event.data.l.exists(v0, v0 == 'xxx')"},
	{"in-event-list", []byte{10, 1, 2, 0, 0}, "'xx' in event.data.l"},
	{"exists-object-fields", []byte{11, 0, 0, 2, 6, 0, 6, 1, 1, 0, 0, 2, 1, 7}, "event.data.l.exists(v0, (v0.k.startsWith('x') && v0.n > 7))"},
	{"regex-literal", []byte{9, 0, 0, 0}, "event.data.s.matches('^A')"},
	// Refused: what the issue found, and its relatives.
	{"replace-growth", []byte{15, 5, 5, 1, 200, 1, 1, 1, 200, 1, 1, 5, 1, 200, 1, 1, 1, 200, 1, 0}, issueShape()},
	{"nested-loops", []byte{11, 0, 0, 11, 0, 0, 1, 0, 5, 0, 7}, "event.data.l.exists(v0, event.data.l.exists(v1, v0 == v1))"},
	{"lowerascii-in-loop", []byte{11, 0, 0, 1, 3, 0, 5, 1, 1}, "event.data.l.exists(v0, v0.lowerAscii() == 'x')"},
	{"map-over-list", []byte{14, 3, 0, 0, 0, 5, 1, 3}, "size(event.data.l.map(v0, v0)) > 3"},
	{"regex-large-program", []byte{9, 0, 0, 4}, "event.data.s.matches('A{1000}')"},
	{"split-per-character", []byte{14, 2, 0, 0, 1, 0, 1, 2}, "size(event.data.s.split('')) > 2"},
	{"replace-payload", []byte{1, 5, 0, 0, 1, 0, 1, 8, 1, 1}, "event.data.s.replace('', 'xxxxxxxx') == 'x'"},
	{"concat-growth", []byte{1, 2, 2, 2, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 2, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1, 1},
		"((((event.data.s + event.data.s) + (event.data.s + event.data.s)) + ((event.data.s + event.data.s) + (event.data.s + event.data.s))) + (((event.data.s + event.data.s) + (event.data.s + event.data.s)) + ((event.data.s + event.data.s) + (event.data.s + event.data.s)))) == 'x'"},
}

// issueShape is the issue's filter as the grammar writes it.
func issueShape() string {
	s := "'" + strings.Repeat("x", 200) + "'"
	return s + ".replace('x', " + s + ").replace('x', " + s + ".replace('x', " + s + ")).size() > 0"
}

var updateFuzzSeeds = flag.Bool("update-fuzz-seeds", false, "rewrite testdata/fuzz/FuzzFilterBudget from fuzzSeeds")

func TestFilterGrammar_Seeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzFilterBudget")
	for _, s := range fuzzSeeds {
		if got := generateFilter(s.program); got != s.want {
			t.Errorf("seed %s generates %q, want %q", s.name, got, s.want)
		}
		file := filepath.Join(dir, s.name)
		content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s.program)) + ")\n"
		if *updateFuzzSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(file); err != nil || string(got) != content {
			t.Errorf("%s is missing or stale (%v); run with -update-fuzz-seeds", file, err)
		}
	}
}

// generateFilter turns bytes into a boolean filter: each byte picks a production of
// filterGrammar, so the fuzzer's mutations of the bytes are mutations of the filter's
// shape. When the bytes run out, or the expression is deep enough, the first
// production (a leaf) is taken.
func generateFilter(program []byte) string {
	g := &filterGrammar{in: program}
	return g.boolean()
}

type filterGrammar struct {
	in    []byte
	vars  []string // iteration variables in scope
	depth int
}

const maxGrammarDepth = 6

func (g *filterGrammar) choose(n int) int {
	if len(g.in) == 0 || g.depth >= maxGrammarDepth {
		return 0
	}
	b := g.in[0]
	g.in = g.in[1:]
	return int(b) % n
}

// byteValue is a number taken from the program (a literal's length or value).
func (g *filterGrammar) byteValue() int {
	if len(g.in) == 0 {
		return 0
	}
	b := g.in[0]
	g.in = g.in[1:]
	return int(b)
}

func (g *filterGrammar) nested(f func() string) string {
	g.depth++
	defer func() { g.depth-- }()
	return f()
}

// loop is a macro over a list with a body in which a new variable is in scope.
func (g *filterGrammar) loop(macro string, body func() string) string {
	return g.nested(func() string {
		list := g.list()
		v := fmt.Sprintf("v%d", len(g.vars))
		g.vars = append(g.vars, v)
		defer func() { g.vars = g.vars[:len(g.vars)-1] }()
		return fmt.Sprintf("%s.%s(%s, %s)", list, macro, v, body())
	})
}

var grammarRegexps = []string{`^A`, `A.*B`, `(A|B)*C`, `A{20}B`, `A{1000}`, `[a-z]+@example\\.com`, `(x{100}){10}`}

func (g *filterGrammar) boolean() string {
	switch g.choose(16) {
	case 1:
		return g.str() + " == " + g.str()
	case 2:
		return g.nested(func() string { return "(" + g.boolean() + " && " + g.boolean() + ")" })
	case 3:
		return g.nested(func() string { return "(" + g.boolean() + " || " + g.boolean() + ")" })
	case 4:
		return g.nested(func() string { return "!(" + g.boolean() + ")" })
	case 5:
		return "has(event.data." + []string{"s", "n", "l", "m"}[g.choose(4)] + ")"
	case 6:
		return g.str() + ".startsWith(" + g.str() + ")"
	case 7:
		return g.str() + ".endsWith(" + g.str() + ")"
	case 8:
		return g.str() + ".contains(" + g.str() + ")"
	case 9:
		return g.str() + ".matches('" + grammarRegexps[g.choose(len(grammarRegexps))] + "')"
	case 10:
		return g.str() + " in " + g.list()
	case 11:
		return g.loop("exists", g.boolean)
	case 12:
		return g.loop("all", g.boolean)
	case 13:
		return g.loop("exists_one", g.boolean)
	case 14:
		return "size(" + g.list() + ") > " + g.num()
	case 15:
		return g.str() + ".size() > " + g.num()
	}
	return g.num() + " > " + g.num()
}

func (g *filterGrammar) str() string {
	return g.nested(func() string {
		switch g.choose(12) {
		case 1:
			return "'" + strings.Repeat("x", g.byteValue()) + "'"
		case 2:
			return "(" + g.str() + " + " + g.str() + ")"
		case 3:
			return g.str() + ".lowerAscii()"
		case 4:
			return g.str() + ".upperAscii()"
		case 5:
			return g.str() + ".replace(" + g.str() + ", " + g.str() + ")"
		case 6:
			return g.str() + ".substring(" + strconv.Itoa(g.choose(4)) + ")"
		case 7:
			return g.str() + ".trim()"
		case 8:
			return "string(" + g.num() + ")"
		case 9:
			return g.str() + ".charAt(" + strconv.Itoa(g.choose(4)) + ")"
		case 10:
			return g.list() + "[" + strconv.Itoa(g.choose(4)) + "]"
		case 11:
			return g.str() + ".split(" + g.str() + ")[" + strconv.Itoa(g.choose(4)) + "]"
		}
		return g.leaf([]string{"event.data.s", "event.type", "event.id", "event.source", "event.data.m.k"}, ".k")
	})
}

func (g *filterGrammar) list() string {
	return g.nested(func() string {
		switch g.choose(6) {
		case 1:
			return "[" + g.str() + ", " + g.str() + "]"
		case 2:
			return g.str() + ".split(" + g.str() + ")"
		case 3:
			return g.loop("map", g.str)
		case 4:
			return g.loop("filter", g.boolean)
		case 5:
			return "(" + g.list() + " + " + g.list() + ")"
		}
		return g.leaf([]string{"event.data.l", "event.data.m"}, ".l")
	})
}

func (g *filterGrammar) num() string {
	return g.nested(func() string {
		switch g.choose(7) {
		case 1:
			return strconv.Itoa(g.byteValue())
		case 2:
			return "size(" + g.str() + ")"
		case 3:
			return "(" + g.num() + " + " + g.num() + ")"
		case 4:
			return "(" + g.num() + " * " + g.num() + ")"
		case 5:
			return g.str() + ".indexOf(" + g.str() + ")"
		case 6:
			return "size(" + g.list() + ")"
		}
		return g.leaf([]string{"event.data.n"}, ".n")
	})
}

// leaf picks an event field, an iteration variable in scope, or a field of one.
func (g *filterGrammar) leaf(fields []string, member string) string {
	options := append([]string{}, fields...)
	for _, v := range g.vars {
		options = append(options, v, v+member)
	}
	return options[g.choose(len(options))]
}
