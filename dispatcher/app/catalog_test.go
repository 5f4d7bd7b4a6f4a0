package app_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/receiverdocs"
	"github.com/herald-dev/herald/pkg/wire"
)

// publishData publishes one Herald JSON event and returns the answer as it is.
func (d *dispatcher) publishData(ns, id, typ, data string) (int, http.Header, []byte) {
	d.t.Helper()
	body := `{"id":"` + id + `","type":"` + typ + `","data":` + data + `}`
	req, _ := http.NewRequest(http.MethodPost, d.url+"/v1/namespaces/"+ns+"/events", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey(d.t, ns))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw
}

// untilAnswer publishes fresh events until one is answered with status (the dispatcher's
// watch catches up with a change within moments), and returns that answer.
func untilAnswer(t *testing.T, d *dispatcher, ns, typ, data string, status int) (http.Header, wire.Error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		got, h, raw := d.publishData(ns, "evt_until_"+time.Now().Format("150405.000000"), typ, data)
		if got == status {
			var e wire.ErrorResponse
			_ = json.Unmarshal(raw, &e)
			return h, e.Error
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: answered %d (%s) for 20s, want %d", typ, data, got, raw, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const invoiceSchema = `
type: object
required: [invoice_id, amount]
properties:
  invoice_id: {type: string, pattern: "^inv_"}
  amount: {type: integer, minimum: 1}
  lines: {type: array, items: {$ref: "#/$defs/line"}}
$defs:
  line: {type: object, required: [sku], properties: {sku: {type: string}}}
`

// The catalog in a real dispatcher: declaring a type turns enforcement on in its
// namespace within moments, a changed schema replaces the compiled one, deleting the
// last declaration turns it off; real deliveries to a real receiver match the schema the
// endpoint's OpenAPI document (from the endpoint API) gives, envelope and extra fields
// included.
func TestDispatcher_CatalogIsEnforcedAndDeliveriesMatchTheReceiverDocs(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "catalog"
	s := newSink(t)
	fixture(t, c, ns, "billing", heraldv1.WebhookEndpointSpec{URL: s.URL,
		Payload: heraldv1.PayloadSpec{ExtraFields: map[string]string{"environment": "production"}}})
	d := startDispatcher(t)

	// No catalog: anything goes (once the dispatcher's watch has the producer's API key,
	// created with the first publish: until then 401).
	untilAnswer(t, d, ns, "invoice.paid", `{"amount": "lots"}`, http.StatusAccepted)

	et := &heraldv1.WebhookEventType{ObjectMeta: metav1.ObjectMeta{Name: "invoice-paid", Namespace: ns},
		Spec: heraldv1.WebhookEventTypeSpec{Type: "invoice.paid", Description: "An invoice was paid.", Schema: invoiceSchema,
			Examples: []string{`{"invoice_id": "inv_1", "amount": 2500}`}}}
	mustCreate(t, c, et)
	_, e := untilAnswer(t, d, ns, "invoice.paid", `{"invoice_id": "inv_2", "amount": 0}`, http.StatusUnprocessableEntity)
	if e.Code != wire.CodeSchemaViolation || e.Pointer != "/amount" || e.Rule != "minimum" || e.SchemaPath != "#/properties/amount/minimum" {
		t.Errorf("refusal = %+v", e)
	}
	if got, _, raw := d.publishData(ns, "evt_unknown", "invoice.sent", `{}`); got != http.StatusUnprocessableEntity || !strings.Contains(string(raw), wire.CodeUnknownEventType) {
		t.Errorf("an undeclared type: %d %s, want 422 unknown_event_type", got, raw)
	}

	// Valid events are delivered; their bodies match the document's schema.
	valid := map[string]string{
		"evt_plain": `{"invoice_id": "inv_3", "amount": 10}`,
		"evt_lines": `{"invoice_id": "inv_4", "amount": 20, "lines": [{"sku": "a"}, {"sku": "b", "qty": 2}]}`,
	}
	for id, data := range valid {
		if got, _, raw := d.publishData(ns, id, "invoice.paid", data); got != http.StatusAccepted {
			t.Fatalf("%s: %d %s", id, got, raw)
		}
	}
	token := serviceAccountToken(t, c, ns, "docs-reader", "get")
	code, doc := call(t, http.MethodGet, d.url+"/v1/namespaces/"+ns+"/endpoints/billing/openapi", token, nil)
	if code != http.StatusOK {
		t.Fatalf("GET openapi: %d %s", code, doc)
	}
	sch, err := receiverdocs.RequestSchema(doc, "invoice.paid")
	if err != nil {
		t.Fatalf("the document's invoice.paid body schema: %v\n%s", err, doc)
	}
	for id := range valid {
		r, body := s.waitEvent(t, id, 20*time.Second)
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(v); err != nil {
			t.Errorf("delivery %s does not match the documented schema: %v\nbody: %s", id, err, body)
		}
		if r.Header.Get("webhook-signature") == "" || r.Header.Get("X-Herald-Event-Type") != "invoice.paid" {
			t.Errorf("delivery %s lacks the documented headers: %v", id, r.Header)
		}
	}
	// What the document promises is strict enough to catch a wrong body: the same
	// delivery without its extra field does not validate.
	_, body := s.waitEvent(t, "evt_plain", time.Second)
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	delete(m, "environment")
	if sch.Validate(m) == nil {
		t.Error("a body without the endpoint's extra field validates against the document: it describes too little")
	}

	// A changed schema replaces the compiled one.
	update(t, c, et, func(et *heraldv1.WebhookEventType) {
		et.Spec.Schema = strings.Replace(invoiceSchema, "minimum: 1", "minimum: 100", 1)
	})
	untilAnswer(t, d, ns, "invoice.paid", `{"invoice_id": "inv_5", "amount": 50}`, http.StatusUnprocessableEntity)

	// Deprecated: accepted, with a Warning.
	update(t, c, et, func(et *heraldv1.WebhookEventType) {
		et.Spec.Deprecated, et.Spec.DeprecationMessage = true, "send invoice.settled"
	})
	h, _ := untilAnswer(t, d, ns, "invoice.paid", `{"invoice_id": "inv_6", "amount": 500}`, http.StatusAccepted)
	for i := 0; !strings.Contains(h.Get("Warning"), "send invoice.settled"); i++ {
		if i == 100 {
			t.Fatalf("Warning = %q, want the deprecation message", h.Get("Warning"))
		}
		time.Sleep(100 * time.Millisecond)
		_, h, _ = d.publishData(ns, "evt_dep_"+time.Now().Format("150405.000000"), "invoice.paid", `{"invoice_id": "inv_6", "amount": 500}`)
	}

	// The last declaration deleted: no catalog, anything goes again.
	if err := c.Delete(t.Context(), et); err != nil {
		t.Fatal(err)
	}
	untilAnswer(t, d, ns, "invoice.sent", `{}`, http.StatusAccepted)
}
