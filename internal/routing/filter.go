package routing

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// MaxFilterLength mirrors the CRD's limit on spec.filter.
const MaxFilterLength = 4096

// The CEL environment of every filter. It declares a single variable, event, a map from
// string to dynamically typed values with these keys (see EventInput):
//
//	event.id          string, the producer's event id
//	event.type        string, e.g. "invoice.paid"
//	event.source      string, the producer (CloudEvents source), may be ""
//	event.created_at  string, RFC 3339 with nanoseconds; timestamp(event.created_at)
//	                  turns it into a CEL timestamp
//	event.data        the JSON payload: maps, lists, strings, doubles, bools and null
//
// event is a map rather than a declared message type so that event.data.<anything>
// type-checks: the payload's shape is the producer's business, not the CRD's. Numbers
// from JSON are doubles, so cross-type numeric comparison is on: "event.data.amount >
// 1000" means what its author expects. The standard library plus the strings extension
// (lowerAscii, split, ...) is available, except what refusedFunctions names; nothing
// that reaches outside the event is. costModel and filterValidator make every call
// the filter may make one whose cost is judged before it runs (see FilterBudget).
var filterEnv = func() *cel.Env {
	env, err := cel.NewEnv(
		cel.Variable("event", cel.MapType(cel.StringType, cel.DynType)),
		cel.CrossTypeNumericComparisons(true),
		ext.Strings(),
		// The extension's lowerAscii and upperAscii convert the string to []rune (four
		// bytes a character, and a copy even when nothing changes); these give the same
		// result for the valid UTF-8 every CEL string holds and allocate only the result,
		// or nothing when the string is already in that case.
		cel.Function("lowerAscii", cel.MemberOverload("string_lower_ascii", []*cel.Type{cel.StringType}, cel.StringType,
			cel.UnaryBinding(func(s ref.Val) ref.Val { return types.String(strings.Map(lowerASCII, string(s.(types.String)))) }))),
		cel.Function("upperAscii", cel.MemberOverload("string_upper_ascii", []*cel.Type{cel.StringType}, cel.StringType,
			cel.UnaryBinding(func(s ref.Val) ref.Val { return types.String(strings.Map(upperASCII, string(s.(types.String)))) }))),
		cel.CostEstimatorOptions(costModel()...),
		cel.ASTValidators(filterValidator{}),
	)
	if err != nil {
		// The options above are static; failing here is a programming error.
		panic(fmt.Sprintf("routing: building the CEL environment: %v", err))
	}
	return env
}()

func lowerASCII(r rune) rune {
	if 'A' <= r && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}

func upperASCII(r rune) rune {
	if 'a' <= r && r <= 'z' {
		return r - ('a' - 'A')
	}
	return r
}

// FilterTimeout bounds one evaluation at run time, behind the static budget: a filter
// with a loop (all, exists, exists_one, map, filter) is evaluated under this deadline,
// checked every interruptEvery iterations. The worst admitted filters take about half a
// second on a 1 MiB event on a busy machine (a loop whose every iteration fails is the
// slowest per unit of cost, BenchmarkFilter_Match), so only a mistake in the cost model,
// or an event larger than MaxEventBytes, can reach it. A filter without a loop runs a fixed number of calls,
// each bounded by the estimate, so it needs no deadline.
//
// cel-go's run-time cost limit (cel.CostLimit) is not used: it counts a call's cost
// only after the call returned, which is what let one replace() allocate 1.5 GB, and
// its tracker searches a stack that grows with every loop iteration, so a filter that
// loops over a list of n elements takes O(n^2) time under it (cel-go v0.29.2: an
// exists() over 40,000 elements took 17 s with the limit on, 50 ms without).
const FilterTimeout = 5 * time.Second

// interruptEvery is how many loop iterations run between two looks at the deadline
// (the API server uses the same).
const interruptEvery = 100

// Filter is a compiled subscription filter. It is safe for concurrent use.
type Filter struct {
	expr string
	prg  cel.Program
	// loops is whether the filter has a comprehension, which alone can be interrupted.
	loops bool
	// timeout is FilterTimeout (longer in tests that measure worst cases).
	timeout time.Duration
}

