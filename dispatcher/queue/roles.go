package queue

import (
	"context"
	"time"
)

// Store is Herald's durable store, composed of the roles below, the way nats.go's
// jetstream.JetStream is composed of Publisher, StreamManager and KeyValueManager. The
// packages above take the one or two roles they need (each defines its own interface of
// the methods it calls: accept.Store, delivery.Store, outcome.SharedState, ...), and no
// role hands out the NATS client or one of its objects: what is stored where, and how,
// is this package's alone.
type Store interface {
	Health
	Ingest
	Deliveries
	Heads
	Histories
	Replays
	SharedState
	Reclaim
	Stats
	// Close settles what is in flight, closes the connection and stops the embedded
	// server.
	Close()
}

var _ Store = (*jsStore)(nil)

// Health says whether the store takes writes (one probe's answer for readiness, ingest's
// fast 503 and the pause of deliveries).
type Health interface {
	Writable() error
	WaitWritable(ctx context.Context) error
}

// Ingest is accepting events: the ids accepted before (dedupe), storing the deliveries,
// remembering what was accepted.
type Ingest interface {
	Seen(namespace string, ids []string) (matched []int, found []bool)
	Publish(ctx context.Context, deliveries []Delivery) (duplicate []bool, err error)
	Remember(ctx context.Context, namespace string, ids []string, matched []int) error
}

// Deliveries is consuming the deliveries of endpoints, and counting what waits.
type Deliveries interface {
	Consume(ctx context.Context, ep Endpoint, opts ConsumerOptions) (*Consumer, error)
	FetchHeld(ctx context.Context, ep Endpoint, n int, opts ConsumerOptions) ([]*Pending, error)
	PendingDeliveries(ctx context.Context, ep Endpoint) (int64, error)
	UnsettledBySubject(ctx context.Context) (map[string]uint64, error)
	OnStored(f func(Endpoint))
}

// Heads is the retry state of ordered endpoints' failing heads.
type Heads interface {
	OrderedHead(ctx context.Context, ep Endpoint) (Head, bool, error)
	BlockingHead(ctx context.Context, ep Endpoint) (Head, bool, error)
	SetOrderedHead(ctx context.Context, ep Endpoint, h Head) error
	ClearOrderedHead(ctx context.Context, ep Endpoint) error
}

// Histories is the history: written through the journal (History), read back.
type Histories interface {
	History() *HistoryWriter
	DeadLetters(ctx context.Context, ep Endpoint, fn func(*DeadLetter) bool) error
	Attempts(ctx context.Context, q HistoryQuery, fn func(*AttemptRecord) bool) error
	Delivered(ctx context.Context, q HistoryQuery, fn func(*Retained) bool) error
}

// Replays is selecting stored deliveries and storing them again.
type Replays interface {
	Select(ctx context.Context, ep Endpoint, f Filter, deadLetters, delivered bool) ([]ReplayItem, error)
	Resend(ctx context.Context, it ReplayItem, replayID string) error
}

// SharedState is the records the replicas share, changed by compare-and-set: per
// endpoint (the tally, the packages' own records) and leases.
type SharedState interface {
	ReadState(ctx context.Context, key string) ([]byte, bool, error)
	UpdateState(ctx context.Context, key string, mutate func(cur []byte) ([]byte, bool, error)) ([]byte, bool, error)
	WatchState(ctx context.Context, kinds []string, fn func(kind string, ep Endpoint, value []byte)) error
	TallyOf(ctx context.Context, ep Endpoint) (Tally, error)
	Lease(ctx context.Context, key, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, key, holder string) error
}

// Reclaim is making an endpoint's data die with it, and the upgrade from the layout
// before UIDs.
type Reclaim interface {
	Reclaim(ctx context.Context, ep Endpoint, by string) (bool, error)
	Purge(ctx context.Context, ep Endpoint) error
	StoredEndpoints(ctx context.Context) (map[Endpoint]bool, error)
	ConsumerEndpoints(ctx context.Context, live func(uid string) bool) ([]Endpoint, error)
	DropOldTombstones(ctx context.Context) error
	MigrateLegacy(ctx context.Context, owner LegacyOwner) (LegacyReport, error)
}

// Stats are figures for metrics and for diagnosing a stalled endpoint.
type Stats interface {
	PendingOf(ctx context.Context, n int, endpoint func(i int) Endpoint) ([]int64, error)
	ConsumerCount(ctx context.Context) (int, error)
	ConsumerStateOf(ctx context.Context, ep Endpoint) (ConsumerState, bool, error)
	StreamWrites(ctx context.Context) (map[string]uint64, error)
}
