package queue

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-dev/herald/dispatcher/config"
)

// stallingKV is the state bucket whose key lister, its first stalls times, does what
// nats.go's does when keys it counted at its start are purged before they reach it: it
// hands out what it got and never ends, until its context does.
type stallingKV struct {
	jetstream.KeyValue
	stalls   atomic.Int32
	listings atomic.Int32
}

func (k *stallingKV) ListKeysFiltered(ctx context.Context, filters ...string) (jetstream.KeyLister, error) {
	k.listings.Add(1)
	if k.stalls.Add(-1) >= 0 {
		l := &stalledLister{keys: make(chan string, 1)}
		l.keys <- "tally.half.of.a-listing"
		go func() { <-ctx.Done(); close(l.keys) }()
		return l, nil
	}
	return k.KeyValue.ListKeysFiltered(ctx, filters...)
}

type stalledLister struct{ keys chan string }

func (l *stalledLister) Keys() <-chan string { return l.keys }
func (l *stalledLister) Stop() error         { return nil }

// A listing of the state bucket's keys that does not end is given up after
// listKeysTimeout and made again; what it handed out before is not part of the answer;
// one that never ends, listKeysTries times, is an error naming the filter, not a hang.
func TestListKeys_AListingThatNeverEndsIsMadeAgain(t *testing.T) {
	defer func(d time.Duration) { listKeysTimeout = d }(listKeysTimeout)
	listKeysTimeout = 300 * time.Millisecond
	ctx := context.Background()
	st, err := Open(ctx, Options{Store: config.Store{DataDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := st.(*jsStore)
	want := []string{"tally.shop.billing.uid-1", "tally.shop.orders.uid-2"}
	for _, k := range want {
		if _, err := s.state.Put(ctx, k, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	kv := &stallingKV{KeyValue: s.state}
	s.state = kv

	kv.stalls.Store(listKeysTries - 1)
	got, err := s.listKeys(ctx, "*.*.*.*")
	if err != nil {
		t.Fatalf("%d stalled listings, then one that ends: %v", listKeysTries-1, err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("keys = %v, want %v (nothing of the listings given up)", got, want)
	}
	if n := kv.listings.Load(); n != listKeysTries {
		t.Errorf("%d listings made, want %d", n, listKeysTries)
	}

	kv.stalls.Store(listKeysTries)
	_, err = s.listKeys(ctx, "*.*.*.*")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "*.*.*.*") {
		t.Errorf("listings that never end: err = %v, want ErrUnavailable naming the filter", err)
	}
}
