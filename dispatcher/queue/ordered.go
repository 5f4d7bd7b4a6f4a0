package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Head is the retry state of the failing head of an ordered endpoint. An ordered
// endpoint retries its head in place (the message is handed back with a delay, so
// nothing overtakes it) instead of publishing the retry at the back of the subject; the
// attempt number and the retry time, which a message cannot carry once stored, are kept
// here so that they survive a restart and reach whichever replica is handed the head
// next. Sequence ties the record to one stored message: a record whose message is gone
// is stale and never applied.
type Head struct {
	Sequence   uint64 `json:"seq"`
	DeliveryID string `json:"deliveryID"`
	EventID    string `json:"eventID"`
	// Attempt is the 1-based number of the next attempt.
	Attempt   int       `json:"attempt"`
	NotBefore time.Time `json:"notBefore"`
	// Since is when its first attempt failed.
	Since time.Time `json:"since"`
}

// headKey is the state bucket key of an endpoint's head; package outcome's keys are of
// another kind, so the two never meet.
func headKey(ep Endpoint) string { return EndpointKey("head", ep) }

// OrderedHead returns the retry state of an ordered endpoint's head, if one is stored.
func (s *jsStore) OrderedHead(ctx context.Context, ep Endpoint) (Head, bool, error) {
	var h Head
	e, err := s.state.Get(ctx, headKey(ep))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return h, false, nil
	}
	if err != nil {
		return h, false, fmt.Errorf("reading ordered head of %s: %w", ep, s.storeError(err))
	}
	if err := json.Unmarshal(e.Value(), &h); err != nil {
		return h, false, fmt.Errorf("decoding ordered head of %s: %w", ep, err)
	}
	return h, true, nil
}

// BlockingHead returns the stored head of an ordered endpoint, and whether its delivery
// is still unsettled: a record left behind by a dispatcher that stopped between
// settling the delivery and clearing the record names nothing that blocks. Without a
// record, the Head is zero. Everything up to the
// consumer's acknowledgement floor is settled, and an ordered consumer hands out
// nothing beyond its head.
func (s *jsStore) BlockingHead(ctx context.Context, ep Endpoint) (Head, bool, error) {
	h, ok, err := s.OrderedHead(ctx, ep)
	if err != nil || !ok {
		return h, false, err
	}
	cons, err := s.js.Consumer(ctx, DeliveriesStream, consumerName(ep))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return h, false, nil
	}
	if err != nil {
		return h, false, fmt.Errorf("reading consumer of %s: %w", ep, s.storeError(err))
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return h, false, fmt.Errorf("reading consumer of %s: %w", ep, s.storeError(err))
	}
	return h, h.Sequence > info.AckFloor.Stream, nil
}

// SetOrderedHead stores the retry state of an ordered endpoint's head. Only one delivery
// of an ordered endpoint is ever in flight, so a plain write cannot race another.
func (s *jsStore) SetOrderedHead(ctx context.Context, ep Endpoint, h Head) error {
	raw, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("encoding ordered head: %w", err)
	}
	if _, err := s.state.Put(ctx, headKey(ep), raw); err != nil {
		return fmt.Errorf("storing ordered head of %s: %w", ep, s.storeError(err))
	}
	return nil
}

// ClearOrderedHead removes the retry state of an ordered endpoint's head once it is
// delivered or dead-lettered.
func (s *jsStore) ClearOrderedHead(ctx context.Context, ep Endpoint) error {
	if err := s.state.Delete(ctx, headKey(ep)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("clearing ordered head of %s: %w", ep, s.storeError(err))
	}
	return nil
}

// Sequence is the delivery's position in the stream: the order it was stored in.
func (p *Pending) Sequence() uint64 { return p.seq }

// Redelivered reports whether the store handed this delivery out before (an attempt
// that failed, a hold, a restart), as opposed to for the first time.
func (p *Pending) Redelivered() bool { return p.handedOut != 1 }
