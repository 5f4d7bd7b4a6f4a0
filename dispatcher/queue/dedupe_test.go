package queue_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/queue/queuetest"
	"github.com/herald-dev/herald/internal/testenv"
)

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(prefix, i)
	}
	return out
}

// The dedupe index is bounded: beyond MaxDedupeRecords the oldest ids are forgotten and
// new ones are still remembered (deduplication keeps working, over a shorter window).
func TestDedupe_BoundedOldestForgottenFirst(t *testing.T) {
	ctx := context.Background()
	st, err := queue.Open(ctx, queue.Options{Store: config.Store{DataDir: t.TempDir(), MaxDedupeRecords: 3}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	events := ids("evt_", 5)
	for _, id := range events { // one request each: the oldest go first, request by request
		if err := st.Remember(ctx, "ns", []string{id}, []int{1}); err != nil {
			t.Fatal(err)
		}
	}
	_, found := st.Seen("ns", events)
	if want := []bool{false, false, true, true, true}; !slices.Equal(found, want) {
		t.Errorf("remembered = %v, want %v", found, want)
	}
}

// An accepted event id is remembered with its result by every dispatcher sharing the
// store, within moments, and across a restart (the index is read back from the stream
// before Open returns); in its namespace only.
func TestDedupe_RememberedAcrossReplicasAndRestarts(t *testing.T) {
	ctx := context.Background()
	url := testenv.NATS(t)
	open := func() queue.Store {
		st, err := queue.Open(ctx, queue.Options{Store: config.Store{URL: url}, Log: testr.New(t)})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	a, b := open(), open()
	defer b.Close()
	if err := a.Remember(ctx, "shop", []string{"evt_1", "evt_2"}, []int{3, 0}); err != nil {
		t.Fatal(err)
	}
	if m, found := a.Seen("shop", []string{"evt_1", "evt_2", "evt_3"}); !slices.Equal(found, []bool{true, true, false}) || m[0] != 3 || m[1] != 0 {
		t.Errorf("the replica that accepted them: found %v, matched %v", found, m)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, found := b.Seen("shop", []string{"evt_1", "evt_2"})
		if slices.Equal(found, []bool{true, true}) && m[0] == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("another replica: found %v, matched %v after 10s", found, m)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, found := b.Seen("other", []string{"evt_1"}); found[0] {
		t.Error("an id accepted in one namespace is remembered in another")
	}
	a.Close()
	again := open()
	defer again.Close()
	if m, found := again.Seen("shop", []string{"evt_1", "evt_2", "evt_3"}); !slices.Equal(found, []bool{true, true, false}) || m[0] != 3 {
		t.Errorf("after a restart: found %v, matched %v", found, m)
	}
}

// The event ids the release before layout 2 remembered, one key-value record each in
// HERALD_INGEST, are remembered after the upgrade; and so are those an older replica
// still writes there during a rolling upgrade.
func TestDedupe_ReadsTheIngestBucketOfTheReleaseBefore(t *testing.T) {
	ctx := context.Background()
	url := testenv.NATS(t)
	st, err := queue.Open(ctx, queue.Options{Store: config.Store{URL: url}, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := queuetest.WriteLayout1(ctx, js, queuetest.Layout1{Namespace: "shop", Name: "billing", UID: "0b0b0b0b-0000-4000-8000-000000000001",
		Accepted: []string{"evt_old1", "evt_old2"}}); err != nil {
		t.Fatal(err)
	}
	st, err = queue.Open(ctx, queue.Options{Store: config.Store{URL: url}, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if m, found := st.Seen("shop", []string{"evt_old1", "evt_old2", "evt_new"}); !slices.Equal(found, []bool{true, true, false}) || m[0] != 1 {
		t.Errorf("ids the release before remembered: found %v, matched %v", found, m)
	}
	if err := queuetest.WriteLayout1(ctx, js, queuetest.Layout1{Namespace: "shop", Name: "billing", UID: "0b0b0b0b-0000-4000-8000-000000000001",
		Accepted: []string{"evt_rolling"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, found := st.Seen("shop", []string{"evt_rolling"}); !found[0]; _, found = st.Seen("shop", []string{"evt_rolling"}) {
		if time.Now().After(deadline) {
			t.Fatal("an id an older replica remembered during a rolling upgrade is not remembered here after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The accepted ids of concurrent requests of a namespace share writes (group commit):
// 400 requests of one event each, made at once, are written in far fewer than 400
// messages; each request returns only once its own id is remembered (by this store
// and, read back from the stream, by a second one); a request alone is written at once;
// and each namespace's ids go in messages of its own subject.
func TestDedupe_ConcurrentRequestsShareWrites(t *testing.T) {
	ctx := context.Background()
	url := testenv.NATS(t)
	st := replica(t, url)
	writes := func() uint64 {
		w, err := st.StreamWrites(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return w[queue.AcceptedStream]
	}

	before := writes()
	if err := st.Remember(ctx, "alone", []string{"evt_alone"}, []int{1}); err != nil {
		t.Fatal(err)
	}
	if got := writes() - before; got != 1 {
		t.Fatalf("a request alone took %d writes, want 1", got)
	}

	const requests = 400
	before = writes()
	errs := make(chan error, requests)
	start := make(chan struct{})
	for i := range requests {
		go func() {
			<-start
			ns := []string{"ns-a", "ns-b"}[i%2]
			id := fmt.Sprint("evt_", i)
			if err := st.Remember(ctx, ns, []string{id}, []int{i % 7}); err != nil {
				errs <- err
				return
			}
			// Returned: remembered, with its result.
			if m, found := st.Seen(ns, []string{id}); !found[0] || m[0] != i%7 {
				errs <- fmt.Errorf("%s/%s returned from Remember but Seen says found=%v matched=%d", ns, id, found[0], m[0])
				return
			}
			errs <- nil
		}()
	}
	close(start)
	for range requests {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	got := writes() - before
	t.Logf("%d requests at once in 2 namespaces: %d writes of accepted ids", requests, got)
	if got > requests/4 {
		t.Errorf("%d requests took %d writes: not gathered", requests, got)
	}

	// Read back from the stream by another store: every id, in its namespace only.
	other := replica(t, url)
	for i := range requests {
		ns, wrong := "ns-a", "ns-b"
		if i%2 == 1 {
			ns, wrong = wrong, ns
		}
		id := fmt.Sprint("evt_", i)
		if m, found := other.Seen(ns, []string{id}); !found[0] || m[0] != i%7 {
			t.Errorf("another store: %s/%s found=%v matched=%d, want found with %d", ns, id, found[0], m[0], i%7)
		}
		if _, found := other.Seen(wrong, []string{id}); found[0] {
			t.Errorf("another store: %s found in %s too", id, wrong)
		}
	}
}
