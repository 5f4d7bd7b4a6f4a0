package queue

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-dev/herald/dispatcher/config"
)

// The history is kept on at most 256 subjects per endpoint, whatever the number of
// events (the server indexes every subject), and one event's history is still exactly
// its own, records written before the buckets included.
func TestHistory_BucketedSubjectsFindExactlyOneEvent(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, Options{Store: config.Store{DataDir: t.TempDir()}, History: config.History{AttemptLog: true}, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := st.(*jsStore)
	w := s.History()
	ep := Endpoint{Namespace: "shop", Name: "billing", UID: "6f1c2b9e-0d5a-4c8e-9f3b-2a7d1e4c5b6a"}
	const events = 1000
	at := time.Now()
	for i := range events {
		id := fmt.Sprintf("evt_%d", i)
		d := Delivery{Namespace: "shop", Endpoint: "billing", EndpointUID: ep.UID, EventID: id, EventType: "order.created",
			DeliveryID: "dlv_" + id, Attempt: 1, Data: []byte(`{}`), CreatedAt: at}
		w.Delivered(&d, at)
		w.Attempt(&AttemptRecord{Namespace: "shop", Endpoint: "billing", EndpointUID: ep.UID, EventID: id, DeliveryID: d.DeliveryID, Attempt: 1, Time: at, StatusCode: 204, Final: true})
	}
	w.Close()
	if n, err := w.Failed(); n != 0 {
		t.Fatalf("%d history records not written: %v", n, err)
	}

	// A record as an older Herald wrote it: its own subject per event (moved under the
	// endpoint's UID by MigrateLegacy).
	old := Delivery{Namespace: "shop", Endpoint: "billing", EventID: "evt_before_upgrade", EventType: "order.created",
		DeliveryID: "dlv_old", Attempt: 1, Data: []byte(`{}`), CreatedAt: at}
	m := old.toMsg(deliveredSubjectPrefix + ep.tokens() + "." + legacyEventToken(old.EventID))
	if _, err := s.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}

	for _, stream := range []jetstream.Stream{s.delivered, s.attempts} {
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(">"))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(info.State.Subjects); n > historyBuckets+1 {
			t.Errorf("%s: %d subjects for %d events of one endpoint, want at most %d (+1 legacy)", info.Config.Name, n, events, historyBuckets)
		}
	}
	for _, id := range []string{"evt_0", "evt_517", "evt_999", "evt_before_upgrade"} {
		var got []string
		if err := s.Delivered(ctx, HistoryQuery{Namespace: "shop", EventID: id}, func(r *Retained) bool {
			got = append(got, r.EventID)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != id {
			t.Errorf("retained deliveries of %s: %v", id, got)
		}
		if id == "evt_before_upgrade" {
			continue
		}
		var attempts []string
		if err := s.Attempts(ctx, HistoryQuery{Endpoint: ep, EventID: id}, func(r *AttemptRecord) bool {
			attempts = append(attempts, r.EventID)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if len(attempts) != 1 || attempts[0] != id {
			t.Errorf("attempts of %s: %v", id, attempts)
		}
	}
	all := 0
	if err := s.Delivered(ctx, HistoryQuery{Endpoint: ep}, func(*Retained) bool { all++; return true }); err != nil {
		t.Fatal(err)
	}
	if all != events+1 {
		t.Errorf("the endpoint's retained deliveries: %d, want %d", all, events+1)
	}
}
