package eventschema_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/herald-dev/herald/internal/eventschema"
)

const invoiceSchema = `
type: object
required: [invoice_id, amount]
additionalProperties: false
properties:
  invoice_id: {type: string, pattern: "^inv_"}
  amount: {type: integer, minimum: 1}
  currency: {enum: [EUR, USD]}
  lines:
    type: array
    items: {$ref: "#/$defs/line"}
$defs:
  line:
    type: object
    required: [sku]
    properties:
      sku: {type: string}
`

func TestValidate_NamesTheFailingValueAndTheRule(t *testing.T) {
	s, err := eventschema.Compile(invoiceSchema)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		why, data                    string
		pointer, keyword, schemaPath string
	}{
		{"a value below its minimum", `{"invoice_id":"inv_1","amount":0}`, "/amount", "minimum", "#/properties/amount/minimum"},
		{"a required property missing", `{"amount":5}`, "", "required", "#/required"},
		{"a value of the wrong type", `{"invoice_id":"inv_1","amount":"5"}`, "/amount", "type", "#/properties/amount/type"},
		{"a property the schema does not allow", `{"invoice_id":"inv_1","amount":5,"x":1}`, "", "additionalProperties", "#/additionalProperties"},
		{"a string that breaks its pattern", `{"invoice_id":"x","amount":5}`, "/invoice_id", "pattern", "#/properties/invoice_id/pattern"},
		{"a value outside its enum", `{"invoice_id":"inv_1","amount":5,"currency":"GBP"}`, "/currency", "enum", "#/properties/currency/enum"},
		{"a failure behind a $ref, inside an array", `{"invoice_id":"inv_1","amount":5,"lines":[{"sku":"a"},{}]}`, "/lines/1", "required", "#/$defs/line/required"},
		{"the data is not an object", `[1]`, "", "type", "#/type"},
	} {
		t.Run(tc.why, func(t *testing.T) {
			v := s.Validate([]byte(tc.data))
			if v == nil {
				t.Fatalf("%s validated", tc.data)
			}
			if v.Pointer != tc.pointer || v.Keyword != tc.keyword || v.SchemaPath != tc.schemaPath {
				t.Errorf("got pointer %q keyword %q schemaPath %q (%s), want %q %q %q", v.Pointer, v.Keyword, v.SchemaPath, v.Message, tc.pointer, tc.keyword, tc.schemaPath)
			}
			if v.Message == "" {
				t.Error("no message")
			}
		})
	}
	if v := s.Validate([]byte(`{"invoice_id":"inv_1","amount":2500,"currency":"EUR","lines":[{"sku":"a"}]}`)); v != nil {
		t.Errorf("valid data refused: %v", v)
	}
}

func TestCompile_RefusesWhatIsNotBounded(t *testing.T) {
	deep := strings.Repeat(`{"items":`, eventschema.MaxDepth+1) + `true` + strings.Repeat(`}`, eventschema.MaxDepth+1)
	var branches []string
	for i := 0; i <= eventschema.MaxBranches; i++ {
		branches = append(branches, fmt.Sprintf(`{"const":%d}`, i))
	}
	for _, tc := range []struct{ why, schema, want string }{
		{"a reference to a URL would fetch it", `{"$ref":"https://example.com/schema.json"}`, "references to other documents"},
		{"a reference to a file would read it", `{"$ref":"file:///etc/passwd"}`, "references to other documents"},
		{"a relative reference resolves to another document", `{"$ref":"other.json"}`, "references to other documents"},
		{"nesting beyond the bound", deep, "levels deep"},
		{"too many branches in one anyOf", `{"anyOf":[` + strings.Join(branches, ",") + `]}`, "at most 64 subschemas"},
		{"$dynamicRef resolves at run time", `{"$defs":{"a":{"$dynamicAnchor":"x"}},"$dynamicRef":"#x"}`, "$dynamicRef"},
		{"another dialect", `{"$schema":"http://json-schema.org/draft-07/schema#"}`, "draft 2020-12"},
		{"not a schema", `"a string"`, "must be a JSON object"},
		{"neither JSON nor YAML", "{\"type\": [", "neither JSON nor YAML"},
		{"a keyword of the wrong type", `{"minimum":"one"}`, "does not compile"},
		{"longer than the CRD allows", `{"description":"` + strings.Repeat("x", 70000) + `"}`, "at most 65536"},
	} {
		t.Run(tc.why, func(t *testing.T) {
			_, err := eventschema.Compile(tc.schema)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Compile = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// An allOf of two branches under a recursive $ref applies both at every level of the
// data: 2^depth subschemas for data nested depth levels, which without a bound would hold a core for
// hours on an event of a few hundred bytes. The budget stops it, and says so.
func TestValidate_StopsASchemaWhoseCostExplodes(t *testing.T) {
	s, err := eventschema.Compile(`{
	  "$defs": {"node": {"allOf": [
	    {"type": "object", "properties": {"c": {"$ref": "#/$defs/node"}}},
	    {"type": "object", "properties": {"c": {"$ref": "#/$defs/node"}}}
	  ]}},
	  "$ref": "#/$defs/node"
	}`)
	if err != nil {
		t.Fatal(err)
	}
	data := strings.Repeat(`{"c":`, 40) + `{}` + strings.Repeat(`}`, 40)
	v := s.Validate([]byte(data))
	if v == nil || v.Keyword != "budget" {
		t.Fatalf("Validate = %v, want the budget to stop it", v)
	}
	// Shallow data of the same schema is cheap and valid.
	if v := s.Validate([]byte(`{"c":{"c":{}}}`)); v != nil {
		t.Errorf("shallow data refused: %v", v)
	}
}

func TestExample_IsValidatedAgainstTheSchema(t *testing.T) {
	s, err := eventschema.Compile(invoiceSchema)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Example(0, "invoice_id: inv_9\namount: 10\n"); err != nil {
		t.Errorf("a valid YAML example refused: %v", err)
	}
	_, err = s.Example(1, `{"invoice_id":"inv_9","amount":-1}`)
	if err == nil || !strings.Contains(err.Error(), "example 2") || !strings.Contains(err.Error(), "/amount") {
		t.Errorf("Example = %v, want it to name example 2 and /amount", err)
	}
}

// Validations run in parallel on instances of their own, each with its own budget.
func TestValidate_Concurrently(t *testing.T) {
	s, err := eventschema.Compile(invoiceSchema)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 200 {
				data := fmt.Sprintf(`{"invoice_id":"inv_%d","amount":%d}`, j, i+j)
				if v := s.Validate([]byte(data)); v != nil && i+j > 0 {
					t.Errorf("%s: %v", data, v)
				}
			}
		})
	}
	wg.Wait()
}

func TestBuiltins_CompileAndTheirExamplesValidate(t *testing.T) {
	got := map[string]bool{}
	for _, d := range eventschema.Builtins() {
		if !d.Builtin || d.Schema == nil || len(d.Examples) != 1 || d.Description == "" {
			t.Errorf("%s: incomplete definition %+v", d.Type, d)
		}
		got[d.Type] = true
	}
	for _, typ := range []string{"herald.endpoint.disabled", "herald.endpoint.enabled", "herald.endpoint.recovered",
		"herald.delivery.dead_lettered", "herald.replay.completed"} {
		if !got[typ] {
			t.Errorf("built-in %s missing", typ)
		}
	}
}
