package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Records shared by the dispatcher replicas, one per endpoint and kind (EndpointKey), in
// the state bucket: the queue's own (the tally, an ordered endpoint's head, leases,
// tombstones) and those of the packages above it, which reach them through these
// methods alone (package outcome keeps an endpoint's failure state here). Every change
// is a compare-and-set, so that two replicas never overwrite each other.

// ErrContention is returned when a compare-and-set lost to other writers too often.
var ErrContention = errors.New("too much contention on a shared record")

// ReadState returns the record under key, and whether there is one.
func (s *jsStore) ReadState(ctx context.Context, key string) ([]byte, bool, error) {
	e, err := s.state.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", key, s.storeError(err))
	}
	return e.Value(), true, nil
}

// UpdateState changes the record under key by compare-and-set: mutate gets the current
// value (nil when there is none) and returns the new one, or write false when nothing
// needs writing; it is called again when another writer came first. It returns the
// value as it is now and whether this call wrote it.
func (s *jsStore) UpdateState(ctx context.Context, key string, mutate func(cur []byte) (next []byte, write bool, err error)) ([]byte, bool, error) {
	for range 50 {
		var cur []byte
		var rev uint64
		e, err := s.state.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return nil, false, fmt.Errorf("reading %s: %w", key, s.storeError(err))
		default:
			cur, rev = e.Value(), e.Revision()
		}
		next, write, err := mutate(cur)
		if err != nil || !write {
			return cur, false, err
		}
		if rev == 0 {
			_, err = s.state.Create(ctx, key, next)
		} else {
			_, err = s.state.Update(ctx, key, next, rev)
		}
		if err == nil {
			return next, true, nil
		}
		if !isWrongLastSequence(err) {
			return nil, false, fmt.Errorf("writing %s: %w", key, s.storeError(err))
		}
	}
	return nil, false, fmt.Errorf("writing %s: %w", key, ErrContention)
}

// WatchState calls fn with every change of the per-endpoint records of the given kinds
// (value nil: removed) until ctx ends.
func (s *jsStore) WatchState(ctx context.Context, kinds []string, fn func(kind string, ep Endpoint, value []byte)) error {
	filters := make([]string, len(kinds))
	for i, k := range kinds {
		filters[i] = k + ".>"
	}
	w, err := s.state.WatchFiltered(ctx, filters, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("watching the shared state: %w", s.storeError(err))
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e == nil {
				continue
			}
			kind, ep, ok := ParseEndpointKey(e.Key())
			if !ok {
				continue
			}
			var v []byte
			if e.Operation() == jetstream.KeyValuePut {
				v = e.Value()
			}
			fn(kind, ep, v)
		}
	}
}

// TallyOf reads an endpoint's tally: its counters, last attempt and last success.
func (s *jsStore) TallyOf(ctx context.Context, ep Endpoint) (Tally, error) {
	var t Tally
	raw, ok, err := s.ReadState(ctx, EndpointKey(TallyKind, ep))
	if err != nil || !ok {
		return t, err
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return t, fmt.Errorf("decoding the tally of %s: %w", ep, err)
	}
	return t, nil
}

// listKeysTimeout bounds one listing of the state bucket's keys (a variable for the
// test of a listing that never ends); listKeysTries is how many are made.
var listKeysTimeout = 10 * time.Second

const listKeysTries = 3

// listKeys lists the keys of the state bucket that match filter. nats.go's lister ends
// once it has received as many keys as were pending when it began, or one with nothing
// pending after it; keys purged from the stream meanwhile (another replica migrating or
// reclaiming at the same moment) never come, and it waits for ever (seen: a migration
// test hung in CI for 8 minutes). So each listing has a time limit, and one that did not
// finish is made again.
func (s *jsStore) listKeys(ctx context.Context, filter string) ([]string, error) {
	for try := 1; ; try++ {
		lctx, cancel := context.WithTimeout(ctx, listKeysTimeout)
		lister, err := s.state.ListKeysFiltered(lctx, filter)
		if err != nil {
			cancel()
			return nil, s.storeError(err)
		}
		var keys []string
		for k := range lister.Keys() {
			keys = append(keys, k)
		}
		finished := lctx.Err() == nil
		cancel()
		switch {
		case finished:
			return keys, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case try == listKeysTries:
			return nil, fmt.Errorf("%w: listing the keys %s did not finish within %s, %d times", ErrUnavailable, filter, listKeysTimeout, try)
		}
	}
}
