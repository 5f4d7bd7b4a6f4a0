package ingest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/catalog"
	"github.com/herald-dev/herald/dispatcher/ingest"
	"github.com/herald-dev/herald/pkg/wire"
)

const orderSchema = `
type: object
required: [order_id, total]
properties:
  order_id: {type: integer}
  total: {type: integer, minimum: 1}
  items:
    type: array
    items: {type: object, required: [sku], properties: {sku: {type: string}}}
`

func eventType(ns, name, typ, schema string, mutate ...func(*heraldv1.WebhookEventTypeSpec)) *heraldv1.WebhookEventType {
	et := &heraldv1.WebhookEventType{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(time.Unix(1_700_000_000, 0))},
		Spec:       heraldv1.WebhookEventTypeSpec{Type: typ, Schema: schema},
	}
	for _, m := range mutate {
		m(&et.Spec)
	}
	return et
}

// catalogFixture is the handler with a real catalog holding team-a's event types.
func catalogFixture(t *testing.T) (*fixture, *catalog.Catalog, *[]string, *[]string) {
	t.Helper()
	cat := catalog.New()
	cat.Set(eventType("team-a", "order-created", "order.created", orderSchema))
	cat.Set(eventType("team-a", "order-placed", "order.placed", `{"type": "object"}`, func(s *heraldv1.WebhookEventTypeSpec) {
		s.Deprecated, s.DeprecationMessage = true, "send order.created instead"
	}))
	var deprecated, refused []string
	f := newFixture(t, func(o *ingest.Options) {
		o.Catalog = cat
		o.DeprecatedAccepted = func(ns, typ string) { deprecated = append(deprecated, ns+"/"+typ) }
		o.CatalogRefused = func(ns, code string) { refused = append(refused, ns+"/"+code) }
	})
	return f, cat, &deprecated, &refused
}

func TestCatalog_DataThatBreaksTheSchemaIsRefusedNamingFieldAndRule(t *testing.T) {
	f, _, _, refused := catalogFixture(t)
	binary := map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "o-1", "Ce-Source": "shop", "Ce-Type": "order.created"}
	for _, tc := range []struct {
		why, path string
		header    map[string]string
		body      string
		index     *int
	}{
		{"Herald JSON", single, nil, `{"type":"order.created","data":{"order_id":1,"total":0}}`, nil},
		{"a structured CloudEvent", single, map[string]string{"Content-Type": "application/cloudevents+json"},
			`{"specversion":"1.0","id":"o-1","source":"shop","type":"order.created","data":{"order_id":1,"total":0}}`, nil},
		{"a binary CloudEvent", single, binary, `{"order_id":1,"total":0}`, nil},
		{"the second event of a batch", batch, nil,
			`[{"type":"order.created","data":{"order_id":1,"total":5}},{"type":"order.created","data":{"order_id":2,"total":0}}]`, ptr(1)},
		{"the first event of a CloudEvents batch", batch, map[string]string{"Content-Type": "application/cloudevents-batch+json"},
			`[{"specversion":"1.0","id":"o-1","source":"shop","type":"order.created","data":{"order_id":1,"total":0}}]`, ptr(0)},
	} {
		t.Run(tc.why, func(t *testing.T) {
			before := f.acc.callCount()
			r := f.post(t, tc.path, tc.header, tc.body)
			if r.status != http.StatusUnprocessableEntity {
				t.Fatalf("status = %d (%s), want 422", r.status, r.body)
			}
			e := r.errorBody(t)
			if e.Code != wire.CodeSchemaViolation || e.Field != "data" || e.Pointer != "/total" || e.Rule != "minimum" || e.SchemaPath != "#/properties/total/minimum" {
				t.Errorf("error = %+v, want schema_violation at data /total, rule minimum, #/properties/total/minimum", e)
			}
			if !strings.Contains(e.Message, "data/total") || !strings.Contains(e.Message, `"order.created"`) {
				t.Errorf("message %q should name data/total and the type", e.Message)
			}
			if (tc.index == nil) != (e.Index == nil) || (tc.index != nil && *tc.index != *e.Index) {
				t.Errorf("index = %v, want %v", e.Index, tc.index)
			}
			if f.acc.callCount() != before {
				t.Error("a refused request reached the acceptor: nothing of it may be accepted")
			}
		})
	}
	if len(*refused) != 5 || (*refused)[0] != "team-a/schema_violation" {
		t.Errorf("refusals counted: %v, want 5 of team-a/schema_violation", *refused)
	}
}

