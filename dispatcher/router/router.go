// Package router decides which endpoints an event goes to. It holds the namespace's
// WebhookSubscriptions, kept current by the dispatcher's watch, and matches an event's
// type against their patterns and its content against their CEL filters. Several
// subscriptions reaching the same endpoint give one delivery.
package router

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/routing"
)

// Subscription is the routing view of one WebhookSubscription.
type Subscription struct {
	Name     string
	Endpoint string
	Patterns []string
	// Filter is nil when the subscription has none.
	Filter *routing.Filter
}

// Event is what routing looks at.
type Event struct {
	ID        string
	Type      string
	Source    string
	CreatedAt time.Time
	Data      json.RawMessage
}

// Table holds the subscriptions of every namespace. It is safe for concurrent use; reads
// (one per ingested event) vastly outnumber writes (one per subscription change).
type Table struct {
	mu   sync.RWMutex
	byNS map[string]*namespaceTable
}

// namespaceTable indexes a namespace's subscriptions by the event types they name
// exactly, so that routing an event looks at the subscriptions of its type and at those
// with a glob, not at every subscription: with 10,000 endpoints each subscribed to its
// own type in one namespace, matching every pattern per event halved 1:1 throughput.
type namespaceTable struct {
	subs  map[string]Subscription
	exact map[string]map[string]struct{} // event type -> subscriptions naming it exactly
	glob  map[string]struct{}            // subscriptions with at least one glob pattern
}

func (n *namespaceTable) index(s Subscription) {
	for _, p := range s.Patterns {
		if strings.Contains(p, "*") {
			n.glob[s.Name] = struct{}{}
			continue
		}
		if n.exact[p] == nil {
			n.exact[p] = map[string]struct{}{}
		}
		n.exact[p][s.Name] = struct{}{}
	}
}

func (n *namespaceTable) unindex(s Subscription) {
	delete(n.glob, s.Name)
	for _, p := range s.Patterns {
		if names := n.exact[p]; names != nil {
			delete(names, s.Name)
			if len(names) == 0 {
				delete(n.exact, p)
			}
		}
	}
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{byNS: map[string]*namespaceTable{}} }

// Set adds or replaces a subscription.
func (t *Table) Set(namespace string, s Subscription) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.byNS[namespace]
	if ns == nil {
		ns = &namespaceTable{subs: map[string]Subscription{}, exact: map[string]map[string]struct{}{}, glob: map[string]struct{}{}}
		t.byNS[namespace] = ns
	}
	if old, ok := ns.subs[s.Name]; ok {
		ns.unindex(old)
	}
	ns.subs[s.Name] = s
	ns.index(s)
}

// Delete removes a subscription.
func (t *Table) Delete(namespace, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.byNS[namespace]
	if ns == nil {
		return
	}
	if old, ok := ns.subs[name]; ok {
		ns.unindex(old)
		delete(ns.subs, name)
	}
	if len(ns.subs) == 0 {
		delete(t.byNS, namespace)
	}
}

// Route returns the endpoints (sorted, each once) whose subscriptions match the event,
// appended to dst. A filter that fails to evaluate on this event counts as no match (as
// in Kubernetes' own CEL matchConditions) and is reported to failed, when not nil, with
// the subscription's name, so that the failure reaches the subscription's owner.
func (t *Table) Route(dst []string, namespace string, ev *Event, failed func(subscription string, err error)) []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	ns := t.byNS[namespace]
	if ns == nil {
		return dst
	}
	start := len(dst)
	var input map[string]any // built once, only if a filter needs it
	consider := func(s Subscription) {
		if slices.Contains(dst[start:], s.Endpoint) {
			return
		}
		if s.Filter != nil {
			if input == nil {
				input = filterInput(ev)
			}
			ok, err := s.Filter.Match(input)
			if err != nil && failed != nil {
				failed(s.Name, err)
			}
			if !ok {
				return
			}
		}
		dst = append(dst, s.Endpoint)
	}
	exact := ns.exact[ev.Type]
	for name := range exact {
		consider(ns.subs[name])
	}
	for name := range ns.glob {
		if _, seen := exact[name]; seen {
			continue // considered above
		}
		if s := ns.subs[name]; matchesType(s.Patterns, ev.Type) {
			consider(s)
		}
	}
	slices.Sort(dst[start:])
	return dst
}

// matchesType matches an event type against a subscription's patterns. Herald's own
// operational types (herald.*) are matched only by patterns that name that prefix
// ("herald.*", "herald.endpoint.disabled"): a subscription to "*" or "*.disabled" was
// written for the producers' events and does not get Herald's.
func matchesType(patterns []string, eventType string) bool {
	operational := strings.HasPrefix(eventType, heraldv1.OperationalEventTypePrefix)
	for _, p := range patterns {
		if operational && !strings.HasPrefix(p, heraldv1.OperationalEventTypePrefix) {
			continue
		}
		if routing.MatchType(p, eventType) {
			return true
		}
	}
	return false
}

func filterInput(ev *Event) map[string]any {
	var data any
	// Ingest guarantees data is valid JSON; a failure leaves data null, which a filter
	// on data fields then does not match.
	_ = json.Unmarshal(ev.Data, &data)
	return routing.EventInput(ev.ID, ev.Type, ev.Source, ev.CreatedAt, data)
}
