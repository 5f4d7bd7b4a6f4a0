package router_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/internal/routing"
)

func filter(t *testing.T, expr string) *routing.Filter {
	t.Helper()
	f, err := routing.CompileFilter(expr)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRoute_MatchesTypesAndFiltersAndReportsFilterFailures(t *testing.T) {
	table := router.NewTable()
	table.Set("shop", router.Subscription{Name: "all-invoices", Endpoint: "billing", Patterns: []string{"invoice.*"}})
	table.Set("shop", router.Subscription{Name: "big-invoices", Endpoint: "billing", Patterns: []string{"invoice.paid"},
		Filter: filter(t, "event.data.amount > 1000")})
	table.Set("shop", router.Subscription{Name: "large", Endpoint: "audit", Patterns: []string{"*"},
		Filter: filter(t, "event.data.amount > 1000")})
	table.Set("shop", router.Subscription{Name: "refunds", Endpoint: "support", Patterns: []string{"refund.created"}})
	table.Set("other", router.Subscription{Name: "everything", Endpoint: "elsewhere", Patterns: []string{"*"}})

	type failure struct{ sub, err string }
	cases := []struct {
		why      string
		ns, typ  string
		data     string
		want     []string
		failures []failure
	}{
		{"a glob and an exact type reaching one endpoint give one delivery", "shop", "invoice.paid", `{"amount": 10}`,
			[]string{"billing"}, nil},
		{"a filter that passes adds its endpoint", "shop", "invoice.paid", `{"amount": 5000}`,
			[]string{"audit", "billing"}, nil},
		{"a filter that cannot be evaluated routes nothing and is reported by subscription", "shop", "order.created", `{"total": 5}`,
			nil, []failure{{"large", "no such key"}}},
		{"no subscription of the type", "shop", "customer.created", `{"amount": 5000}`,
			[]string{"audit"}, nil},
		{"subscriptions of another namespace never match", "shop", "refund.created", `{"amount": 1}`,
			[]string{"support"}, nil},
		{"a namespace without subscriptions", "empty", "invoice.paid", `{}`, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.why, func(t *testing.T) {
			var got []failure
			endpoints := table.Route(nil, c.ns, &router.Event{ID: "evt_1", Type: c.typ, CreatedAt: time.Now(), Data: json.RawMessage(c.data)},
				func(sub string, err error) { got = append(got, failure{sub, err.Error()}) })
			if !slices.Equal(endpoints, c.want) {
				t.Errorf("endpoints = %v, want %v", endpoints, c.want)
			}
			if len(got) != len(c.failures) {
				t.Fatalf("filter failures = %v, want %v", got, c.failures)
			}
			for i := range got {
				if got[i].sub != c.failures[i].sub || !strings.Contains(got[i].err, c.failures[i].err) {
					t.Errorf("failure %d = %+v, want %+v", i, got[i], c.failures[i])
				}
			}
		})
	}
}

func TestRoute_AppendsToDstAndSortsOnlyItsOwnPart(t *testing.T) {
	table := router.NewTable()
	for _, ep := range []string{"c", "a", "b"} {
		table.Set("ns", router.Subscription{Name: "to-" + ep, Endpoint: ep, Patterns: []string{"*"}})
	}
	dst := []string{"z"}
	got := table.Route(dst, "ns", &router.Event{ID: "e", Type: "t", Data: json.RawMessage(`{}`)}, nil)
	if !slices.Equal(got, []string{"z", "a", "b", "c"}) {
		t.Fatalf("Route = %v", got)
	}
}

func TestTable_DeleteRemovesTheSubscriptionAndItsNamespace(t *testing.T) {
	table := router.NewTable()
	table.Set("ns", router.Subscription{Name: "s", Endpoint: "ep", Patterns: []string{"*"}})
	table.Set("ns", router.Subscription{Name: "s", Endpoint: "other", Patterns: []string{"*"}}) // replaces
	ev := &router.Event{ID: "e", Type: "t", Data: json.RawMessage(`{}`)}
	if got := table.Route(nil, "ns", ev, nil); !slices.Equal(got, []string{"other"}) {
		t.Fatalf("after replace: %v", got)
	}
	table.Delete("ns", "s")
	if got := table.Route(nil, "ns", ev, nil); len(got) != 0 {
		t.Fatalf("after delete: %v", got)
	}
	table.Delete("ns", "s") // deleting twice is harmless
}

// A subscription changed or deleted routes by what it says now: the index by exact
// type follows every Set and Delete.
func TestTable_IndexFollowsChangedAndDeletedSubscriptions(t *testing.T) {
	tb := router.NewTable()
	route := func(typ string) []string {
		return tb.Route(nil, "shop", &router.Event{ID: "e1", Type: typ, Data: []byte(`{}`)}, nil)
	}
	tb.Set("shop", router.Subscription{Name: "a", Endpoint: "billing", Patterns: []string{"invoice.paid", "order.*"}})
	tb.Set("shop", router.Subscription{Name: "b", Endpoint: "crm", Patterns: []string{"invoice.paid"}})
	tb.Set("shop", router.Subscription{Name: "c", Endpoint: "audit", Patterns: []string{"*"}})
	for typ, want := range map[string][]string{
		"invoice.paid":  {"audit", "billing", "crm"},
		"order.created": {"audit", "billing"},
		"user.deleted":  {"audit"},
	} {
		if got := route(typ); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", typ, got, want)
		}
	}
	tb.Set("shop", router.Subscription{Name: "a", Endpoint: "billing", Patterns: []string{"refund.issued"}})
	tb.Delete("shop", "c")
	for typ, want := range map[string][]string{
		"invoice.paid":  {"crm"},
		"order.created": nil,
		"refund.issued": {"billing"},
	} {
		if got := route(typ); !slices.Equal(got, want) {
			t.Errorf("after the change, %s: %v, want %v", typ, got, want)
		}
	}
}

