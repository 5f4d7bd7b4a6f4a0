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

// Filter selects the stored deliveries of an endpoint a replay re-sends (see Select);
// the zero value selects all.
type Filter struct {
	// EventIDs, when not empty, selects these events only.
	EventIDs []string
	// EventType, when set, selects this type only (exact).
	EventType string
	// Sequences, when not empty, selects these dead letters only (their sequence in the
	// dead-letter stream, as listed).
	Sequences []uint64
	// Since and Until, when set, select the events accepted in [Since, Until).
	Since, Until time.Time
}

func (f Filter) match(d *Delivery, seq uint64) bool {
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
func (s *jsStore) DeadLetters(ctx context.Context, ep Endpoint, fn func(*DeadLetter) bool) error {
	subject := DeadLetterSubject(ep)
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
			dl, err := parseDeadLetter(md.Sequence.Stream, msg.Subject(), msg.Headers(), msg.Data())
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
