package queue_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/queue"
)

// An ordered consumer hands out one delivery at a time; one handed back with a delay
// (a retry in place) comes back before any later one; a stored head names a blocking
// delivery only while that delivery is unsettled.
func TestOrderedConsumer_OneAtATimeHeadStaysAheadStaleHeadBlocksNothing(t *testing.T) {
	ctx := context.Background()
	st, err := queue.Open(ctx, queue.Options{Store: config.Store{DataDir: t.TempDir()}, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const ns, name = "shop", "ledger"
	ep := queue.Endpoint{Namespace: ns, Name: name, UID: "5d0e8a1c-3b2f-4e6d-8a9c-1f2e3d4c5b6a"}
	ds := make([]queue.Delivery, 3)
	for i := range ds {
		id := fmt.Sprintf("evt_%d", i)
		ds[i] = queue.Delivery{Namespace: ns, Endpoint: name, EndpointUID: ep.UID, EventID: id, EventType: "t", CreatedAt: time.Now(),
			DeliveryID: queue.DeliveryID(ns, id, name), Attempt: 1, Data: []byte(`{}`)}
	}
	if _, err := st.Publish(ctx, ds); err != nil {
		t.Fatal(err)
	}
	cons, err := st.Consume(ctx, ep, queue.ConsumerOptions{AckWait: 10 * time.Second, Ordered: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Stop()
	next := make(chan *queue.Pending, 3)
	go func() {
		for {
			p, err := cons.Next()
			if err != nil {
				close(next)
				return
			}
			next <- p
		}
	}()
	take := func(want string) *queue.Pending {
		t.Helper()
		select {
		case p := <-next:
			if p.EventID != want {
				t.Fatalf("handed out %s, want %s", p.EventID, want)
			}
			return p
		case <-time.After(10 * time.Second):
			t.Fatalf("%s not handed out within 10s", want)
		}
		return nil
	}
	// heldBack: the server holds the later deliveries back while the head is unsettled.
	// Its own account says so: it asks for more (a waiting pull request) and has more
	// (pending), yet it has handed out one delivery and waits for its acknowledgement.
	// A consumer that is not one-at-a-time hands out the next as soon as it asks.
	heldBack := func(while string) {
		t.Helper()
		var last queue.ConsumerState
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, ok, err := st.ConsumerStateOf(ctx, ep)
			if err != nil || !ok {
				t.Fatalf("%s: consumer state %v, %v", while, ok, err)
			}
			last = st
			if st.Delivered != 1 || st.AckPending != 1 {
				t.Fatalf("%s: the server handed out %d deliveries, %d unacknowledged; want 1 and 1", while, st.Delivered, st.AckPending)
			}
			if st.Waiting >= 1 && st.Pending == uint64(len(ds)-1) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the server's account never showed a request waiting with %d deliveries held back: %+v", while, len(ds)-1, last)
			}
			time.Sleep(20 * time.Millisecond)
		}
		select {
		case p := <-next:
			t.Fatalf("%s handed out %s", while, p.EventID)
		default:
		}
	}

	head := take("evt_0")
	if head.Redelivered() {
		t.Error("a first delivery says it was handed out before")
	}
	heldBack("with evt_0 unsettled, the consumer")
	if err := head.Delay(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	again := take("evt_0")
	if !again.Redelivered() || again.Sequence() != head.Sequence() {
		t.Errorf("the retried head: redelivered %v, sequence %d, want true and %d", again.Redelivered(), again.Sequence(), head.Sequence())
	}

	if err := st.SetOrderedHead(ctx, ep, queue.Head{Sequence: again.Sequence(), EventID: "evt_0", Attempt: 2}); err != nil {
		t.Fatal(err)
	}
	if h, ok, err := st.BlockingHead(ctx, ep); err != nil || !ok || h.EventID != "evt_0" || h.Attempt != 2 {
		t.Fatalf("BlockingHead = %+v, %v, %v; want evt_0 at attempt 2", h, ok, err)
	}
	// Settled without clearing the record (a dispatcher stopped in between): the record
	// is still there but blocks nothing.
	if err := again.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := st.OrderedHead(ctx, ep); err != nil || !ok {
		t.Fatalf("OrderedHead after the ack = %v, %v; want the record still stored", ok, err)
	}
	if h, ok, err := st.BlockingHead(ctx, ep); err != nil || ok {
		t.Errorf("BlockingHead after its delivery was settled = %+v, %v, %v; want none", h, ok, err)
	}
	take("evt_1")
	if err := st.ClearOrderedHead(ctx, ep); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := st.OrderedHead(ctx, ep); err != nil || ok {
		t.Errorf("OrderedHead after clearing = %v, %v; want none", ok, err)
	}
}
