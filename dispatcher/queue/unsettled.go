package queue

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
)

// The delivery stream is a work queue: a delivery is removed when it is settled, so the
// messages on an endpoint's subject are exactly its unsettled deliveries (waiting, in
// retry wait, held or in flight; for a moment two while a retry replaces an attempt).
// That count needs no consumer, which lets an idle endpoint have none (see
// delivery.Engine): it is what wakes an endpoint and what its status reports.

// PendingDeliveries is how many deliveries of an endpoint are stored and not settled.
func (s *jsStore) PendingDeliveries(ctx context.Context, ep Endpoint) (int64, error) {
	subject := DeliverySubject(ep)
	info, err := s.deliveries.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, fmt.Errorf("counting deliveries of %s: %w", ep, s.storeError(err))
	}
	return int64(info.State.Subjects[subject]), nil
}

// UnsettledBySubject returns the number of unsettled deliveries on every endpoint
// subject that has any (DeliverySubject names the endpoint's), in one request per
// 100,000 subjects however many endpoints exist.
func (s *jsStore) UnsettledBySubject(ctx context.Context) (map[string]uint64, error) {
	info, err := s.deliveries.Info(ctx, jetstream.WithSubjectFilter(deliverySubjectPrefix+"*.*.*"))
	if err != nil {
		return nil, fmt.Errorf("counting deliveries per endpoint: %w", s.storeError(err))
	}
	if info.State.Subjects == nil {
		return map[string]uint64{}, nil
	}
	return info.State.Subjects, nil
}

// PendingOf is PendingDeliveries of n endpoints at once, endpoint(i) naming the i-th,
// in one request.
func (s *jsStore) PendingOf(ctx context.Context, n int, endpoint func(i int) Endpoint) ([]int64, error) {
	counts, err := s.UnsettledBySubject(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(counts[DeliverySubject(endpoint(i))])
	}
	return out, nil
}

// ConsumerCount is how many endpoint consumers the delivery stream has: those of
// endpoints busy on some replica, of idle endpoints until the server removes them, and
// of ordered endpoints.
func (s *jsStore) ConsumerCount(ctx context.Context) (int, error) {
	info, err := s.deliveries.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading delivery stream: %w", s.storeError(err))
	}
	return info.State.Consumers, nil
}

// OnStored sets what hears of every endpoint this process has just stored a delivery
// for (ingest, replays): the engine wakes an idle endpoint at once instead of at its
// next look at UnsettledBySubject. Deliveries stored by other replicas are found by
// that look.
func (s *jsStore) OnStored(f func(Endpoint)) { s.stored.Store(&f) }

func (s *jsStore) notifyStored(ep Endpoint) {
	if f := s.stored.Load(); f != nil {
		(*f)(ep)
	}
}

// storedHook holds OnStored's function.
type storedHook = atomic.Pointer[func(Endpoint)]

// ConsumerState is the server's view of an endpoint's consumer, for diagnosing a
// consumer that hands out nothing while deliveries wait.
type ConsumerState struct {
	Pending    uint64 `json:"pending"`     // stored, not yet handed out
	AckPending int    `json:"ack_pending"` // handed out, not settled
	Waiting    int    `json:"waiting"`     // pull requests the server holds
	Delivered  uint64 `json:"delivered"`   // consumer sequence handed out last
}

// ConsumerStateOf reads the state of an endpoint's consumer; ok is false when the
// endpoint has none (idle).
func (s *jsStore) ConsumerStateOf(ctx context.Context, ep Endpoint) (st ConsumerState, ok bool, err error) {
	cons, err := s.deliveries.Consumer(ctx, consumerName(ep))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return ConsumerState{}, false, nil
	}
	if err != nil {
		return ConsumerState{}, false, fmt.Errorf("reading consumer of %s: %w", ep, s.storeError(err))
	}
	info := cons.CachedInfo()
	return ConsumerState{Pending: info.NumPending, AckPending: info.NumAckPending, Waiting: info.NumWaiting,
		Delivered: info.Delivered.Consumer}, true, nil
}

// StreamWrites is, per stream of Herald's (key-value buckets included), how many
// messages were ever stored in it: its last sequence. The difference over a run is
// what the run wrote (heraldbench reports it per delivery).
func (s *jsStore) StreamWrites(ctx context.Context) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, st := range []jetstream.Stream{s.deliveries, s.deadLetters, s.delivered, s.attempts, s.accepted, s.stateStream} {
		if st == nil {
			continue
		}
		info, err := st.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the state of stream %s: %w", st.CachedInfo().Config.Name, s.storeError(err))
		}
		out[info.Config.Name] = info.State.LastSeq
	}
	return out, nil
}
