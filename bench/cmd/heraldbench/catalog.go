package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/catalog"
	"github.com/herald-dev/herald/dispatcher/ingest"
)

// Scenario h is a with the namespace's catalog on: the benchmark's event type declared
// with a JSON Schema that checks every field of its data (every line item too), so every
// event is validated at ingest. Run beside a, in the same run, it measures what
// enforcing a schema costs.

// envEventSchema names, in the dispatcher child's environment, a file holding the
// schema of the benchmark's event type; unset, the child has no catalog.
const envEventSchema = "HERALDBENCH_EVENT_SCHEMA"

// benchSchema describes payloadData's events exactly.
const benchSchema = `{
  "type": "object", "required": ["order_id", "customer", "currency", "items"], "additionalProperties": false,
  "properties": {
    "order_id": {"type": "integer", "minimum": 1},
    "customer": {"type": "string", "pattern": "^c-[0-9]+$"},
    "currency": {"enum": ["EUR", "USD", "GBP"]},
    "note": {"type": "string", "maxLength": 65536},
    "items": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/item"}}
  },
  "$defs": {"item": {"type": "object", "required": ["sku", "qty", "price_cents"], "additionalProperties": false, "properties": {
    "sku": {"type": "string", "pattern": "^SKU-[0-9]{6}$"}, "name": {"type": "string", "maxLength": 200},
    "qty": {"type": "integer", "minimum": 1}, "price_cents": {"type": "integer", "minimum": 0}}}}
}`

// childCatalog is the child's catalog: the benchmark's event type with the schema named
// by envEventSchema, or none.
func childCatalog() (ingest.Catalog, error) {
	path := os.Getenv(envEventSchema)
	if path == "" {
		return nil, nil
	}
	schema, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cat := catalog.New()
	cat.Set(&heraldv1.WebhookEventType{
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: "order-created", CreationTimestamp: metav1.Now()},
		Spec:       heraldv1.WebhookEventTypeSpec{Type: eventType, Schema: string(schema)},
	})
	// The schema must accept the benchmark's events: a refusal would measure nothing.
	if v := cat.Check(benchNamespace, eventType, payloadData(1024)); v != nil {
		return nil, fmt.Errorf("the benchmark's schema refuses its own events: %+v", v)
	}
	return cat, nil
}

func (b *bench) scenarioH() (*scenarioResult, error) {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("heraldbench-schema-%d.json", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(benchSchema), 0o644); err != nil {
		return nil, err
	}
	defer os.Remove(path)
	saved := b.o.DispatcherEnv
	b.o.DispatcherEnv = saved + "," + envEventSchema + "=" + path
	defer func() { b.o.DispatcherEnv = saved }()
	r, _, err := b.saturate("h", "1:1 with the event type's JSON Schema enforced at ingest", 1, 0)
	if err != nil {
		return nil, err
	}
	r.CeilingPercent = 100 * r.DeliveriesPerSecond / b.res.Ceiling1.PerSecond
	return r, nil
}

// catalogMarkdown compares h with a of the same run.
func catalogMarkdown(w io.Writer, r *results) {
	h, a := r.Scenarios["h"], r.Scenarios["a"]
	if h == nil {
		return
	}
	fmt.Fprintf(w, "\nh. schemas on (%d B events validated against a schema checking every field and line item): %.0f events/s, %.0f deliveries/s, p99 %.1f ms, %.3f dispatcher CPU s / 1k deliveries, peak RSS %.0f MiB",
		r.Options.PayloadBytes, h.EventsPerSecond, h.DeliveriesPerSecond, h.Latency.P99, h.CPUSecondsPer1k, h.PeakRSSMiB)
	if a != nil && a.DeliveriesPerSecond > 0 && a.CPUSecondsPer1k > 0 {
		fmt.Fprintf(w, "; against a of this run (schemas off): deliveries/s %.0f %%, CPU per delivery %.2f×, +%.0f µs of CPU per event",
			100*h.DeliveriesPerSecond/a.DeliveriesPerSecond, h.CPUSecondsPer1k/a.CPUSecondsPer1k, (h.CPUSecondsPer1k-a.CPUSecondsPer1k)*1000)
	}
	fmt.Fprintln(w, ".")
}
