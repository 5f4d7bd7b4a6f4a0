package delivery_test

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/ingest"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/queue/queuetest"
	"github.com/herald-dev/herald/dispatcher/replay"
	"github.com/herald-dev/herald/internal/testenv"
)

// TestUpgrade_FromLayout1 starts this release's engine on a store the release before
// layout 2 wrote (queuetest.Layout1: deliveries as fourteen headers, history one message
// per record, accepted ids in HERALD_INGEST), in embedded and in external mode. It
// delivers every pending delivery to a real receiver (the retries not before their
// time), keeps the dead letters (listed, then replayed), keeps the retained deliveries
// and the attempt log readable, and still deduplicates the ids accepted before.
func TestUpgrade_FromLayout1(t *testing.T) {
	for _, mode := range []string{"embedded", "external"} {
		t.Run(mode, func(t *testing.T) { testUpgradeFromLayout1(t, mode) })
	}
}

func testUpgradeFromLayout1(t *testing.T, mode string) {
	ctx := context.Background()
	retryAt := time.Now().Add(1500 * time.Millisecond)
	old := queuetest.Layout1{Namespace: ns, Name: "billing", UID: key("billing").UID,
		Pending: []string{"evt_p0", "evt_p1", "evt_p2", "evt_p3", "evt_p4"}, Retrying: []string{"evt_r0", "evt_r1"}, RetryAt: retryAt,
		DeadLetters: []string{"evt_d0", "evt_d1"}, Delivered: []string{"evt_k0", "evt_k1", "evt_k2"},
		Accepted: []string{"evt_p0", "evt_k0"}}
	// The streams as this release makes them (their names and subjects are the release
	// before's), then what that release wrote into them.
	var o queue.Options
	o.AttemptLog = true // the dispatcher's default
	if mode == "embedded" {
		o.DataDir = t.TempDir()
	} else {
		o.URL = testenv.NATS(t)
	}
	made, err := queue.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	made.Close()
	if mode == "embedded" {
		err = queuetest.WriteLayout1In(ctx, o.DataDir, old)
	} else {
		err = queuetest.WriteLayout1(ctx, rawJetStream(t, o.URL), old)
	}
	if err != nil {
		t.Fatal(err)
	}

	// The history written as the dispatcher writes it (app's pipeline).
	h := newHarnessOn(t, o, func(do *delivery.Options) {
		do.Observer = delivery.Observers{&replay.Recorder{History: do.Store.(queue.Store).History()}, do.Observer}
	})
	rc := newReceiver(t, nil)
	h.endpoint("billing", rc.URL, endpointOpts{schedule: []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}})
	pending := append(slices.Clone(old.Pending), old.Retrying...)
	rc.waitFor(t, len(pending), 20*time.Second)
	h.settled("billing", 0)
	got := map[string]received{}
	for _, r := range rc.got() {
		id := r.header.Get("webhook-id")
		if _, twice := got[id]; twice {
			t.Errorf("%s delivered twice", id)
		}
		got[id] = r
	}
	for _, id := range pending {
		r, ok := got[id]
		switch {
		case !ok:
			t.Errorf("pending %s was not delivered", id)
		case !bytes.Contains(r.body, []byte(`{"layout":1,"id":"`+id+`"}`)):
			t.Errorf("%s delivered as %s, not with the data the release before stored", id, r.body)
		case slices.Contains(old.Retrying, id) && r.at.Before(retryAt):
			t.Errorf("retry %s went out at %s, before its time %s", id, r.at.Format(time.StampMilli), retryAt.Format(time.StampMilli))
		}
	}
	if len(got) != len(pending) {
		t.Errorf("the receiver got %d events, want the %d pending", len(got), len(pending))
	}

	// The dead letters, listed and then replayed.
	var dead []string
	for _, dl := range h.deadLetters("billing") {
		dead = append(dead, dl.EventID)
		if dl.Reason != "RetriesExhausted" || dl.StatusCode != 503 || dl.Attempt != 3 {
			t.Errorf("dead letter %s: reason %q, status %d, attempt %d", dl.EventID, dl.Reason, dl.StatusCode, dl.Attempt)
		}
	}
	if !slices.Equal(dead, old.DeadLetters) {
		t.Errorf("dead letters %v, want %v", dead, old.DeadLetters)
	}
	items, err := h.store.Select(ctx, key("billing"), queue.Filter{}, true, false)
	if err != nil || len(items) != len(old.DeadLetters) {
		t.Fatalf("replay selection of the dead letters: %d items (%v)", len(items), err)
	}
	for _, it := range items {
		if err := h.store.Resend(ctx, it, "upgrade"); err != nil {
			t.Fatal(err)
		}
	}
	rc.waitFor(t, len(pending)+len(old.DeadLetters), 20*time.Second)
	h.settled("billing", 0)

	// The retained deliveries: the release before's and this one's, all readable.
	var retained []string
	if err := h.store.Delivered(ctx, queue.HistoryQuery{Endpoint: key("billing")}, func(r *queue.Retained) bool {
		retained = append(retained, r.EventID)
		if r.DeliveredAt.IsZero() {
			t.Errorf("retained %s has no delivery time", r.EventID)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range slices.Concat(old.Delivered, pending, old.DeadLetters) {
		if !slices.Contains(retained, id) {
			t.Errorf("%s is not retained (retained: %v)", id, retained)
		}
	}
	// The attempt log: the release before's record of evt_k0, and this one's of evt_p0.
	for _, id := range []string{"evt_k0", "evt_p0"} {
		var recs []queue.AttemptRecord
		if err := h.store.Attempts(ctx, queue.HistoryQuery{Endpoint: key("billing"), EventID: id}, func(r *queue.AttemptRecord) bool {
			recs = append(recs, *r)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || !recs[0].Final || recs[0].Error != "" || recs[0].EndpointUID != key("billing").UID {
			t.Errorf("attempt records of %s: %+v, want one final success of the endpoint", id, recs)
		}
	}

	// An id accepted before the upgrade is a duplicate after it.
	res := h.publish(ingest.Event{ID: "evt_k0", Type: "x"}, ingest.Event{ID: "evt_new", Type: "x"})
	if !res[0].Duplicate || res[0].Matched != 1 || res[1].Duplicate {
		t.Errorf("accepting an id of the release before and a new one: %+v", res)
	}
	rc.waitFor(t, len(pending)+len(old.DeadLetters)+1, 20*time.Second)
	h.settled("billing", 0)
	if n := len(rc.got()); n != len(pending)+len(old.DeadLetters)+1 {
		t.Errorf("the receiver got %d requests, want %d", n, len(pending)+len(old.DeadLetters)+1)
	}
}

// rawJetStream is a plain NATS client of url, writing as no code of this release does.
func rawJetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