// CompileFilter parses, type-checks and judges a CEL filter expression: it must evaluate
// to a bool, call only what the cost model can bound, and cost at most FilterBudget on
// the worst event (a *BudgetError otherwise). The manager's subscription controller and
// the dispatcher's subscription watch both compile with it, so a filter the manager
// refused is never loaded by the dispatcher, even one stored before this check existed.
// The error message is meant to be shown to the author of the subscription as is.
func CompileFilter(expr string) (*Filter, error) {
	if len(expr) > MaxFilterLength {
		return nil, fmt.Errorf("filter is %d characters long; at most %d are allowed", len(expr), MaxFilterLength)
	}
	checked, iss := filterEnv.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if !checked.OutputType().IsExactType(cel.BoolType) {
		// A dyn result (such as plain "event.data.urgent") could be anything at run time;
		// asking for an explicit comparison turns a per-event failure into a compile error.
		return nil, fmt.Errorf("filter must evaluate to a bool but has type %s; compare explicitly, for example event.data.urgent == true", checked.OutputType())
	}
	if err := checkBudget(checked, "filter", FilterBudget); err != nil {
		return nil, err
	}
	prg, err := filterEnv.Program(checked,
		cel.InterruptCheckFrequency(interruptEvery),
		// Compiles a literal pattern once, here, instead of on every evaluation.
		cel.OptimizeRegex(interpreter.MatchesRegexOptimization))
	if err != nil {
		return nil, fmt.Errorf("preparing filter: %w", err)
	}
	return &Filter{expr: expr, prg: prg, loops: hasComprehension(checked), timeout: FilterTimeout}, nil
}

func hasComprehension(a *cel.Ast) bool {
	found := false
	ast.PreOrderVisit(a.NativeRep().Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		found = found || e.Kind() == ast.ComprehensionKind
	}))
	return found
}

// String returns the filter's source expression.
func (f *Filter) String() string { return f.expr }

// ErrNotBool is returned by Match when a filter produced something other than a bool,
// which the static check makes impossible short of a bug; kept as a guard, not a path.
var ErrNotBool = errors.New("filter did not evaluate to a bool")

// Match evaluates the filter against one event, shaped as described on filterEnv (build
// it with EventInput). An evaluation error (a missing key such as event.data.amount on an
// event without it, a type mismatch, the deadline) returns false and the error: the
// event does not match, and the caller can count or log why. Authors avoid such errors
// with has(event.data.amount).
func (f *Filter) Match(event map[string]any) (bool, error) {
	vars := map[string]any{"event": event}
	var out ref.Val
	var err error
	if f.loops {
		ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
		out, _, err = f.prg.ContextEval(ctx, vars)
		cancel()
	} else {
		out, _, err = f.prg.Eval(vars)
	}
	if err != nil {
		return false, fmt.Errorf("evaluating filter: %w", err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, ErrNotBool
	}
	return b, nil
}

// EventInput builds the value of the filter's event variable. data is the JSON payload
// as encoding/json decodes it into an any: map[string]any, []any, string, float64, bool
// or nil. It is converted to CEL values here, once per event, rather than element by
// element on every evaluation (which allocated 24 bytes per list element on each pass
// of every filter's loop).
func EventInput(id, eventType, source string, createdAt time.Time, data any) map[string]any {
	return map[string]any{
		"id":         id,
		"type":       eventType,
		"source":     source,
		"created_at": createdAt.UTC().Format(time.RFC3339Nano),
		"data":       celValue(data),
	}
}

// celValue converts decoded JSON to CEL values; anything else is left to the type
// adapter.
func celValue(v any) ref.Val {
	switch v := v.(type) {
	case nil:
		return types.NullValue
	case bool:
		return types.Bool(v)
	case float64:
		return types.Double(v)
	case string:
		return types.String(v)
	case []any:
		elems := make([]ref.Val, len(v))
		for i, e := range v {
			elems[i] = celValue(e)
		}
		return jsonList{Lister: types.NewRefValList(types.DefaultTypeAdapter, elems), elems: elems}
	case map[string]any:
		entries := make(map[ref.Val]ref.Val, len(v))
		for k, e := range v {
			entries[types.String(k)] = celValue(e)
		}
		return types.NewRefValMap(types.DefaultTypeAdapter, entries)
	}
	return types.DefaultTypeAdapter.NativeToValue(v)
}

// jsonList is a list of the event's data. It iterates over its elements directly: cel-go's
// own iterator boxes every index as a CEL int, 8 bytes allocated per element on each pass
// of a filter's loop.
type jsonList struct {
	traits.Lister
	elems []ref.Val
}

func (l jsonList) Iterator() traits.Iterator { return &jsonListIterator{elems: l.elems} }

// jsonListIterator walks a jsonList. Like cel-go's iterators it is a value only to the
// interpreter, never to an expression, so its ref.Val methods need not do more.
type jsonListIterator struct {
	elems []ref.Val
	next  int
}

func (it *jsonListIterator) HasNext() ref.Val { return types.Bool(it.next < len(it.elems)) }

func (it *jsonListIterator) Next() ref.Val {
	if it.next >= len(it.elems) {
		return nil
	}
	it.next++
	return it.elems[it.next-1]
}

func (it *jsonListIterator) ConvertToNative(reflect.Type) (any, error) {
	return nil, errors.New("an iterator cannot be converted")
}
func (it *jsonListIterator) ConvertToType(ref.Type) ref.Val {
	return types.NewErr("an iterator cannot be converted")
}
func (it *jsonListIterator) Equal(ref.Val) ref.Val { return types.False }
func (it *jsonListIterator) Type() ref.Type        { return types.IteratorType }
func (it *jsonListIterator) Value() any            { return nil }
