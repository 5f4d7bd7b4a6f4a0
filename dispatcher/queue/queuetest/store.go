package queuetest

import (
	"context"
	"fmt"

	"github.com/herald-dev/herald/dispatcher/queue"
)

// What tests of other packages need of a store that no package of the dispatcher does:
// the store's concrete type has the methods, outside queue.Store's roles.

// Crash stops st without draining or settling what is in flight, as a killed
// dispatcher would.
func Crash(st queue.Store) {
	st.(interface{ Abort() }).Abort()
}

// StreamBytes is the size of one of Herald's streams.
func StreamBytes(ctx context.Context, st queue.Store, stream string) (uint64, error) {
	s, ok := st.(interface {
		StreamBytes(ctx context.Context, name string) (uint64, error)
	})
	if !ok {
		return 0, fmt.Errorf("%T does not say the size of its streams", st)
	}
	return s.StreamBytes(ctx, stream)
}