// BenchmarkRoute_TenThousandSubscriptions is one event routed in a namespace of 10,000
// subscriptions, each to its own event type, plus one glob.
func BenchmarkRoute_TenThousandSubscriptions(b *testing.B) {
	tb := router.NewTable()
	for i := range 10_000 {
		name := fmt.Sprintf("tenant-%05d", i)
		tb.Set("shop", router.Subscription{Name: name, Endpoint: name, Patterns: []string{"tenant." + name}})
	}
	tb.Set("shop", router.Subscription{Name: "audit", Endpoint: "audit", Patterns: []string{"tenant.*"}})
	ev := &router.Event{ID: "e1", Type: "tenant.tenant-04242", Data: []byte(`{}`)}
	dst := make([]string, 0, 4)
	b.ReportAllocs()
	for b.Loop() {
		if dst = tb.Route(dst[:0], "shop", ev, nil); len(dst) != 2 {
			b.Fatalf("routed to %v", dst)
		}
	}
}

// BenchmarkRoute_WithAFilter is one typical event routed through a subscription with a
// typical filter: decoding the payload and evaluating the filter.
func BenchmarkRoute_WithAFilter(b *testing.B) {
	tb := router.NewTable()
	f, err := routing.CompileFilter("event.data.amount > 1000 && event.data.customer.tier in ['gold', 'platinum'] && event.data.items.exists(i, i.sku.startsWith('A-'))")
	if err != nil {
		b.Fatal(err)
	}
	tb.Set("shop", router.Subscription{Name: "big", Endpoint: "billing", Patterns: []string{"invoice.*"}, Filter: f})
	ev := &router.Event{ID: "e1", Type: "invoice.paid", CreatedAt: time.Now(), Data: []byte(`{"amount": 5000, "currency": "EUR",
		"customer": {"id": "cus_1", "tier": "gold", "email": "ana@example.com"},
		"items": [{"sku": "B-1", "qty": 1}, {"sku": "B-2", "qty": 3}, {"sku": "A-7", "qty": 2}]}`)}
	dst := make([]string, 0, 4)
	b.ReportAllocs()
	for b.Loop() {
		if dst = tb.Route(dst[:0], "shop", ev, nil); len(dst) != 1 {
			b.Fatalf("routed to %v", dst)
		}
	}
}
