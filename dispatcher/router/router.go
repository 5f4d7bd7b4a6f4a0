// Package router decides which endpoints an event goes to. It holds the namespace's
// WebhookSubscriptions, kept current by the dispatcher's watch, and matches an event's
// type against their patterns and its content against their CEL filters. Several
// subscriptions reaching the same endpoint give one delivery.
package router

import (
	"encoding/json"
	"slices"
	"sync"
	"time"

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
	byNS map[string]map[string]Subscription
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{byNS: map[string]map[string]Subscription{}} }

// Set adds or replaces a subscription.
func (t *Table) Set(namespace string, s Subscription) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.byNS[namespace]
	if ns == nil {
		ns = map[string]Subscription{}
		t.byNS[namespace] = ns
	}
	ns[s.Name] = s
}

// Delete removes a subscription.
func (t *Table) Delete(namespace, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byNS[namespace], name)
	if len(t.byNS[namespace]) == 0 {
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
	start := len(dst)
	var input map[string]any // built once, only if a filter needs it
	for _, s := range t.byNS[namespace] {
		if slices.Contains(dst[start:], s.Endpoint) || !matchesType(s.Patterns, ev.Type) {
			continue
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
				continue
			}
		}
		dst = append(dst, s.Endpoint)
	}
	slices.Sort(dst[start:])
	return dst
}

func matchesType(patterns []string, eventType string) bool {
	for _, p := range patterns {
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
