package routing

import (
	"fmt"
	"regexp/syntax"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
)

// FilterBudget is the most a filter may cost, in CEL cost units, on the worst event the
// ingest API can accept. A filter runs in the shared dispatcher for every event of a
// matching type, so its worst case is judged before it is admitted, the way the API
// server judges CRD validation rules: cel-go's estimator walks the expression with the
// largest size every value could have (see eventSizes) and adds up what each call costs.
// Herald's cost model (costModel) charges a unit per step, per ten characters scanned and
// per byte a call allocates, so the budget bounds the time of one evaluation and the
// memory it holds.
//
// 10M is what the API server allows one CRD validation rule. It admits what filters do
// (compare fields, has(), in, startsWith, lowerAscii() of a field, exists() over an event
// list with a few conditions, timestamp arithmetic: at most about 4M on the largest
// event) and refuses work that grows faster than the event: a loop inside a loop over
// event lists, a string function applied to every element of a list, strings grown by
// replace(). The worst admitted filters take about as long as decoding the largest event
// does (BenchmarkFilter_Match).
const FilterBudget = 10_000_000

// TransformBudget is the most a payload transform may cost, judged as a filter is. A
// transform builds a body, mostly by concatenating event fields, and the estimator
// charges every field as if it alone filled the largest event: a Slack message naming
// three fields of an operational event is estimated at about 27M although those fields
// share one event's bytes (one evaluation on the largest event allocates under 4 MiB,
// TestTransformBudget_...). A transform also replaces work the delivery does anyway:
// encoding and signing a body of up to MaxEventBytes. Four filter budgets admit
// messages of a handful of fields and still refuse what grows faster than the event
// (replace() of replace(), a loop inside a loop).
const TransformBudget = 4 * FilterBudget

// MaxEventBytes is the event size the budget is judged against: the ingest API's default
// request body limit (1 MiB), which bounds every string, list and map of an event. A
// dispatcher started with a larger --max-body-bytes evaluates admitted filters on larger
// events, at a cost that grows with the event; the evaluation deadline (FilterTimeout)
// still stops a runaway loop.
const MaxEventBytes = 1 << 20

// Limits on the event attributes, which the ingest API enforces and the estimator
// relies on.
const (
	MaxEventIDLength     = 256
	MaxEventTypeLength   = 256
	MaxEventSourceLength = 1024
)

// maxCreatedAtLength bounds event.created_at, which EventInput formats itself
// (RFC 3339 with nanoseconds is at most 35 characters).
const maxCreatedAtLength = 64

// BudgetError says that a filter's (or a transform's) worst-case cost exceeds its
// budget (FilterBudget, TransformBudget).
type BudgetError struct {
	// What is judged: "filter" or "transform".
	What string
	// Estimate is the worst-case cost in CEL cost units; 0 with Unbounded set when
	// the estimator could not bound it at all.
	Estimate  uint64
	Unbounded bool
	Budget    uint64
}

func (e *BudgetError) Error() string {
	cost := fmt.Sprintf("%d", e.Estimate)
	if e.Unbounded {
		cost = "unbounded"
	}
	what := e.What
	if what == "" {
		what = "filter"
	}
	return fmt.Sprintf("%s is too expensive: its worst-case cost on an event of %d bytes is %s, over the budget of %d "+
		"(CEL cost units; loops over event lists inside other loops, string functions applied to every element of a list, "+
		"and strings grown by replace() or concatenation cost the most)",
		what, MaxEventBytes, cost, e.Budget)
}

// eventSizes tells cel-go's estimator how large the values a filter reads can be. Every
// string, list and map reached from event is at most MaxEventBytes long, except the
// attributes (id, type, source: the ingest API's limits; created_at: Herald writes it);
// a value the filter iterates over or searches with
// `in` is a list or a map, whose elements take at least two bytes of the body each
// ("0,"), so it has at most MaxEventBytes/2 of them. Values computed inside the
// expression get their sizes from the estimator itself (literals, and the result sizes in
// costModel); a value of unknown size makes the estimate unbounded, so what the
// estimator cannot bound is refused.
type eventSizes struct {
	// containers are the IDs of the expressions used as a list or a map: comprehension
	// ranges and the right side of `in`.
	containers map[int64]bool
}

