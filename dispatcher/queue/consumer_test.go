package queue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/internal/testenv"
)

// A consumer deleted under its reader (an operator's `nats consumer rm`, a server that
// lost it) ends the reader's fetching, whether a pull request of its was waiting (the
// server says so) or not (nobody answers its next ones): Next returns ErrStopped, and a
// consumer opened again hands out what was pending.
func TestConsumer_DeletedUnderItsReaderEndsAndIsOpenedAgain(t *testing.T) {
	ctx := context.Background()
	url := testenv.NATS(t)
	st := replica(t, url)
	js := rawJetStream(t, url)
	ep := queue.Endpoint{Namespace: "shop", Name: "billing", UID: "7a1c0e52-0000-4000-8000-0000000000c1"}
	cons, err := st.Consume(ctx, ep, queue.ConsumerOptions{AckWait: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			p, err := cons.Next()
			if errors.Is(err, queue.ErrStopped) {
				ended <- nil
				return
			}
			if err == nil {
				ended <- errors.New("handed out " + p.EventID + " with nothing stored")
				return
			}
			t.Logf("Next: %v", err)
		}
	}()
	time.Sleep(200 * time.Millisecond) // a pull request of the reader's is waiting
	if err := js.DeleteConsumer(ctx, queue.DeliveriesStream, "ep_"+ep.UID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the consumer was deleted 20 s ago and its reader still waits")
	}

	storeFor(t, st, ep, "evt_after_delete")
	again, err := st.Consume(ctx, ep, queue.ConsumerOptions{AckWait: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Stop()
	got := make(chan *queue.Pending, 1)
	go func() {
		if p, err := again.Next(); err == nil {
			got <- p
		}
	}()
	select {
	case p := <-got:
		if p.EventID != "evt_after_delete" {
			t.Fatalf("handed out %s, want evt_after_delete", p.EventID)
		}
		if err := p.Delivered(); err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the consumer opened again handed out nothing within 20 s")
	}
}
