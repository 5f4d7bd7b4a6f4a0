package queue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
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

// replica opens a store on url, as one dispatcher replica does.
func replica(t *testing.T, url string) queue.Store {
	t.Helper()
	st, err := queue.Open(context.Background(), queue.Options{Store: config.Store{URL: url}, History: config.History{AttemptLog: true}, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// rawJetStream is a plain NATS client of url, reading and writing as no Herald code does.
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

func storeFor(t *testing.T, st queue.Store, ep queue.Endpoint, ids ...string) {
	t.Helper()
	ds := make([]queue.Delivery, len(ids))
	for i, id := range ids {
		ds[i] = queue.Delivery{Namespace: ep.Namespace, Endpoint: ep.Name, EndpointUID: ep.UID, EventID: id, EventType: "invoice.paid",
			CreatedAt: time.Now(), AcceptedAt: time.Now(), DeliveryID: queue.DeliveryID(ep.Namespace, id, ep.Name) + ep.UID[:4],
			Attempt: 1, Data: []byte(`{}`)}
	}
	if _, err := st.Publish(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
}

// TestReclaim_PurgesEveryRecordOfTheDeletedObjectOnceAndNothingOfItsSuccessor: an
// endpoint with pending deliveries, a dead letter, retained deliveries, attempt records,
// an ordered head, shared state and a replay lease is deleted and created again under
// its name. Two replicas reclaim the deleted one at the same moment: exactly one purges,
// the store then holds no message of its subjects and no key of it, and the successor
// (stored under the same name) and a neighbour keep theirs.
func TestReclaim_PurgesEveryRecordOfTheDeletedObjectOnceAndNothingOfItsSuccessor(t *testing.T) {
	ctx := context.Background()
	url := testenv.NATS(t)
	a, b := replica(t, url), replica(t, url)
	old := queue.Endpoint{Namespace: "shop", Name: "billing.eu", UID: "0a1b2c3d-0000-4000-8000-000000000001"}
	successor := queue.Endpoint{Namespace: "shop", Name: "billing.eu", UID: "0a1b2c3d-0000-4000-8000-000000000002"}
	neighbour := queue.Endpoint{Namespace: "shop", Name: "audit", UID: "0a1b2c3d-0000-4000-8000-000000000003"}

	storeFor(t, a, old, "evt_1", "evt_2", "evt_3")
	cons, err := a.Consume(ctx, old, queue.ConsumerOptions{Ordered: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := cons.Next()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.DeadLetter(ctx, queue.DeadLetter{Reason: "RetriesExhausted", StatusCode: 503}); err != nil {
		t.Fatal(err)
	}
	cons.Stop()
	if err := a.SetOrderedHead(ctx, old, queue.Head{Sequence: 2, EventID: "evt_2", Attempt: 2}); err != nil {
		t.Fatal(err)
	}
	w := a.History()
	for _, id := range []string{"evt_r1", "evt_r2"} {
		d := queue.Delivery{Namespace: old.Namespace, Endpoint: old.Name, EndpointUID: old.UID, EventID: id, DeliveryID: "dlv_" + id,
			Attempt: 1, CreatedAt: time.Now(), Data: []byte(`{}`)}
		w.Delivered(&d, time.Now())
		w.Attempt(&queue.AttemptRecord{Namespace: old.Namespace, Endpoint: old.Name, EndpointUID: old.UID, EventID: id, Attempt: 1, StatusCode: 200, Final: true})
	}
	w.Close()
	if _, _, err := a.UpdateState(ctx, queue.EndpointKey("ep", old), func([]byte) ([]byte, bool, error) {
		return []byte(`{"failures":4,"lastReplay":"r1"}`), true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.Lease(ctx, queue.EndpointKey("replay", old), "a/r1", time.Minute); err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	storeFor(t, a, successor, "evt_new")
	storeFor(t, a, neighbour, "evt_audit")

	held, err := queue.Holds(ctx, a, old)
	if err != nil {
		t.Fatal(err)
	}
	if held.Pending != 2 || held.DeadLetters != 1 || held.Delivered == 0 || held.Attempts == 0 || held.Keys != 5 {
		t.Fatalf("before: the deleted endpoint's data = %+v, want 2 pending, 1 dead letter, retained deliveries, attempts, 5 keys (known, head, ep, replay, tally)", held)
	}

	// Both replicas see the deletion at once.
	var purged atomic.Int32
	var wg sync.WaitGroup
	for i, st := range []queue.Store{a, b} {
		wg.Go(func() {
			ok, err := st.Reclaim(ctx, old, fmt.Sprint("replica-", i))
			if err != nil {
				t.Error(err)
			}
			if ok {
				purged.Add(1)
			}
		})
	}
	wg.Wait()
	if n := purged.Load(); n != 1 {
		t.Errorf("%d replicas purged, want exactly 1", n)
	}
	if ok, err := b.Reclaim(ctx, old, "late"); err != nil || ok {
		t.Errorf("a replica hearing of the deletion later purged again: %v %v", ok, err)
	}
	if held, err := queue.Holds(ctx, a, old); err != nil || held != (queue.Held{}) {
		t.Errorf("after: the store still holds %+v of the deleted endpoint (%v), want nothing", held, err)
	}
	for _, c := range []struct {
		ep   queue.Endpoint
		want queue.Held
	}{{successor, queue.Held{Pending: 1, Keys: 1}}, {neighbour, queue.Held{Pending: 1, Keys: 1}}} {
		if held, err := queue.Holds(ctx, a, c.ep); err != nil || held != c.want {
			t.Errorf("%s (uid %s) holds %+v (%v), want %+v untouched", c.ep, c.ep.UID, held, err, c.want)
		}
	}
	stored, err := b.StoredEndpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stored[old] || !stored[successor] || !stored[neighbour] {
		t.Errorf("stored endpoints = %v, want the successor and the neighbour, not the deleted one", stored)
	}
	// A replica that had not yet seen the deletion makes the ordered endpoint's consumer
	// again after the purge: the sweep finds the endpoint by it, and purges it.
	again, err := b.Consume(ctx, old, queue.ConsumerOptions{Ordered: true})
	if err != nil {
		t.Fatal(err)
	}
	again.Stop()
	live := func(uid string) bool { return uid == successor.UID || uid == neighbour.UID }
	if found, err := a.ConsumerEndpoints(ctx, live); err != nil || !slices.Contains(found, old) {
		t.Errorf("endpoints with a consumer but no live object = %v (%v), want the deleted one", found, err)
	}
	if err := a.Purge(ctx, old); err != nil {
		t.Fatal(err)
	}
	if found, err := a.ConsumerEndpoints(ctx, live); err != nil || len(found) != 0 {
		t.Errorf("after the sweep's purge: %v (%v), want none", found, err)
	}
	// The successor's own reads find nothing of the deleted one.
	n := 0
	_ = a.DeadLetters(ctx, successor, func(*queue.DeadLetter) bool { n++; return true })
	_ = a.Delivered(ctx, queue.HistoryQuery{Endpoint: successor}, func(*queue.Retained) bool { n++; return true })
	_ = a.Attempts(ctx, queue.HistoryQuery{Endpoint: successor}, func(*queue.AttemptRecord) bool { n++; return true })
	if n != 0 {
		t.Errorf("the successor reads %d records of the deleted endpoint", n)
	}
}

// TestMigrateLegacy_MovesWhatTheReleaseBeforeUIDsStoredToTheEndpointOfThatName: a store
// written as the previous release wrote it (queuetest) is migrated by two replicas at
// once. What belongs to an endpoint that exists now moves under its UID once (pending
// deliveries, dead letters, retained deliveries, attempt records, shared state); what
// belongs to no endpoint now, or was stored before the endpoint of that name was
// created, is dropped; what is in a namespace not served stays. The old consumer goes,
// and a second migration finds nothing.
func TestMigrateLegacy_MovesWhatTheReleaseBeforeUIDsStoredToTheEndpointOfThatName(t *testing.T) {
	ctx := context.Background()
	url := testenv.NATS(t)
	a, b := replica(t, url), replica(t, url)
	js := rawJetStream(t, url)
	now := time.Now()
	state := `{"failures":0,"disabled":true,"lastReenable":"e1","lastReplay":"r1","delivered":7,"failedAttempts":0,"deadLettered":1}`
	for _, l := range []queuetest.Legacy{
		{Namespace: "shop", Name: "billing.eu", Pending: []string{"evt_p1", "evt_p2"}, DeadLetters: []string{"evt_d1"},
			Delivered: []string{"evt_r1"}, State: state, Consumer: true, AcceptedAt: now},
		{Namespace: "shop", Name: "gone", Pending: []string{"evt_g1"}, DeadLetters: []string{"evt_g2"}, Delivered: []string{"evt_g3"}, AcceptedAt: now},
		{Namespace: "shop", Name: "recreated", Pending: []string{"evt_before"}, AcceptedAt: now},
		{Namespace: "elsewhere", Name: "x", Pending: []string{"evt_x"}, AcceptedAt: now},
	} {
		if err := queuetest.Write(ctx, js, l); err != nil {
			t.Fatal(err)
		}
	}
	billing := queue.Endpoint{Namespace: "shop", Name: "billing.eu", UID: "1b2c3d4e-0000-4000-8000-000000000001"}
	recreated := queue.Endpoint{Namespace: "shop", Name: "recreated", UID: "1b2c3d4e-0000-4000-8000-000000000002"}
	owner := func(_ context.Context, ns, name string) (queue.Endpoint, time.Time, bool) {
		switch ns + "/" + name {
		case "shop/billing.eu":
			return billing, now.Add(-time.Hour), true
		case "shop/recreated": // created long after its name's records were stored
			return recreated, now.Add(time.Hour), true
		case "shop/gone":
			return queue.Endpoint{}, time.Time{}, true
		}
		return queue.Endpoint{}, time.Time{}, false // not served
	}

	reports := make([]queue.LegacyReport, 2)
	var wg sync.WaitGroup
	for i, st := range []queue.Store{a, b} {
		wg.Go(func() {
			rep, err := st.MigrateLegacy(ctx, owner)
			if err != nil {
				t.Error(err)
			}
			reports[i] = rep
		})
	}
	wg.Wait()
	t.Logf("migrations: %+v", reports)

	if n, err := a.PendingDeliveries(ctx, billing); err != nil || n != 2 {
		t.Errorf("pending of billing.eu after the migration = %d (%v), want the 2 stored before, once", n, err)
	}
	var dead []string
	_ = a.DeadLetters(ctx, billing, func(dl *queue.DeadLetter) bool {
		dead = append(dead, dl.EventID+"@"+dl.EndpointUID+fmt.Sprint("/", dl.StatusCode))
		return true
	})
	if want := "evt_d1@" + billing.UID + "/503"; len(dead) != 1 || dead[0] != want {
		t.Errorf("dead letters of billing.eu = %v, want [%s]", dead, want)
	}
	var retained, attempts []string
	_ = a.Delivered(ctx, queue.HistoryQuery{Endpoint: billing}, func(r *queue.Retained) bool {
		retained = append(retained, r.EventID+"@"+r.EndpointUID)
		return true
	})
	_ = a.Attempts(ctx, queue.HistoryQuery{Namespace: "shop", EventID: "evt_r1"}, func(r *queue.AttemptRecord) bool {
		attempts = append(attempts, fmt.Sprintf("%s@%s/%d", r.EventID, r.EndpointUID, r.StatusCode))
		return true
	})
	if len(retained) != 1 || retained[0] != "evt_r1@"+billing.UID || len(attempts) != 1 || attempts[0] != "evt_r1@"+billing.UID+"/200" {
		t.Errorf("history of billing.eu: retained %v, attempts %v; want evt_r1 once each, under its UID", retained, attempts)
	}
	if e, ok, err := a.ReadState(ctx, queue.EndpointKey("ep", billing)); err != nil || !ok || string(e) != state {
		t.Errorf("state of billing.eu = %s (%v), want the old state (disabled, handled annotations) kept", e, err)
	}
	if held, _ := queue.Holds(ctx, a, recreated); held.Pending != 0 {
		t.Errorf("an endpoint created after its name's records got %d of them", held.Pending)
	}

	// Nothing left of the old layout but the namespace not served.
	for _, c := range []struct {
		stream, filter string
		want           map[string]uint64
	}{
		{queue.DeliveriesStream, "herald.dlv.*.*", map[string]uint64{"herald.dlv.elsewhere.x": 1}},
		{queue.DeadLettersStream, "herald.dlq.*.*", nil},
		{queue.DeliveredStream, "herald.done.*.*.*", nil},
		{queue.AttemptsStream, "herald.att.*.*.*", nil},
		{"KV_" + queue.StateBucket, "$KV." + queue.StateBucket + ".*.*.*", nil},
	} {
		st, err := js.Stream(ctx, c.stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(c.filter))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(info.State.Subjects) != fmt.Sprint(c.want) {
			t.Errorf("%s still holds %v of the old layout, want %v", c.stream, info.State.Subjects, c.want)
		}
	}
	if _, err := js.Consumer(ctx, queue.DeliveriesStream, "ep_shop_billing_eu"); err == nil {
		t.Error("the old consumer of billing.eu is still there")
	}

	again, err := a.MigrateLegacy(ctx, owner)
	if err != nil || len(again.Moved)+len(again.Dropped) != 0 {
		t.Errorf("a second migration = %+v, %v; want nothing moved or dropped", again, err)
	}
	// The moved deliveries are delivered as any other, in the order they were stored.
	cons, err := a.Consume(ctx, billing, queue.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Stop()
	for _, want := range []string{"evt_p1", "evt_p2"} {
		p, err := cons.Next()
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.Unmarshal(p.Data, &body)
		if p.EventID != want || p.EndpointUID != billing.UID || body["id"] != want {
			t.Errorf("delivery = %s for %s, body %v; want %s for %s", p.EventID, p.EndpointUID, body, want, billing.UID)
		}
		_ = p.Ack(ctx)
	}
}
