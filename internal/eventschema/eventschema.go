// Package eventschema compiles the JSON Schemas (draft 2020-12) of WebhookEventTypes and
// validates event data against them. It is the one judge of both questions: the manager
// reports its compile errors as the WebhookEventType's Ready condition, the dispatcher
// refuses at the door the events it finds invalid, and `herald docs` embeds the schemas
// it accepted.
//
// The validator is github.com/santhosh-tekuri/jsonschema/v6, which passes the official
// JSON-Schema-Test-Suite for draft 2020-12 (suite_test.go runs it). A schema is a
// tenant's input run by the shared dispatcher on every event of its type, so it is
// bounded before it runs:
//
//   - its text: at most v1alpha1.MaxEventTypeSchemaBytes (the CRD refuses more);
//   - its shape: at most MaxDepth levels of nesting, at most MaxBranches subschemas
//     under one allOf, anyOf or oneOf, and no keyword that resolves at run time against
//     other documents ($dynamicRef, $recursiveRef) or renames the document ($id,
//     $anchor);
//   - its references: only within the schema itself ("#/$defs/money"); nothing is ever
//     loaded, no file and no URL;
//   - the work of one validation: every subschema applied to a value is charged its
//     cost (one, plus its enum, branches and patterns, plus the value's items and
//     properties it looks at), and a validation that spends more than Budget(len(data))
//     stops and refuses the event. That bounds what a recursive schema can cost
//     (without it, a oneOf under a recursive $ref costs 2^depth), linearly in the
//     size of the event.
package eventschema

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"sigs.k8s.io/yaml"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

// Bounds on a schema's shape (see the package comment).
const (
	// MaxDepth is how deeply a schema's JSON may nest (objects and arrays).
	MaxDepth = 32
	// MaxBranches bounds the subschemas of one allOf, anyOf or oneOf, and the
	// patternProperties and dependentSchemas of one schema.
	MaxBranches = 64
	// MaxEnum bounds the values of one enum.
	MaxEnum = 1024
)

// Budget is the work one validation of data of n bytes may do, in cost units (about one
// subschema applied to one value): 10,000 plus 4 per byte. Validating a typical event
// costs a few units per field; the bound only stops schemas whose cost grows faster
// than the event.
func Budget(n int) int64 { return 10_000 + 4*int64(n) }

// Dialect is the JSON Schema dialect of every event schema.
const Dialect = "https://json-schema.org/draft/2020-12/schema"

// location is the URL the schema is compiled under. Nothing is ever loaded from it.
const location = "https://schemas.herald.dev/event-data.json"

// Schema is a compiled event schema. It is safe for concurrent use.
type Schema struct {
	doc  any    // the schema, decoded
	text []byte // the schema as JSON

	// Each validation runs on an instance of its own (the cost counter lives in the
	// compiled schema): up to maxInstances are compiled, on demand.
	pool    chan *instance
	mu      sync.Mutex
	made    int
	maxInst int
}

// instance is one compiled copy of the schema with its own cost counter.
type instance struct {
	root   *jsonschema.Schema
	spent  int64
	budget int64
}

// budgetSpent stops a validation that spent its budget (a panic through the validator,
// recovered by Validate).
type budgetSpent struct{}

// Compile parses and compiles a schema written as JSON or YAML. The error says what to
// fix, in words meant for the WebhookEventType's author.
func Compile(text string) (*Schema, error) {
	if len(text) > heraldv1.MaxEventTypeSchemaBytes {
		return nil, fmt.Errorf("the schema is %d bytes long; at most %d are allowed", len(text), heraldv1.MaxEventTypeSchemaBytes)
	}
	doc, js, err := decode(text, "the schema")
	if err != nil {
		return nil, err
	}
	switch d := doc.(type) {
	case bool:
	case map[string]any:
		if s, ok := d["$schema"]; ok && s != Dialect {
			return nil, fmt.Errorf("$schema is %v; event schemas are JSON Schema draft 2020-12 (%s)", s, Dialect)
		}
	default:
		return nil, errors.New("the schema must be a JSON object (or true or false)")
	}
	s := &Schema{doc: doc, text: js, maxInst: min(runtime.GOMAXPROCS(0), 8)}
	s.pool = make(chan *instance, s.maxInst)
	first, err := s.compile()
	if err != nil {
		return nil, err
	}
	s.made = 1
	s.pool <- first
	return s, nil
}

// MustCompile compiles a schema known to be valid (Herald's own); it panics otherwise.
func MustCompile(text string) *Schema {
	s, err := Compile(text)
	if err != nil {
		panic(fmt.Sprintf("eventschema: %v", err))
	}
	return s
}

