package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Sources of a replay.
const (
	FromDeadLetters = "dead-letters"
	FromDelivered   = "delivered"
)

// ReplayItem is one stored delivery a replay re-sends: a dead letter or a retained
// delivered delivery of Endpoint, named by its stream and sequence.
type ReplayItem struct {
	Endpoint Endpoint
	From     string
	Sequence uint64
	// Index is the delivery's place in the batch at Sequence (retained deliveries).
	Index      int
	DeliveryID string
}

// Select lists what a replay of an endpoint re-sends, from the dead letters and/or the
// retained delivered deliveries, oldest first. A delivery stored in both (delivered,
// then resent and dead-lettered) or retained twice is selected once, from its newest
// copy, so that a replay sends each event once.
func (s *jsStore) Select(ctx context.Context, ep Endpoint, f Filter, deadLetters, delivered bool) ([]ReplayItem, error) {
	if delivered && len(f.Sequences) > 0 {
		return nil, errors.New("sequences name dead letters: select them from the dead letters alone")
	}
	var items []ReplayItem
	at := map[string]int{}
	add := func(it ReplayItem) {
		if i, ok := at[it.DeliveryID]; ok {
			items[i].DeliveryID = "" // superseded by the newer copy
		}
		at[it.DeliveryID] = len(items)
		items = append(items, it)
	}
	if delivered {
		// A delivery is stored after it was accepted, so reading can start at Since; less
		// a margin for the clocks of the dispatchers and the NATS servers to differ.
		from := f.Since
		if !from.IsZero() {
			from = from.Add(-clockSkewMargin)
		}
		if err := s.Delivered(ctx, HistoryQuery{Endpoint: ep, Since: from}, func(r *Retained) bool {
			if f.match(&r.Delivery, r.Sequence) {
				add(ReplayItem{Endpoint: ep, From: FromDelivered, Sequence: r.Sequence, Index: r.Index, DeliveryID: r.DeliveryID})
			}
			return true
		}); err != nil {
			return nil, err
		}
	}
	if deadLetters {
		if err := s.DeadLetters(ctx, ep, func(dl *DeadLetter) bool {
			if f.match(&dl.Delivery, dl.Sequence) {
				add(ReplayItem{Endpoint: ep, From: FromDeadLetters, Sequence: dl.Sequence, DeliveryID: dl.DeliveryID})
			}
			return true
		}); err != nil {
			return nil, err
		}
	}
	out := items[:0]
	for _, it := range items {
		if it.DeliveryID != "" {
			out = append(out, it)
		}
	}
	return out, nil
}

// clockSkewMargin is how far the clocks of a dispatcher and a NATS server may differ.
const clockSkewMargin = 5 * time.Minute

// ErrGone is returned by Resend for a selected delivery the store no longer holds (its
// retention ended, another replay took the dead letter, or its endpoint was deleted).
var ErrGone = errors.New("no longer stored")

// Resend stores one selected delivery again as a new delivery of its endpoint (same
// event id and delivery id, schedule from the start); a dead letter is then removed.
// replayID makes the message new for the stream's de-duplication, so that two replays
// of the same event both send it, and a replay retried after a crash sends it once.
func (s *jsStore) Resend(ctx context.Context, it ReplayItem, replayID string) error {
	stream := s.delivered
	if it.From == FromDeadLetters {
		stream = s.deadLetters
	}
	raw, err := stream.GetMsg(ctx, it.Sequence)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return ErrGone
	}
	if err != nil {
		return fmt.Errorf("reading %s %d: %w", it.From, it.Sequence, s.storeError(err))
	}
	var d Delivery
	if it.From == FromDeadLetters {
		d, err = parseDelivery(raw.Subject, raw.Header, raw.Data)
	} else {
		d, err = retainedAt(raw, it.Index)
	}
	if errors.Is(err, ErrGone) {
		return err
	}
	if err != nil {
		return fmt.Errorf("reading %s %d: %w", it.From, it.Sequence, err)
	}
	if d.Ref() != it.Endpoint {
		// Not the selected endpoint's: only a purge between the selection and now
		// could have let another message take the place, and none does (sequences
		// are never reused); refuse rather than send it elsewhere.
		return ErrGone
	}
	d.Attempt, d.NotBefore = 1, time.Time{}
	d.Replay++
	m := d.toMsg(DeliverySubject(d.Ref()))
	m.Header[nats.MsgIdHdr] = []string{"replay/" + replayID + "/" + d.DeliveryID}
	// Publish first, delete second: a crash in between re-sends the event twice at worst
	// (receivers deduplicate on the event id), never loses it.
	if _, err := s.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("re-sending event %s: %w", d.EventID, s.storeError(err))
	}
	s.notifyStored(d.Ref())
	if it.From == FromDeadLetters {
		if err := s.deadLetters.DeleteMsg(ctx, it.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("removing replayed dead letter %d: %w", it.Sequence, err)
		}
	}
	return nil
}