func TestCatalog_AnUndeclaredTypeIsRefusedWhereTheNamespaceHasACatalog(t *testing.T) {
	f, cat, _, _ := catalogFixture(t)
	r := f.post(t, single, nil, `{"type":"order.shipped","data":{}}`)
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("status = %d (%s), want 422", r.status, r.body)
	}
	if e := r.errorBody(t); e.Code != wire.CodeUnknownEventType || e.Field != "type" || !strings.Contains(e.Message, `"order.shipped" is not declared in namespace "team-a"`) {
		t.Errorf("error = %+v", e)
	}
	// Declaring it is enough, at once.
	cat.Set(eventType("team-a", "order-shipped", "order.shipped", `{"type":"object"}`))
	if r := f.post(t, single, nil, `{"type":"order.shipped","data":{}}`); r.status != http.StatusAccepted {
		t.Errorf("after declaring the type: status = %d (%s), want 202", r.status, r.body)
	}
	// The last declaration gone, the namespace has no catalog and takes any type again.
	for _, name := range []string{"order-created", "order-placed", "order-shipped"} {
		cat.Delete("team-a", name)
	}
	if r := f.post(t, single, nil, `{"type":"anything.else","data":{}}`); r.status != http.StatusAccepted {
		t.Errorf("without a catalog: status = %d (%s), want 202", r.status, r.body)
	}
}

func TestCatalog_ADeprecatedTypeIsAcceptedWithAWarningAndCounted(t *testing.T) {
	f, _, deprecated, _ := catalogFixture(t)
	r := f.post(t, batch, nil, `[{"type":"order.placed","data":{}},{"type":"order.placed","data":{}},{"type":"order.created","data":{"order_id":1,"total":3}}]`)
	if r.status != http.StatusAccepted {
		t.Fatalf("status = %d (%s), want 202", r.status, r.body)
	}
	want := `299 herald "event type order.placed is deprecated: send order.created instead"`
	if got := r.header.Values("Warning"); len(got) != 1 || got[0] != want {
		t.Errorf("Warning = %q, want once %q", got, want)
	}
	if len(*deprecated) != 2 || (*deprecated)[0] != "team-a/order.placed" {
		t.Errorf("deprecated events counted: %v, want team-a/order.placed twice", *deprecated)
	}
}

func TestCatalog_ASchemaThatDoesNotCompileLetsEventsThroughWithAWarning(t *testing.T) {
	f, cat, _, _ := catalogFixture(t)
	cat.Set(eventType("team-a", "order-created", "order.created", `{"$ref": "https://example.com/order.json"}`))
	r := f.post(t, single, nil, `{"type":"order.created","data":{"total":0}}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("status = %d (%s), want 202: a broken catalog must not lose events", r.status, r.body)
	}
	if w := r.header.Get("Warning"); !strings.Contains(w, "was not validated") || !strings.Contains(w, "references to other documents") {
		t.Errorf("Warning = %q", w)
	}
	// Fixed, it is enforced again: the compiled schema was replaced.
	cat.Set(eventType("team-a", "order-created", "order.created", orderSchema))
	if r := f.post(t, single, nil, `{"type":"order.created","data":{"total":0}}`); r.status != http.StatusUnprocessableEntity {
		t.Errorf("after the fix: status = %d (%s), want 422", r.status, r.body)
	}
}

func TestCatalog_HeraldsOwnTypesCannotBePublished(t *testing.T) {
	f := newFixture(t, nil) // no catalog at all: the prefix is reserved everywhere
	r := f.post(t, single, nil, `{"type":"herald.endpoint.disabled","data":{}}`)
	if r.status != http.StatusBadRequest {
		t.Fatalf("status = %d (%s), want 400", r.status, r.body)
	}
	if e := r.errorBody(t); e.Field != "type" || !strings.Contains(e.Message, "reserved") {
		t.Errorf("error = %+v", e)
	}
}

func ptr[T any](v T) *T { return &v }