// Document returns the schema as decoded JSON (maps, slices, json.Number, ...). The
// caller must not modify it.
func (s *Schema) Document() any { return s.doc }

// JSON returns the schema as JSON text.
func (s *Schema) JSON() []byte { return s.text }

// decode reads JSON or YAML text into a JSON value (numbers as json.Number), checking
// its depth.
func decode(text, what string) (any, []byte, error) {
	js, err := yaml.YAMLToJSON([]byte(text))
	if err != nil {
		return nil, nil, fmt.Errorf("%s is neither JSON nor YAML: %w", what, err)
	}
	if d := depth(js); d > MaxDepth {
		return nil, nil, fmt.Errorf("%s nests %d levels deep; at most %d are allowed", what, d, MaxDepth)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		return nil, nil, fmt.Errorf("%s is not JSON: %w", what, err)
	}
	return doc, js, nil
}

// depth is the deepest nesting of objects and arrays in valid JSON text.
func depth(js []byte) int {
	d, deepest, inString, escaped := 0, 0, false, false
	for _, c := range js {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			d++
			deepest = max(deepest, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return deepest
}

// refuseLoading is the compiler's only loader: an event schema is one document.
type refuseLoading struct{}

func (refuseLoading) Load(url string) (any, error) {
	return nil, fmt.Errorf("references to other documents (%s) are not followed; put the definition under $defs and refer to it as #/$defs/NAME", url)
}

// compile compiles one instance of the schema and checks its shape.
func (s *Schema) compile() (*instance, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(refuseLoading{})
	if err := c.AddResource(location, s.doc); err != nil {
		return nil, fmt.Errorf("the schema cannot be used: %s", plain(err))
	}
	root, err := c.Compile(location)
	if err != nil {
		return nil, fmt.Errorf("the schema does not compile: %s", plain(err))
	}
	inst := &instance{root: root}
	if err := inst.instrument(); err != nil {
		return nil, err
	}
	return inst, nil
}

// plain strips the compile location from the library's messages: the author knows which
// schema it is.
func plain(err error) string {
	msg := strings.ReplaceAll(err.Error(), location, "")
	return strings.ReplaceAll(msg, "jsonschema: ", "")
}

// instrument checks the shape of every subschema the root reaches and makes each charge
// its cost to the instance when it is applied. The charge rides on the format keyword's
// hook, which the validator calls for every subschema it applies, before looking at the
// value's items or properties; this dispatcher never asserts formats (draft 2020-12
// makes format an annotation), so the hook is free for it.
func (inst *instance) instrument() error {
	seen := map[*jsonschema.Schema]bool{}
	var walk func(sch *jsonschema.Schema) error
	walk = func(sch *jsonschema.Schema) error {
		if sch == nil || seen[sch] {
			return nil
		}
		seen[sch] = true
		if err := shape(sch); err != nil {
			return err
		}
		static := staticCost(sch)
		node := sch
		name := "herald-cost"
		if sch.Format != nil {
			name = sch.Format.Name // kept for annotations; never asserted (see above)
		}
		sch.Format = &jsonschema.Format{Name: name, Validate: func(v any) error {
			inst.spent += static + valueCost(node, v)
			if inst.spent > inst.budget {
				panic(budgetSpent{})
			}
			return nil
		}}
		for _, sub := range children(sch) {
			if err := walk(sub); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(inst.root)
}

// shape refuses what the package comment lists.
func shape(sch *jsonschema.Schema) error {
	at := strings.TrimPrefix(sch.Location, location)
	if at == "" {
		at = "#"
	}
	switch {
	case !strings.HasPrefix(sch.Location, location+"#") && sch.Location != location:
		return fmt.Errorf("the schema refers to %s; only references within the schema itself are allowed (#/$defs/NAME)", sch.Location)
	case sch.DynamicRef != nil || sch.RecursiveRef != nil:
		return fmt.Errorf("at %s: $dynamicRef and $recursiveRef are not supported in event schemas; use $ref", at)
	case sch.ID != "" && sch.Location != location:
		return fmt.Errorf("at %s: $id is not allowed in event schemas (Herald names the schema)", at)
	case sch.Anchor != "" || sch.DynamicAnchor != "":
		return fmt.Errorf("at %s: $anchor and $dynamicAnchor are not supported in event schemas; refer by JSON pointer (#/$defs/NAME)", at)
	case len(sch.AllOf) > MaxBranches || len(sch.AnyOf) > MaxBranches || len(sch.OneOf) > MaxBranches:
		return fmt.Errorf("at %s: allOf, anyOf and oneOf may hold at most %d subschemas", at, MaxBranches)
	case len(sch.PatternProperties) > MaxBranches || len(sch.DependentSchemas) > MaxBranches:
		return fmt.Errorf("at %s: patternProperties and dependentSchemas may hold at most %d entries", at, MaxBranches)
	case sch.Enum != nil && len(sch.Enum.Values) > MaxEnum:
		return fmt.Errorf("at %s: enum may hold at most %d values", at, MaxEnum)
	}
	return nil
}

// children are the subschemas a schema applies.
func children(sch *jsonschema.Schema) []*jsonschema.Schema {
	out := []*jsonschema.Schema{sch.Ref, sch.Not, sch.If, sch.Then, sch.Else, sch.PropertyNames,
		sch.UnevaluatedProperties, sch.Contains, sch.Items2020, sch.UnevaluatedItems, sch.ContentSchema}
	out = append(out, sch.AllOf...)
	out = append(out, sch.AnyOf...)
	out = append(out, sch.OneOf...)
	out = append(out, sch.PrefixItems...)
	for _, p := range slices.Sorted(mapKeys(sch.Properties)) {
		out = append(out, sch.Properties[p])
	}
	for _, sub := range sch.PatternProperties {
		out = append(out, sub)
	}
	for _, sub := range sch.DependentSchemas {
		out = append(out, sub)
	}
	if sub, ok := sch.AdditionalProperties.(*jsonschema.Schema); ok {
		out = append(out, sub)
	}
	return out
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// staticCost is what applying sch costs whatever the value: one, plus the values of its
// enum and const and the subschemas it tries on the value itself.
func staticCost(sch *jsonschema.Schema) int64 {
	c := int64(1 + len(sch.AllOf) + len(sch.AnyOf) + len(sch.OneOf) + len(sch.Required) +
		len(sch.DependentRequired) + len(sch.DependentSchemas))
	if sch.Enum != nil {
		for _, v := range sch.Enum.Values {
			c += size(v)
		}
	}
	if sch.Const != nil {
		c += size(*sch.Const)
	}
	for _, sub := range []*jsonschema.Schema{sch.Ref, sch.Not, sch.If, sch.Then, sch.Else} {
		if sub != nil {
			c++
		}
	}
	return c
}

// valueCost is what applying sch to v costs beyond staticCost: the items and properties
// of v it looks at, and the bytes its patterns read.
func valueCost(sch *jsonschema.Schema, v any) int64 {
	switch v := v.(type) {
	case []any:
		var c int64
		if sch.Items2020 != nil || len(sch.PrefixItems) > 0 || sch.Contains != nil || sch.UnevaluatedItems != nil {
			c += int64(len(v))
		}
		if sch.UniqueItems {
			c += size(v)
		}
		return c
	case map[string]any:
		if len(sch.Properties) == 0 && len(sch.PatternProperties) == 0 && sch.AdditionalProperties == nil &&
			sch.PropertyNames == nil && sch.UnevaluatedProperties == nil {
			return 0
		}
		c := int64(len(v))
		if n := len(sch.PatternProperties); n > 0 {
			for k := range v {
				c += int64(n) * int64(1+len(k)/8)
			}
		}
		return c
	case string:
		if sch.Pattern != nil {
			return int64(len(v) / 8)
		}
	}
	return 0
}

// size counts the values in v, the work of comparing or hashing it.
func size(v any) int64 {
	switch v := v.(type) {
	case []any:
		n := int64(1)
		for _, e := range v {
			n += size(e)
		}
		return n
	case map[string]any:
		n := int64(1)
		for _, e := range v {
			n += size(e)
		}
		return n
	case string:
		return 1 + int64(len(v)/64)
	}
	return 1
}

// get takes an instance, compiling one more if every instance is busy and fewer than
// maxInst exist.
func (s *Schema) get() (*instance, error) {
	select {
	case inst := <-s.pool:
		return inst, nil
	default:
	}
	s.mu.Lock()
	if s.made < s.maxInst {
		s.made++
		s.mu.Unlock()
		inst, err := s.compile()
		if err != nil {
			s.mu.Lock()
			s.made--
			s.mu.Unlock()
			return nil, err
		}
		return inst, nil
	}
	s.mu.Unlock()
	return <-s.pool, nil
}

// Violation is why data does not validate: the first failing value and the rule it
// breaks.
type Violation struct {
	// Pointer is the JSON pointer (RFC 6901) of the failing value within the data: ""
	// for the data itself, "/amount", "/items/0/sku".
	Pointer string `json:"pointer"`
	// Keyword is the schema keyword that failed ("minimum", "required", "type", ...),
	// or "budget" when the validation was stopped for spending its budget.
	Keyword string `json:"keyword"`
	// SchemaPath locates the failing keyword in the schema, as a JSON pointer fragment
	// ("#/properties/amount/minimum").
	SchemaPath string `json:"schemaPath"`
	// Message says what is wrong, in English.
	Message string `json:"message"`
}

func (v *Violation) Error() string {
	at := v.Pointer
	if at == "" {
		at = "(the data itself)"
	}
	return fmt.Sprintf("%s: %s (rule %s at %s)", at, v.Message, v.Keyword, v.SchemaPath)
}

// Validate validates data, which must be valid JSON, and returns nil or why not.
func (s *Schema) Validate(data []byte) *Violation {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return &Violation{Keyword: "type", SchemaPath: "#", Message: "the data is not valid JSON"}
	}
	return s.ValidateValue(v, Budget(len(data)))
}

// ValidateValue validates a decoded JSON value (numbers as json.Number, as
// jsonschema.UnmarshalJSON decodes them) within a budget of cost units.
func (s *Schema) ValidateValue(v any, budget int64) (violation *Violation) {
	inst, err := s.get()
	if err != nil {
		// Compiled once already, so this cannot happen short of running out of memory.
		return &Violation{Keyword: "schema", SchemaPath: "#", Message: err.Error()}
	}
	defer func() { s.pool <- inst }()
	inst.spent, inst.budget = 0, budget
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(budgetSpent); !ok {
				panic(r)
			}
			violation = &Violation{Keyword: "budget", SchemaPath: "#", Message: fmt.Sprintf(
				"validating this event against its schema took more than the %d units of work allowed for %d bytes; simplify the schema (an allOf, anyOf or oneOf whose branches recurse through the same $ref doubles its work at every level of the data)",
				budget, (budget-10_000)/4)}
		}
	}()
	if err := inst.root.Validate(v); err != nil {
		var verr *jsonschema.ValidationError
		if !errors.As(err, &verr) {
			return &Violation{Keyword: "schema", SchemaPath: "#", Message: err.Error()}
		}
		return violationOf(verr)
	}
	return nil
}

var printer = message.NewPrinter(language.English)

// violationOf picks the error to report from the library's tree: it follows a single
// cause down (through $ref and groups of one), and of several independent errors the
// first by data location; it stops at anyOf and oneOf, whose branches all failed and
// none of which is "the" reason.
func violationOf(e *jsonschema.ValidationError) *Violation {
	for len(e.Causes) > 0 {
		switch e.ErrorKind.(type) {
		case *kind.AnyOf, *kind.OneOf, *kind.Not, *kind.Contains, *kind.MinContains:
			return leaf(e)
		}
		causes := slices.Clone(e.Causes)
		slices.SortStableFunc(causes, func(a, b *jsonschema.ValidationError) int {
			return strings.Compare(pointer(a.InstanceLocation), pointer(b.InstanceLocation))
		})
		e = causes[0]
	}
	return leaf(e)
}

func leaf(e *jsonschema.ValidationError) *Violation {
	path := e.ErrorKind.KeywordPath()
	schemaURL := e.SchemaURL
	if ref, ok := e.ErrorKind.(*kind.Reference); ok {
		schemaURL, path = ref.URL, []string{ref.Keyword}
	}
	frag := strings.TrimPrefix(schemaURL, location)
	if frag == "" {
		frag = "#"
	}
	rule := frag + pointer(path)
	if strings.HasPrefix(rule, "##") {
		rule = rule[1:]
	}
	keyword := "schema"
	if len(path) > 0 {
		keyword = path[0]
	}
	return &Violation{
		Pointer:    pointer(e.InstanceLocation),
		Keyword:    keyword,
		SchemaPath: rule,
		Message:    e.ErrorKind.LocalizedString(printer),
	}
}

// pointer writes tokens as a JSON pointer ("" for none).
func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// Example decodes one example of a WebhookEventType (JSON or YAML) and validates it; the
// error names the example and says why.
func (s *Schema) Example(i int, text string) (any, error) {
	if len(text) > heraldv1.MaxEventTypeExampleBytes {
		return nil, fmt.Errorf("example %d is %d bytes long; at most %d are allowed", i+1, len(text), heraldv1.MaxEventTypeExampleBytes)
	}
	doc, js, err := decode(text, "example "+strconv.Itoa(i+1))
	if err != nil {
		return nil, err
	}
	if v := s.ValidateValue(doc, Budget(len(js))); v != nil {
		return nil, fmt.Errorf("example %d does not validate against the schema: %s", i+1, v.Error())
	}
	return doc, nil
}
