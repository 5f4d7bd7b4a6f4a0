// Package accept is the second step of an event's route, after ingest: it deduplicates
// events by id, routes each to the endpoints whose subscriptions match, and stores one
// delivery per endpoint in the queue, answering only once the store has them all. The
// engine (package delivery) takes them from the queue from there.
package accept

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"

	"github.com/herald-dev/herald/dispatcher/ingest"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/router"
)

// Store is what accepting needs of the queue: the event ids accepted before, and the
// deliveries.
type Store interface {
	Writable() error
	Seen(namespace string, ids []string) (matched []int, found []bool)
	Publish(ctx context.Context, deliveries []queue.Delivery) (duplicate []bool, err error)
	Remember(ctx context.Context, namespace string, ids []string, matched []int) error
}

var _ Store = queue.Store(nil)

// Acceptor deduplicates, routes and stores events; it is ingest's Acceptor.
type Acceptor struct {
	Store  Store
	Router *router.Table
	// Lookup returns the endpoint of a name that exists now (held or not), with its
	// UID: events are routed only to endpoints that exist, and stored for that object.
	Lookup func(namespace, name string) (queue.Endpoint, bool)
	// Now is the clock (default time.Now).
	Now func() time.Time
	Log logr.Logger
	// FilterFailed, when set, hears of every subscription filter that failed to evaluate
	// on an event (the event is not routed through that subscription).
	FilterFailed func(namespace, subscription, eventID string, err error)
}

var _ ingest.Acceptor = (*Acceptor)(nil)

// Accept routes each event and stores one delivery per matched endpoint, returning
// after the store has acknowledged all of them. An event id seen within the dedupe
// window returns the first result and stores nothing.
func (a *Acceptor) Accept(ctx context.Context, namespace string, events []ingest.Event) ([]ingest.Result, error) {
	return a.AcceptExcept(ctx, namespace, "", events)
}

// AcceptExcept is Accept for events that must not reach one endpoint, except (none when
// ""): Herald's operational events about that endpoint.
func (a *Acceptor) AcceptExcept(ctx context.Context, namespace, except string, events []ingest.Event) ([]ingest.Result, error) {
	st := a.Store
	if err := st.Writable(); err != nil {
		return nil, fmt.Errorf("%w: %v", ingest.ErrUnavailable, err)
	}
	now := time.Now()
	if a.Now != nil {
		now = a.Now()
	}
	results := make([]ingest.Result, len(events))
	ids := make([]string, len(events))
	fresh := make([]bool, len(events))
	seen := make(map[string]int, len(events))
	var deliveries []queue.Delivery
	var endpoints []string
	// One closure per call, reading the event being routed: none per event.
	var routing string
	var failed func(string, error)
	if a.FilterFailed != nil {
		failed = func(sub string, err error) { a.FilterFailed(namespace, sub, routing, err) }
	}
	for i := range events {
		// The same id twice in one batch is the same event.
		if _, dup := seen[events[i].ID]; dup {
			continue
		}
		seen[events[i].ID] = i
		ids[i] = events[i].ID
	}
	prev, found := st.Seen(namespace, ids)
	for i := range events {
		ev := &events[i]
		results[i].ID = ev.ID
		if j := seen[ev.ID]; j != i {
			results[i] = ingest.Result{ID: ev.ID, Matched: results[j].Matched, Duplicate: true}
			continue
		}
		if found[i] && ids[i] != "" {
			results[i] = ingest.Result{ID: ev.ID, Matched: prev[i], Duplicate: true}
			continue
		}
		fresh[i] = true
		routing = ev.ID
		endpoints = a.Router.Route(endpoints[:0], namespace, &router.Event{
			ID: ev.ID, Type: ev.Type, Source: ev.Source, CreatedAt: ev.CreatedAt, Data: ev.Data,
		}, failed)
		for _, name := range endpoints {
			if name == except {
				continue
			}
			ep, ok := a.Lookup(namespace, name)
			if !ok {
				continue
			}
			results[i].Matched++
			deliveries = append(deliveries, queue.Delivery{
				Namespace:     namespace,
				Endpoint:      name,
				EndpointUID:   ep.UID,
				EventID:       ev.ID,
				EventType:     ev.Type,
				EventSource:   ev.Source,
				CreatedAt:     ev.CreatedAt,
				CreatedAtText: ev.CreatedAtText,
				TraceParent:   ev.TraceParent,
				TraceState:    ev.TraceState,
				Attributes:    ev.Attributes,
				Data:          ev.Data,
				DeliveryID:    queue.DeliveryID(namespace, ev.ID, name),
				Attempt:       1,
				AcceptedAt:    now,
			})
		}
	}
	duplicate, err := st.Publish(ctx, deliveries)
	if err != nil {
		return nil, storeError(err)
	}
	// An event whose every delivery was already stored was accepted before, through
	// another replica at the same moment or by a request whose answer was lost.
	for i, k := 0, 0; i < len(events); i++ {
		if !fresh[i] || results[i].Matched == 0 {
			continue
		}
		all := true
		for _, d := range duplicate[k : k+results[i].Matched] {
			all = all && d
		}
		results[i].Duplicate = all
		k += results[i].Matched
	}
	// Written after the deliveries are stored: a crash in between makes the producer's
	// retry store them again, which the stream's duplicate window absorbs.
	var recIDs []string
	var recMatched []int
	for i := range events {
		if fresh[i] {
			recIDs, recMatched = append(recIDs, ids[i]), append(recMatched, results[i].Matched)
		}
	}
	if err := st.Remember(ctx, namespace, recIDs, recMatched); err != nil {
		// The deliveries are stored; only the dedupe records are missing, so a retry by
		// the producer would be absorbed by the store's duplicate window. Report
		// success rather than invite a retry that changes nothing.
		a.Log.Error(err, "recording accepted events", "events", len(recIDs))
	}
	return results, nil
}

func storeError(err error) error {
	switch {
	case errors.Is(err, queue.ErrQueueFull):
		return fmt.Errorf("%w: %v", ingest.ErrQueueFull, err)
	case errors.Is(err, queue.ErrUnavailable):
		return fmt.Errorf("%w: %v", ingest.ErrUnavailable, err)
	}
	return err
}
