package eventschema_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/eventschema"
)

const orderSchema = `{
  "type": "object", "required": ["order_id", "customer", "items"], "additionalProperties": false,
  "properties": {
    "order_id": {"type": "integer", "minimum": 1},
    "customer": {"type": "string", "pattern": "^c-[0-9]+$"},
    "items": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"$ref": "#/$defs/item"}}
  },
  "$defs": {"item": {"type": "object", "required": ["sku", "qty", "price_cents"], "properties": {
    "sku": {"type": "string", "pattern": "^SKU-"}, "name": {"type": "string", "maxLength": 200},
    "qty": {"type": "integer", "minimum": 1}, "price_cents": {"type": "integer", "minimum": 0}}}}
}`

func orderData() []byte {
	var items []string
	for j := range 12 {
		items = append(items, fmt.Sprintf(`{"sku":"SKU-%06d","name":"Widget number %d","qty":%d,"price_cents":%d}`, j, j, j+1, 1999+j))
	}
	return []byte(fmt.Sprintf(`{"order_id":1,"customer":"c-42","items":[%s]}`, strings.Join(items, ",")))
}

// BenchmarkValidate_Order1KiB validates the 1 KiB order of the ingest benchmarks (decode
// included) against a schema checking each of its fields.
func BenchmarkValidate_Order1KiB(b *testing.B) {
	s := eventschema.MustCompile(orderSchema)
	data := orderData()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if v := s.Validate(data); v != nil {
			b.Fatal(v)
		}
	}
}