var _ checker.CostEstimator = eventSizes{}

func newEventSizes(a *ast.AST) eventSizes {
	containers := map[int64]bool{}
	ast.PostOrderVisit(a.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		switch e.Kind() {
		case ast.ComprehensionKind:
			containers[e.AsComprehension().IterRange().ID()] = true
		case ast.CallKind:
			if c := e.AsCall(); c.FunctionName() == operators.In && len(c.Args()) == 2 {
				containers[c.Args()[1].ID()] = true
			}
		}
	}))
	return eventSizes{containers: containers}
}

func (s eventSizes) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	path := n.Path()
	if len(path) == 0 || path[0] != "event" {
		return nil
	}
	switch {
	case len(path) == 1:
		e := checker.FixedSizeEstimate(uint64(len(eventKeys)))
		return &e
	case len(path) == 2 && attributeLengths[path[1]] > 0:
		return &checker.SizeEstimate{Min: 0, Max: attributeLengths[path[1]]}
	case s.containers[n.Expr().ID()]:
		return &checker.SizeEstimate{Min: 0, Max: MaxEventBytes / 2}
	}
	return &checker.SizeEstimate{Min: 0, Max: MaxEventBytes}
}

func (eventSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// eventKeys are the keys of the event variable (see EventInput).
var eventKeys = []string{"id", "type", "source", "created_at", "data"}

// attributeLengths bound the event's string attributes.
var attributeLengths = map[string]uint64{
	"id":         MaxEventIDLength,
	"type":       MaxEventTypeLength,
	"source":     MaxEventSourceLength,
	"created_at": maxCreatedAtLength,
}

// size is the size estimate of an argument: what the expression says, else eventSizes,
// else unknown (which saturates every product it enters).
func size(e checker.CostEstimator, n checker.AstNode) checker.SizeEstimate {
	if s := n.ComputedSize(); s != nil {
		return *s
	}
	if s := e.EstimateSize(n); s != nil {
		return *s
	}
	return checker.UnknownSizeEstimate()
}

// Herald's cost model, in CEL cost units: cel-go charges a unit per step; costModel adds
// these charges.
const (
	// scanPerChar is reading one character (cel-go's own factor).
	scanPerChar = common.StringTraversalCostFactor
	// perByte is allocating one byte. At two units a byte, a filter within the budget
	// allocates at most FilterBudget/2 bytes (5 MB) besides the interpreter's own small
	// values.
	perByte = 2.0
	// runeBytes is what the strings extension's charAt, indexOf, lastIndexOf and
	// substring allocate per character: they convert the whole string to []rune.
	runeBytes = 4
	// splitElementBytes is what split() allocates per element: a string header in the
	// []string and its boxing as a CEL value.
	splitElementBytes = 32
	// appendBytes is what map() and filter() allocate per element they add to their
	// result (measured about 200: the interpreter's list, the one-element list of each
	// step and the boxed value).
	appendBytes = 256
	// zoneBytes is what a time-zone argument (getHours('Europe/Paris')) allocates: each
	// call reads the zone from the time-zone database.
	zoneBytes = 16 << 10
	// regexStep is one step of Go's regexp engine, one input byte against one
	// instruction of the compiled program: measured at 0.4 of a loop iteration's unit
	// (BenchmarkFilter_Match, A{80}B on a megabyte of A).
	regexStep = 0.4
)

// costModel replaces cel-go's estimates where they count less than a call really does:
// cel-go charges for CPU only, and charges some O(n) calls as O(1). Every call that scans
// a string is charged per character and every one that allocates is charged per byte, so
// that FilterBudget bounds memory as well as time. Each estimator also says how large its
// result can be, so that what a filter does with a result is charged too; a result of
// unknown size makes whatever uses it unbounded, and refused.
func costModel() []checker.CostOption {
	opts := []checker.CostOption{
		// size() of a string counts its runes.
		checker.OverloadCostEstimate(overloads.SizeString, scan(arg0)),
		checker.OverloadCostEstimate(overloads.SizeStringInst, scan(target)),
		// Conversions from a string parse all of it.
		checker.OverloadCostEstimate(overloads.StringToInt, scan(arg0)),
		checker.OverloadCostEstimate(overloads.StringToUint, scan(arg0)),
		checker.OverloadCostEstimate(overloads.StringToDouble, scan(arg0)),
		checker.OverloadCostEstimate(overloads.StringToBool, scan(arg0)),
		checker.OverloadCostEstimate(overloads.StringToTimestamp, scan(arg0)),
		checker.OverloadCostEstimate(overloads.StringToDuration, scan(arg0)),
		// Conversions to a string: the argument itself, a copy of it, or a short string.
		checker.OverloadCostEstimate(overloads.StringToString, identity),
		checker.OverloadCostEstimate(overloads.BytesToString, copyArg(1)),
		checker.OverloadCostEstimate(overloads.StringToBytes, copyArg(utf8.UTFMax)),
		checker.OverloadCostEstimate(overloads.BoolToString, shortString),
		checker.OverloadCostEstimate(overloads.IntToString, shortString),
		checker.OverloadCostEstimate(overloads.UintToString, shortString),
		checker.OverloadCostEstimate(overloads.DoubleToString, shortString),
		checker.OverloadCostEstimate(overloads.DurationToString, shortString),
		checker.OverloadCostEstimate(overloads.TimestampToString, shortString),
		// Equality compares whole structures, and a map lookup hashes the whole key.
		checker.OverloadCostEstimate(overloads.Equals, equality),
		checker.OverloadCostEstimate(overloads.NotEquals, equality),
		checker.OverloadCostEstimate(overloads.InMap, hashKey(0)),
		checker.OverloadCostEstimate(overloads.IndexMap, hashKey(1)),
		// Concatenation allocates its result.
		checker.OverloadCostEstimate(overloads.AddString, concat),
		checker.OverloadCostEstimate(overloads.AddBytes, concat),
		// Appending to a list is how map() and filter() build their result.
		checker.OverloadCostEstimate(overloads.AddList, appendList),
		// A literal regular expression is charged by its compiled program (see
		// regexCost); a pattern that is not a literal is refused by filterValidator.
		checker.OverloadCostEstimate(overloads.Matches, regexCost(true)),
		checker.OverloadCostEstimate(overloads.MatchesString, regexCost(false)),
		// The strings extension: case changes copy the string (Herald's own lowerAscii
		// and upperAscii, see filterEnv), trim returns a part of it, replace builds its
		// result, split a list, and the rune-indexed functions convert it to []rune.
		checker.OverloadCostEstimate("string_lower_ascii", transform),
		checker.OverloadCostEstimate("string_upper_ascii", transform),
		checker.OverloadCostEstimate("string_trim", trim),
		checker.OverloadCostEstimate("string_replace_string_string", replace),
		checker.OverloadCostEstimate("string_replace_string_string_int", replace),
		checker.OverloadCostEstimate("string_split_string", split),
		checker.OverloadCostEstimate("string_split_string_int", split),
		checker.OverloadCostEstimate("string_char_at_int", runeIndexed(false)),
		checker.OverloadCostEstimate("string_index_of_string", runeIndexed(true)),
		checker.OverloadCostEstimate("string_index_of_string_int", runeIndexed(true)),
		checker.OverloadCostEstimate("string_last_index_of_string", runeIndexed(true)),
		checker.OverloadCostEstimate("string_last_index_of_string_int", runeIndexed(true)),
		checker.OverloadCostEstimate("string_substring_int", substring),
		checker.OverloadCostEstimate("string_substring_int_int", substring),
	}
	// A time-zone argument loads the zone on every call.
	for _, id := range []string{
		overloads.TimestampToYearWithTz, overloads.TimestampToMonthWithTz, overloads.TimestampToDayOfYearWithTz,
		overloads.TimestampToDayOfMonthZeroBasedWithTz, overloads.TimestampToDayOfMonthOneBasedWithTz,
		overloads.TimestampToDayOfWeekWithTz, overloads.TimestampToHoursWithTz, overloads.TimestampToMinutesWithTz,
		overloads.TimestampToSecondsWithTz, overloads.TimestampToMillisecondsWithTz,
	} {
		opts = append(opts, checker.OverloadCostEstimate(id, zone))
	}
	return opts
}

func call(cost checker.CostEstimate, result *checker.SizeEstimate) *checker.CallEstimate {
	return &checker.CallEstimate{CostEstimate: cost, ResultSize: result}
}

// one is the cost of the call itself.
var one = checker.FixedCostEstimate(1)

func scanning(s checker.SizeEstimate) checker.CostEstimate {
	return s.MultiplyByCostFactor(scanPerChar)
}

// allocating is the cost of allocating bytesPer bytes for each unit of s.
func allocating(s checker.SizeEstimate, bytesPer float64) checker.CostEstimate {
	return s.MultiplyByCostFactor(bytesPer * perByte)
}

// upTo is a size between 0 and s's maximum.
func upTo(s checker.SizeEstimate) *checker.SizeEstimate {
	return &checker.SizeEstimate{Min: 0, Max: s.Max}
}

// operand picks the string a call works on: its target or its first argument.
type operand func(target *checker.AstNode, args []checker.AstNode) (checker.AstNode, bool)

func target(t *checker.AstNode, _ []checker.AstNode) (checker.AstNode, bool) {
	if t == nil {
		return nil, false
	}
	return *t, true
}

func arg0(_ *checker.AstNode, args []checker.AstNode) (checker.AstNode, bool) {
	if len(args) == 0 {
		return nil, false
	}
	return args[0], true
}

// scan charges one pass over a string, with a result of fixed size.
func scan(of operand) checker.FunctionEstimator {
	return func(e checker.CostEstimator, t *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
		n, ok := of(t, args)
		if !ok {
			return nil
		}
		return call(one.Add(scanning(size(e, n))), nil)
	}
}

func identity(e checker.CostEstimator, _ *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	if len(args) != 1 {
		return nil
	}
	s := size(e, args[0])
	return call(one, &s)
}

// copyArg charges a conversion that copies its argument into a result of at most growth
// bytes per unit of the argument's size.
func copyArg(growth uint64) checker.FunctionEstimator {
	return func(e checker.CostEstimator, _ *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
		if len(args) != 1 {
			return nil
		}
		s := size(e, args[0])
		result := upTo(s.Multiply(checker.FixedSizeEstimate(growth)))
		return call(one.Add(scanning(s)).Add(allocating(*result, 1)), result)
	}
}

// shortString is a scalar formatted as a string: at most a few dozen characters.
func shortString(checker.CostEstimator, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	result := checker.SizeEstimate{Min: 0, Max: 64}
	return call(one.Add(allocating(result, 1)), &result)
}

// equality compares two values element by element, nested ones included: two strings
// at cel-go's rate per character, anything else (lists, maps, or values whose type is
// only known at run time) at one unit per element of the smaller, counted deep.
func equality(e checker.CostEstimator, _ *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	if len(args) != 2 {
		return nil
	}
	smaller := deepSize(e, args[0])
	if other := deepSize(e, args[1]); other.Max < smaller.Max {
		smaller = other
	}
	if isText(args[0]) || isText(args[1]) {
		return call(one.Add(scanning(smaller)), nil)
	}
	return call(one.Add(smaller.MultiplyByCostFactor(1)), nil)
}

func isText(n checker.AstNode) bool {
	k := n.Type().Kind()
	return k == types.StringKind || k == types.BytesKind
}

// deepSize bounds the elements a value holds at every depth: a literal list or map holds
// what its entries hold; any other value of the event holds at most what the event
// does, which its size estimate already says.
func deepSize(e checker.CostEstimator, n checker.AstNode) checker.SizeEstimate {
	var entries []ast.Expr
	switch x := n.Expr(); x.Kind() {
	case ast.ListKind:
		entries = x.AsList().Elements()
	case ast.MapKind:
		for _, entry := range x.AsMap().Entries() {
			entries = append(entries, entry.AsMapEntry().Key(), entry.AsMapEntry().Value())
		}
	default:
		return size(e, n)
	}
	total := checker.FixedSizeEstimate(1)
	for _, entry := range entries {
		switch entry.Kind() {
		case ast.LiteralKind:
			total = total.Add(checker.FixedSizeEstimate(1))
		case ast.ListKind, ast.MapKind:
			total = total.Add(deepSize(e, literalNode{entry}))
		default:
			// An entry computed from the event: as large as the event.
			total = total.Add(checker.FixedSizeEstimate(MaxEventBytes))
		}
	}
	return total
}

// literalNode is a nested list or map literal, as deepSize walks it.
type literalNode struct{ x ast.Expr }

func (l literalNode) Path() []string                      { return nil }
func (l literalNode) Type() *types.Type                   { return types.DynType }
func (l literalNode) Expr() ast.Expr                      { return l.x }
func (l literalNode) ComputedSize() *checker.SizeEstimate { return nil }

// hashKey charges hashing the key (argument i) of a map lookup, a pass over a string.
func hashKey(i int) checker.FunctionEstimator {
	return func(e checker.CostEstimator, _ *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
		if len(args) <= i {
			return nil
		}
		return call(one.Add(scanning(size(e, args[i]))), nil)
	}
}

func concat(e checker.CostEstimator, _ *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	if len(args) != 2 {
		return nil
	}
	result := size(e, args[0]).Add(size(e, args[1]))
	return call(one.Add(allocating(result, 1)), &result)
}

// appendList charges a list concatenation: cel-go joins two lists without copying them,
// so only the elements of a literal on the right are new. That is how map() and filter()
// grow their result (accu + [x]).
func appendList(e checker.CostEstimator, _ *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	if len(args) != 2 {
		return nil
	}
	added := size(e, args[1])
	result := size(e, args[0]).Add(added)
	if args[1].Expr().Kind() != ast.ListKind {
		return call(one, &result)
	}
	return call(one.Add(allocating(added, appendBytes)), &result)
}

func zone(checker.CostEstimator, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return call(one.Add(allocating(checker.FixedSizeEstimate(1), zoneBytes)), nil)
}

// transform is a pass that copies the string (lowerAscii, upperAscii).
func transform(e checker.CostEstimator, t *checker.AstNode, _ []checker.AstNode) *checker.CallEstimate {
	if t == nil {
		return nil
	}
	s := size(e, *t)
	return call(one.Add(scanning(s)).Add(allocating(s, 1)), &s)
}

// trim returns a part of its target without copying it.
func trim(e checker.CostEstimator, t *checker.AstNode, _ []checker.AstNode) *checker.CallEstimate {
	if t == nil {
		return nil
	}
	s := size(e, *t)
	return call(one.Add(scanning(s)), upTo(s))
}

// replace searches the target for the old string and builds the result, which is at most
// (n+1)*(r+1) characters for a target of n and a replacement of r: replacing "" inserts
// the replacement before every character and at the end.
func replace(e checker.CostEstimator, t *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	if t == nil || len(args) < 2 {
		return nil
	}
	plus1 := checker.FixedSizeEstimate(1)
	s, old, repl := size(e, *t), size(e, args[0]), size(e, args[1])
	result := upTo(s.Add(plus1).Multiply(repl.Add(plus1)))
	search := scanning(s.Add(plus1).Multiply(old.Add(plus1)))
	return call(one.Add(search).Add(allocating(*result, 1)), result)
}

// runeIndexed charges the []rune conversion of the target (and of the argument when
// search is set) and, for a search, comparing every position with the argument.
func runeIndexed(search bool) checker.FunctionEstimator {
	return func(e checker.CostEstimator, t *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
		if t == nil || len(args) == 0 {
			return nil
		}
		s := size(e, *t)
		cost := one.Add(allocating(s, runeBytes))
		if !search {
			result := checker.SizeEstimate{Min: 0, Max: 1}
			return call(cost, &result)
		}
		n := size(e, args[0])
		return call(cost.Add(allocating(n, runeBytes)).Add(scanning(s.Multiply(n))), nil)
	}
}

func substring(e checker.CostEstimator, t *checker.AstNode, _ []checker.AstNode) *checker.CallEstimate {
	if t == nil {
		return nil
	}
	s := size(e, *t)
	return call(one.Add(allocating(s, runeBytes)).Add(allocating(s, 1)), upTo(s))
}

// split gives one element per character for split(”), and at most one more than the
// characters for any other separator.
func split(e checker.CostEstimator, t *checker.AstNode, _ []checker.AstNode) *checker.CallEstimate {
	if t == nil {
		return nil
	}
	s := size(e, *t)
	elements := upTo(s.Add(checker.FixedSizeEstimate(1)))
	cost := one.Add(scanning(s)).Add(allocating(*elements, splitElementBytes)).
		Add(checker.FixedCostEstimate(common.ListCreateBaseCost))
	return call(cost, elements)
}

// regexCost charges a literal pattern by the size of its compiled program: Go's regexp
// runs in time proportional to the input times the program (a short pattern such as
// a{1000} compiles to a thousand instructions). global is matches(s, re); otherwise the
// call is s.matches(re).
func regexCost(global bool) checker.FunctionEstimator {
	return func(e checker.CostEstimator, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
		var str, re checker.AstNode
		switch {
		case global && len(args) == 2:
			str, re = args[0], args[1]
		case !global && target != nil && len(args) == 1:
			str, re = *target, args[0]
		default:
			return nil
		}
		insts, ok := regexInstructions(re.Expr())
		if !ok {
			// Not a literal, or not a valid one: unbounded, and filterValidator says why.
			return call(checker.UnknownCostEstimate(), nil)
		}
		steps := size(e, str).Add(checker.FixedSizeEstimate(1)).Multiply(checker.FixedSizeEstimate(insts))
		return call(one.Add(steps.MultiplyByCostFactor(regexStep)), nil)
	}
}

// regexInstructions is the size of the program a literal pattern compiles to, as Go's
// regexp compiles it (RE2 syntax, the flags regexp.Compile uses).
func regexInstructions(e ast.Expr) (uint64, bool) {
	if e.Kind() != ast.LiteralKind {
		return 0, false
	}
	pattern, ok := e.AsLiteral().(types.String)
	if !ok {
		return 0, false
	}
	re, err := syntax.Parse(string(pattern), syntax.Perl)
	if err != nil {
		return 0, false
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return 0, false
	}
	return uint64(len(prog.Inst)), true
}

// refusedFunctions are functions of the environment a filter or a transform may not
// call, with the reason shown to its author. These build strings whose size the
// estimator cannot bound from the expression, so they are not worth their risk; a
// transform builds its strings with + instead, which the cost model charges.
var refusedFunctions = map[string]string{
	"format":        "format() builds a string as large as its arguments' printed form, which cannot be bounded before it runs; concatenate with + instead",
	"join":          "join() builds a string from list elements whose sizes cannot be bounded before it runs",
	"strings.quote": "strings.quote() builds a string whose size cannot be bounded before it runs",
	"reverse":       "reverse() builds a string whose size cannot be bounded before it runs",
}

// filterValidator refuses, at compile time and with a message naming the call, what the
// cost model cannot bound: the functions in refusedFunctions and regular expressions that
// are not literals (a pattern taken from the event would be compiled on every
// evaluation, at a cost that grows with the pattern's program, not its length).
type filterValidator struct{}

func (filterValidator) Name() string { return "herald.filter" }

func (filterValidator) Validate(_ *cel.Env, _ cel.ValidatorConfig, a *ast.AST, iss *cel.Issues) {
	ast.PostOrderVisit(a.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if e.Kind() != ast.CallKind {
			return
		}
		c := e.AsCall()
		if why, refused := refusedFunctions[c.FunctionName()]; refused {
			iss.ReportErrorAtID(e.ID(), "%s is not available in filters and transforms: %s", c.FunctionName(), why)
			return
		}
		if c.FunctionName() != overloads.Matches {
			return
		}
		pattern := c.Args()[len(c.Args())-1]
		if _, ok := regexInstructions(pattern); !ok {
			iss.ReportErrorAtID(e.ID(), "matches() needs a valid regular expression written as a string literal, "+
				"so that its cost can be judged before the filter runs")
		}
	}))
}

// estimate is the worst-case cost of a checked filter.
func estimate(a *cel.Ast) (checker.CostEstimate, error) {
	return filterEnv.EstimateCost(a, newEventSizes(a.NativeRep()))
}

// checkBudget refuses a filter or a transform (what) whose worst case exceeds budget
// (FilterBudget or TransformBudget): the one judge of what an expression over an event
// may cost.
func checkBudget(a *cel.Ast, what string, budget uint64) error {
	est, err := estimate(a)
	if err != nil {
		return fmt.Errorf("estimating the %s's cost: %w", what, err)
	}
	if est.Max <= budget {
		return nil
	}
	berr := &BudgetError{What: what, Estimate: est.Max, Budget: budget}
	if est.Max == checker.UnknownCostEstimate().Max {
		berr.Estimate, berr.Unbounded = 0, true
	}
	return berr
}
