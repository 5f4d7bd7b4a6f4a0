package router_test

import (
	"slices"
	"testing"

	"github.com/herald-dev/herald/dispatcher/router"
)

// Herald's operational events go only to subscriptions that name the herald. prefix: a
// subscription to "*" was written for the producers' events.
func TestRoute_OperationalEventsOnlyMatchPatternsNamingThem(t *testing.T) {
	table := router.NewTable()
	table.Set("shop", router.Subscription{Name: "everything", Endpoint: "audit", Patterns: []string{"*"}})
	table.Set("shop", router.Subscription{Name: "disabled-anything", Endpoint: "ops", Patterns: []string{"*.disabled"}})
	table.Set("shop", router.Subscription{Name: "alerts", Endpoint: "pager", Patterns: []string{"herald.*"}})
	table.Set("shop", router.Subscription{Name: "dead", Endpoint: "tickets", Patterns: []string{"herald.delivery.dead_lettered"}})
	for _, tc := range []struct {
		typ  string
		want []string
	}{
		{"herald.endpoint.disabled", []string{"pager"}},
		{"herald.delivery.dead_lettered", []string{"pager", "tickets"}},
		{"invoice.disabled", []string{"audit", "ops"}},
	} {
		got := table.Route(nil, "shop", &router.Event{Type: tc.typ, Data: []byte(`{}`)}, nil)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s routed to %v, want %v", tc.typ, got, tc.want)
		}
	}
}
