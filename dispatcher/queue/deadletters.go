package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetterFilter selects dead letters (and retained deliveries, see Select); the zero
// value selects all.
type DeadLetterFilter struct {
	// EventIDs, when not empty, selects these events only.
	EventIDs []string
	// EventType, when set, selects this type only (exact).
	EventType string
	// Sequences, when not empty, selects these stored messages only.
	Sequences []uint64
	// Since and Until, when set, select the events accepted in [Since, Until).
	Since, Until time.Time
}

func (f DeadLetterFilter) match(d *Delivery, seq uint64) bool {
	if f.EventType != "" && d.EventType != f.EventType {
		return false
	}
	if len(f.EventIDs) > 0 && !slices.Contains(f.EventIDs, d.EventID) {
		return false
	}
	if !f.Since.IsZero() || !f.Until.IsZero() {
		at := d.AcceptedAt
		if at.IsZero() {
			at = d.CreatedAt
		}
		if (!f.Since.IsZero() && at.Before(f.Since)) || (!f.Until.IsZero() && !at.Before(f.Until)) {
			return false
		}
	}
	return len(f.Sequences) == 0 || slices.Contains(f.Sequences, seq)
}

// DeadLetters calls fn for each dead letter of an endpoint, oldest first, until fn
// returns false. It reads through an ephemeral ordered consumer, so listing neither
// changes nor locks anything.
func (s *Store) DeadLetters(ctx context.Context, namespace, endpoint string, fn func(*DeadLetter) bool) error {
	subject := DeadLetterSubject(namespace, endpoint)
	info, err := s.deadLetters.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return fmt.Errorf("reading dead-letter stream: %w", s.storeError(err))
	}
	if info.State.Subjects[subject] == 0 {
		return nil
	}
	cons, err := s.js.OrderedConsumer(ctx, DeadLettersStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("reading dead letters: %w", err)
	}
	remaining := info.State.Subjects[subject]
	for remaining > 0 {
		batch, err := cons.Fetch(int(min(remaining, 256)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("reading dead letters: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			dl, err := parseDeadLetter(md.Sequence.Stream, msg.Headers(), msg.Data())
			if err != nil {
				continue
			}
			if !fn(&dl) {
				return nil
			}
			if md.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("reading dead letters: %w", err)
		}
		if n == 0 {
			return nil
		}
		remaining -= uint64(n)
	}
	return nil
}

// ReplayDeadLetters stores the selected dead letters of an endpoint as new deliveries
// (same event id and delivery id, schedule from the start) and removes them from the
// dead letters. It returns how many were replayed.
func (s *Store) ReplayDeadLetters(ctx context.Context, namespace, endpoint string, f DeadLetterFilter) (int, error) {
	var picked []DeadLetter
	if err := s.DeadLetters(ctx, namespace, endpoint, func(dl *DeadLetter) bool {
		if f.match(&dl.Delivery, dl.Sequence) {
			picked = append(picked, *dl)
		}
		return true
	}); err != nil {
		return 0, err
	}
	replayed := 0
	for i := range picked {
		d := picked[i].Delivery
		d.Attempt = 1
		d.NotBefore = time.Time{}
		d.Replay++
		// Publish first, delete second: a crash in between replays the letter twice at
		// worst (receivers deduplicate on the event id), never loses it.
		if _, err := s.js.PublishMsg(ctx, d.toMsg(DeliverySubject(namespace, endpoint))); err != nil {
			return replayed, fmt.Errorf("replaying event %s: %w", d.EventID, s.storeError(err))
		}
		s.notifyStored(namespace, endpoint)
		if err := s.deadLetters.DeleteMsg(ctx, picked[i].Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return replayed, fmt.Errorf("removing replayed dead letter %d: %w", picked[i].Sequence, err)
		}
		replayed++
	}
	return replayed, nil
}
