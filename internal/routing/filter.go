package routing

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/ext"
)

// FilterCostLimit bounds the work one evaluation of a filter may do, in CEL cost units
// (roughly one per operation, more for string and list work). A filter runs for every
// event of a matching type, so a subscription must not be able to stall the router with
// an expensive expression; 100k is far above any sensible filter (comparing a handful of
// fields costs tens) and far below what would be noticeable per event.
const FilterCostLimit = 100_000

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
//	event.data        the JSON payload decoded by encoding/json into map[string]any,
//	                  []any, string, float64, bool or nil
//
// event is a map rather than a declared message type so that event.data.<anything>
// type-checks: the payload's shape is the producer's business, not the CRD's. Numbers
// from JSON are doubles, so cross-type numeric comparison is on: "event.data.amount >
// 1000" means what its author expects. The standard library plus the strings extension
// (lowerAscii, split, ...) is available; nothing that reaches outside the event is.
var filterEnv = func() *cel.Env {
	env, err := cel.NewEnv(
		cel.Variable("event", cel.MapType(cel.StringType, cel.DynType)),
		cel.CrossTypeNumericComparisons(true),
		ext.Strings(),
	)
	if err != nil {
		// The options above are static; failing here is a programming error.
		panic(fmt.Sprintf("routing: building the CEL environment: %v", err))
	}
	return env
}()

// Filter is a compiled subscription filter. It is safe for concurrent use.
type Filter struct {
	expr string
	prg  cel.Program
}

// CompileFilter parses and type-checks a CEL filter expression. The expression must
// evaluate to a bool; the error message is the compiler's, meant to be shown to the
// author of the subscription as is.
func CompileFilter(expr string) (*Filter, error) {
	if len(expr) > MaxFilterLength {
		return nil, fmt.Errorf("filter is %d characters long; at most %d are allowed", len(expr), MaxFilterLength)
	}
	ast, iss := filterEnv.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		// A dyn result (such as plain "event.data.urgent") could be anything at run time;
		// asking for an explicit comparison turns a per-event failure into a compile error.
		return nil, fmt.Errorf("filter must evaluate to a bool but has type %s; compare explicitly, for example event.data.urgent == true", ast.OutputType())
	}
	prg, err := filterEnv.Program(ast, cel.CostLimit(FilterCostLimit))
	if err != nil {
		return nil, fmt.Errorf("preparing filter: %w", err)
	}
	return &Filter{expr: expr, prg: prg}, nil
}

// String returns the filter's source expression.
func (f *Filter) String() string { return f.expr }

// ErrNotBool is returned by Match when a filter produced something other than a bool,
// which the static check makes impossible short of a bug; kept as a guard, not a path.
var ErrNotBool = errors.New("filter did not evaluate to a bool")

// Match evaluates the filter against one event, shaped as described on filterEnv (build
// it with EventInput). An evaluation error (a missing key such as event.data.amount on an
// event without it, a type mismatch, the cost limit) returns false and the error: the
// event does not match, and the caller can count or log why. Authors avoid such errors
// with has(event.data.amount).
func (f *Filter) Match(event map[string]any) (bool, error) {
	out, _, err := f.prg.Eval(map[string]any{"event": event})
	if err != nil {
		return false, fmt.Errorf("evaluating filter: %w", err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, ErrNotBool
	}
	return b, nil
}

// EventInput builds the value of the filter's event variable. data is the decoded JSON
// payload (see filterEnv for the accepted Go types).
func EventInput(id, eventType, source string, createdAt time.Time, data any) map[string]any {
	return map[string]any{
		"id":         id,
		"type":       eventType,
		"source":     source,
		"created_at": createdAt.UTC().Format(time.RFC3339Nano),
		"data":       data,
	}
}
