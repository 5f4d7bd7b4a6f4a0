package routing

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
)

// MaxTransformLength mirrors the CRD's limit on spec.payload.transform.
const MaxTransformLength = 4096

// MaxTransformedBytes bounds the body a transform makes. Its cost judge bounds the work
// of building the result, but not the size of its JSON: a map that names event.data
// twenty times costs twenty references to build and twenty copies to encode. Encoding
// stops here, so one evaluation writes at most this much.
const MaxTransformedBytes = MaxEventBytes

// ErrTransformedTooLarge is the error of a transform whose result encodes to more than
// MaxTransformedBytes.
var ErrTransformedTooLarge = fmt.Errorf("the transform's result is larger than %d bytes", MaxTransformedBytes)

// Transform is a compiled payload transform: a CEL expression over the same event
// variable as a filter (see filterEnv), making the map that is sent as the body. It is
// safe for concurrent use.
type Transform struct {
	expr    string
	prg     cel.Program
	loops   bool
	timeout time.Duration
}

// CompileTransform parses, type-checks and judges a payload transform as CompileFilter
// judges a filter, with the same environment, cost model and budget: it must make a
// map (or a value only known at run time, checked then), call only what the cost model
// can bound, and cost at most TransformBudget on the worst event (a *BudgetError
// otherwise). The manager (the endpoint's Ready condition, through dispatcher/resolve)
// and the dispatcher both compile with it. The error is meant for the endpoint's author.
func CompileTransform(expr string) (*Transform, error) {
	if len(expr) > MaxTransformLength {
		return nil, fmt.Errorf("transform is %d characters long; at most %d are allowed", len(expr), MaxTransformLength)
	}
	checked, iss := filterEnv.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	switch out := checked.OutputType(); out.Kind() {
	case types.MapKind, types.DynKind:
	default:
		return nil, fmt.Errorf("transform must make a map (the JSON object sent as the body) but has type %s; "+
			"write it as a map literal such as {\"text\": event.type}", out)
	}
	if err := checkBudget(checked, "transform", TransformBudget); err != nil {
		return nil, err
	}
	prg, err := filterEnv.Program(checked,
		cel.InterruptCheckFrequency(interruptEvery),
		cel.OptimizeRegex(interpreter.MatchesRegexOptimization))
	if err != nil {
		return nil, fmt.Errorf("preparing transform: %w", err)
	}
	return &Transform{expr: expr, prg: prg, loops: hasComprehension(checked), timeout: FilterTimeout}, nil
}

// String returns the transform's source expression.
func (t *Transform) String() string { return t.expr }

// Apply evaluates the transform on one event (built with EventInput) and appends the
// JSON of its result to b: map keys in sorted order, so that an event makes the same
// body on every attempt. An evaluation error (a field the event lacks, a type mismatch,
// the deadline), a result that is not a map or holds a value JSON cannot carry (a NaN,
// a map key that is not a string), or a result over MaxTransformedBytes is an error; b
// then holds a partial result the caller discards.
func (t *Transform) Apply(b *bytes.Buffer, event map[string]any) error {
	vars := map[string]any{"event": event}
	var out ref.Val
	var err error
	if t.loops {
		ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
		out, _, err = t.prg.ContextEval(ctx, vars)
		cancel()
	} else {
		out, _, err = t.prg.Eval(vars)
	}
	if err != nil {
		return fmt.Errorf("evaluating transform: %w", err)
	}
	if _, ok := out.(traits.Mapper); !ok {
		return fmt.Errorf("the transform made a %s, not a map", out.Type().TypeName())
	}
	w := jsonWriter{b: b, limit: b.Len() + MaxTransformedBytes}
	return w.value(out)
}

// jsonWriter writes CEL values as JSON, stopping at limit.
type jsonWriter struct {
	b     *bytes.Buffer
	limit int
}

func (w *jsonWriter) value(v ref.Val) error {
	if w.b.Len() > w.limit {
		return ErrTransformedTooLarge
	}
	switch v := v.(type) {
	case types.Null:
		w.b.WriteString("null")
	case types.Bool:
		w.b.WriteString(strconv.FormatBool(bool(v)))
	case types.Int:
		w.b.WriteString(strconv.FormatInt(int64(v), 10))
	case types.Uint:
		w.b.WriteString(strconv.FormatUint(uint64(v), 10))
	case types.Double:
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("the transform made %v, which JSON cannot carry", f)
		}
		w.b.Write(strconv.AppendFloat(w.b.AvailableBuffer(), f, 'g', -1, 64))
	case types.String:
		w.str(string(v))
	case types.Bytes:
		w.str(base64.StdEncoding.EncodeToString(v))
	case types.Timestamp:
		w.str(v.Time.UTC().Format(time.RFC3339Nano))
	case types.Duration:
		w.str(v.Duration.String())
	case traits.Mapper:
		return w.object(v)
	case traits.Lister:
		return w.array(v)
	default:
		return fmt.Errorf("the transform made a %s, which has no JSON form", v.Type().TypeName())
	}
	if w.b.Len() > w.limit {
		return ErrTransformedTooLarge
	}
	return nil
}

func (w *jsonWriter) str(s string) {
	writeJSONString(w.b, s)
}

func (w *jsonWriter) object(m traits.Mapper) error {
	var keys []string
	for it := m.Iterator(); it.HasNext() == types.True; {
		k, ok := it.Next().(types.String)
		if !ok {
			return errors.New("the transform made a map with a key that is not a string; JSON object keys are strings")
		}
		keys = append(keys, string(k))
	}
	slices.Sort(keys)
	w.b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			w.b.WriteByte(',')
		}
		w.str(k)
		w.b.WriteByte(':')
		v, _ := m.Find(types.String(k))
		if err := w.value(v); err != nil {
			return err
		}
	}
	w.b.WriteByte('}')
	return nil
}

func (w *jsonWriter) array(l traits.Lister) error {
	w.b.WriteByte('[')
	n, _ := l.Size().(types.Int)
	for i := types.Int(0); i < n; i++ {
		if i > 0 {
			w.b.WriteByte(',')
		}
		if err := w.value(l.Get(i)); err != nil {
			return err
		}
	}
	w.b.WriteByte(']')
	return nil
}

// writeJSONString writes s as a JSON string, as encoding/json would (HTML-safe).
func writeJSONString(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			enc, _ := json.Marshal(s)
			b.Write(enc)
			return
		}
	}
	b.WriteByte('"')
	b.WriteString(s)
	b.WriteByte('"')
}
