package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/queue/queuetest"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/pkg/wire"
)

// ids is a receiver that answers by event id prefix (evt_ok 200, evt_dead 503,
// evt_retry 503 with Retry-After: 12) and remembers every id it was sent.
type ids struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

func newIDs(t *testing.T) *ids {
	r := &ids{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id := req.Header.Get("webhook-id")
		r.mu.Lock()
		r.seen = append(r.seen, id)
		r.mu.Unlock()
		switch {
		case strings.HasPrefix(id, "evt_dead"):
			w.WriteHeader(http.StatusServiceUnavailable)
		case strings.HasPrefix(id, "evt_retry"):
			w.Header().Set("Retry-After", "12")
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *ids) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// storeHolds counts, as a plain NATS client, the messages Herald's streams hold under
// one endpoint object's subjects and its keys in the state bucket (its tombstone aside).
func storeHolds(t *testing.T, js jetstream.JetStream, ns, name, uid string) map[string]uint64 {
	t.Helper()
	ep := ns + "." + strings.ReplaceAll(name, ".", "_") + "." + uid
	out := map[string]uint64{}
	for _, c := range []struct{ kind, stream, filter string }{
		{"pending", queue.DeliveriesStream, "herald.dlv." + ep},
		{"dead letters", queue.DeadLettersStream, "herald.dlq." + ep},
		{"delivered", queue.DeliveredStream, "herald.done." + ep + ".>"},
		{"attempts", queue.AttemptsStream, "herald.att." + ep + ".>"},
		{"keys", "KV_" + queue.StateBucket, "$KV." + queue.StateBucket + ".*." + ep},
	} {
		st, err := js.Stream(context.Background(), c.stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(c.filter))
		if err != nil {
			t.Fatal(err)
		}
		for subject, n := range info.State.Subjects {
			if !strings.HasPrefix(subject, "$KV."+queue.StateBucket+".gone.") {
				out[c.kind] += n
			}
		}
	}
	return out
}

func natsClient(t *testing.T, url string) jetstream.JetStream {
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

// TestDispatcher_DeletedEndpointsDataDiesWithIt is the tenant who deletes an endpoint
// and creates it again under its name, pointing at a server of their own, hoping for
// the old one's data. The old endpoint, served by two dispatcher replicas on one NATS
// server, has retained deliveries, dead letters, attempt records and two deliveries
// waiting for a retry due 12 seconds after they failed. After the recreation nothing of
// the old endpoint is listed, replayable or readable through the endpoint API, the store
// holds no message or key of it, and past the retry time nothing of it has reached the
// new URL: only what was published for the new endpoint.
func TestDispatcher_DeletedEndpointsDataDiesWithIt(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const ns = "reclaim"
	victim, tenant := newIDs(t), newIDs(t)
	fixture(t, c, ns, "billing", heraldv1.WebhookEndpointSpec{
		URL: victim.URL, Timeout: "2s",
		Retry:       heraldv1.RetrySpec{Schedule: []string{"10ms", "10ms"}, JitterPercent: ptr.To[int32](0)},
		AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To[int32](0)},
		// Fixed limits: the Retry-After of the evt_retry deliveries delays only them, not
		// (as adaptive limits do) every delivery of the endpoint, which would stretch the
		// timeline this test counts on.
		Limits: heraldv1.DeliveryLimits{Adaptive: ptr.To(false)},
	})
	operator := serviceAccountToken(t, c, ns, "operator", "get", "replay")
	url := testenv.NATS(t)
	js := natsClient(t, url)
	a := startDispatcherOn(t, config.Store{URL: url})
	b := startDispatcherOn(t, config.Store{URL: url})

	for i, id := range []string{"evt_ok_1", "evt_ok_2", "evt_dead_1", "evt_dead_2", "evt_retry_1", "evt_retry_2"} {
		[]*dispatcher{a, b}[i%2].publish(ns, id, "invoice.paid")
	}
	waitEndpoint(t, c, ns, "billing", "2 delivered, 2 dead letters, 2 waiting for their retry", func(ep *heraldv1.WebhookEndpoint) bool {
		k := ep.Status.Counters
		return k != nil && k.Delivered == 2 && k.DeadLettered == 2 && k.Pending == 2
	})
	retryDue := time.Now().Add(12 * time.Second)
	var old heraldv1.WebhookEndpoint
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "billing"}, &old); err != nil {
		t.Fatal(err)
	}
	oldUID := string(old.UID)
	base := a.url + "/v1/namespaces/" + ns + "/endpoints/billing"
	var dl wire.DeadLetterList
	if code, raw := call(t, http.MethodGet, base+"/dead-letters", operator, nil); code != http.StatusOK || json.Unmarshal(raw, &dl) != nil || len(dl.Items) != 2 {
		t.Fatalf("the old endpoint's dead letters: %d %s", code, raw)
	}
	// The history is written in batches, within a second of the attempts.
	var before map[string]uint64
	testenv.Eventually(t, 10*time.Second, func() error {
		before = storeHolds(t, js, ns, "billing", oldUID)
		for _, kind := range []string{"pending", "dead letters", "delivered", "attempts", "keys"} {
			if before[kind] == 0 {
				return fmt.Errorf("before the deletion the store holds no %s of the endpoint (%v): the test would prove nothing", kind, before)
			}
		}
		return nil
	})

	// The tenant deletes it and creates it again at once, pointing at their server.
	if err := c.Delete(ctx, &old); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, c, &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "billing", Namespace: ns}, Spec: heraldv1.WebhookEndpointSpec{
		URL: tenant.URL, Timeout: "2s", Retry: heraldv1.RetrySpec{Schedule: []string{"10ms"}, JitterPercent: ptr.To[int32](0)},
	}})
	var fresh []string
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		id := fmt.Sprint("evt_new_", i)
		if []*dispatcher{a, b}[i%2].publish(ns, id, "invoice.paid") == 1 {
			fresh = append(fresh, id)
		}
		if got := tenant.got(); len(got) > 0 && len(fresh) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new endpoint received nothing within 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// An event published through a replica that had not yet seen the deletion was routed
	// to the old object and dies with its data (what this test is about): the new
	// endpoint counts what its receiver got of the fresh events, at least two.
	waitEndpoint(t, c, ns, "billing", "the new endpoint's deliveries settled", func(ep *heraldv1.WebhookEndpoint) bool {
		k := ep.Status.Counters
		got, received := tenant.got(), 0
		for _, id := range fresh {
			if slices.Contains(got, id) {
				received++
			}
		}
		return string(ep.UID) != oldUID && k != nil && received >= 2 && k.Delivered == int64(received) && k.Pending == 0 && k.DeadLettered == 0
	})

	// Nothing of the old endpoint is listed or readable, through either replica.
	for _, d := range []*dispatcher{a, b} {
		base := d.url + "/v1/namespaces/" + ns + "/endpoints/billing"
		code, raw := call(t, http.MethodGet, base+"/dead-letters", operator, nil)
		if dl = (wire.DeadLetterList{}); code != http.StatusOK || json.Unmarshal(raw, &dl) != nil || len(dl.Items) != 0 {
			t.Errorf("dead letters of the new endpoint: %d %s, want none", code, raw)
		}
		code, raw = call(t, http.MethodGet, base+"/attempts", operator, nil)
		var attempts wire.AttemptList
		if code != http.StatusOK || json.Unmarshal(raw, &attempts) != nil {
			t.Fatalf("attempts: %d %s", code, raw)
		}
		for _, at := range attempts.Items {
			if !strings.HasPrefix(at.EventID, "evt_new_") {
				t.Errorf("the new endpoint's attempt log shows %s of the old one", at.EventID)
			}
		}
		for _, id := range []string{"evt_ok_1", "evt_dead_1", "evt_retry_1"} {
			if code, raw := call(t, http.MethodGet, d.url+"/v1/namespaces/"+ns+"/events/"+id, operator, nil); code != http.StatusNotFound {
				t.Errorf("events get %s: %d %s, want 404 (its endpoint is gone)", id, code, raw)
			}
		}
	}
	// Nothing of it is replayable: every dead letter and retained delivery selects the
	// new endpoint's own.
	if code, raw := call(t, http.MethodPost, base+"/dead-letters:replay", operator, wire.ReplayRequest{All: true}); code != http.StatusOK || !strings.Contains(string(raw), `"replayed":0`) {
		t.Errorf("replay of every dead letter: %d %s, want 0 replayed", code, raw)
	}
	code, raw := call(t, http.MethodPost, base+"/replays", operator, wire.ReplaySelectionRequest{All: true, From: []string{"dead-letters", "delivered"}})
	var started wire.ReplayStarted
	var delivered int64 // the fresh events the new endpoint delivered (see above)
	for _, id := range fresh {
		if slices.Contains(tenant.got(), id) {
			delivered++
		}
	}
	if code != http.StatusAccepted || json.Unmarshal(raw, &started) != nil || started.Selected != delivered {
		t.Errorf("replay of everything stored: %d %s, want the %d new deliveries selected", code, raw, delivered)
	}

	// The store no longer holds it: the replicas purged it.
	testenv.Eventually(t, 30*time.Second, func() error {
		for kind, n := range storeHolds(t, js, ns, "billing", oldUID) {
			if n != 0 {
				return fmt.Errorf("the store still holds %d %s of the deleted endpoint", n, kind)
			}
		}
		return nil
	})

	// Past the old retries' due time, and the replay's end, the new URL has had only
	// the new endpoint's events.
	time.Sleep(time.Until(retryDue.Add(3 * time.Second)))
	waitEndpoint(t, c, ns, "billing", "the replay's deliveries settled", func(ep *heraldv1.WebhookEndpoint) bool {
		r := ep.Status.Replay
		return r != nil && r.ID == started.ID && r.State == heraldv1.ReplayComplete && ep.Status.Counters.Pending == 0
	})
	for _, id := range tenant.got() {
		if !strings.HasPrefix(id, "evt_new_") {
			t.Errorf("the new endpoint's URL received %s of the deleted endpoint", id)
		}
	}
	// A fresh event routed to the old object by a replica that had not yet seen the
	// deletion may reach the old URL (the same namespace's receiver) before the replica
	// stops its deliveries, as it did in a -race run; it must then not reach the new
	// one too.
	for _, id := range victim.got() {
		if strings.HasPrefix(id, "evt_new_") && slices.Contains(tenant.got(), id) {
			t.Errorf("%s reached both the deleted endpoint's URL and the new one's", id)
		}
	}
}

// TestDispatcher_EndpointDeletedWhileNoDispatcherRunsLosesItsDataAtStart: an endpoint
// with dead letters and retained deliveries is deleted, and created again, while the
// dispatcher is stopped; the next dispatcher's start-up sweep purges the old object's
// data before its ingest opens, and keeps the new one's.
func TestDispatcher_EndpointDeletedWhileNoDispatcherRunsLosesItsDataAtStart(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const ns = "reclaimdown"
	rcv := newIDs(t)
	fixture(t, c, ns, "billing", heraldv1.WebhookEndpointSpec{
		URL: rcv.URL, Timeout: "2s",
		Retry:       heraldv1.RetrySpec{Schedule: []string{"10ms"}, JitterPercent: ptr.To[int32](0)},
		AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To[int32](0)},
	})
	url := testenv.NATS(t)
	js := natsClient(t, url)
	first := startDispatcherOn(t, config.Store{URL: url})
	first.publish(ns, "evt_ok_1", "invoice.paid")
	first.publish(ns, "evt_dead_1", "invoice.paid")
	waitEndpoint(t, c, ns, "billing", "delivered and dead-lettered", func(ep *heraldv1.WebhookEndpoint) bool {
		k := ep.Status.Counters
		return k != nil && k.Delivered == 1 && k.DeadLettered == 1 && k.Pending == 0
	})
	first.stop()

	var old heraldv1.WebhookEndpoint
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "billing"}, &old); err != nil {
		t.Fatal(err)
	}
	if held := storeHolds(t, js, ns, "billing", string(old.UID)); held["dead letters"] != 1 || held["delivered"] != 1 {
		t.Fatalf("before: the store holds %v of the endpoint, want a dead letter and a retained delivery", held)
	}
	if err := c.Delete(ctx, &old); err != nil {
		t.Fatal(err)
	}
	successor := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "billing", Namespace: ns}, Spec: heraldv1.WebhookEndpointSpec{URL: rcv.URL}}
	mustCreate(t, c, successor)

	// Ingest opens only after the start-up sweep: no waiting is needed.
	second := startDispatcherOn(t, config.Store{URL: url})
	for kind, n := range storeHolds(t, js, ns, "billing", string(old.UID)) {
		if n != 0 {
			t.Errorf("after the start: the store still holds %d %s of the endpoint deleted while no dispatcher ran", n, kind)
		}
	}
	second.publish(ns, "evt_new", "invoice.paid")
	waitEndpoint(t, c, ns, "billing", "the successor delivers", func(ep *heraldv1.WebhookEndpoint) bool {
		return ep.UID == successor.UID && ep.Status.Counters != nil && ep.Status.Counters.Delivered == 1
	})
}

// TestDispatcher_UpgradeFromTheStoreOfTheReleaseBeforeUIDs: a store written by the
// previous release, which keyed data by namespace and name (written here as it wrote
// it, see queuetest), is taken over by this release: the two deliveries that were
// pending are delivered once to the endpoint of that name, its dead letter is listed
// (and not replayed again: the replay annotation's value it had handled stays handled),
// its delivered event's attempts are readable, and what belonged to a name with no
// endpoint now is dropped; nothing is left in the old layout.
func TestDispatcher_UpgradeFromTheStoreOfTheReleaseBeforeUIDs(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const ns = "upgrade"
	rcv := &counter{ok: map[string]int{}, answer: func(string, string) int { return http.StatusOK }}
	srv := newSinkWith(t, rcv)
	fixture(t, c, ns, "billing", heraldv1.WebhookEndpointSpec{URL: srv.URL, Timeout: "2s"})
	update(t, c, &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"}}, func(ep *heraldv1.WebhookEndpoint) {
		metav1.SetMetaDataAnnotation(&ep.ObjectMeta, heraldv1.AnnotationReplayDeadLetters, "r1")
	})
	operator := serviceAccountToken(t, c, ns, "operator", "get", "replay")
	url := testenv.NATS(t)
	// The streams are those the previous release made (their names, subjects and
	// limits did not change); then its records.
	st, err := queue.Open(ctx, queue.Options{Store: config.Store{URL: url}})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	js := natsClient(t, url)
	for _, l := range []queuetest.Legacy{
		{Namespace: ns, Name: "billing", Pending: []string{"evt_p1", "evt_p2"}, DeadLetters: []string{"evt_d1"}, Delivered: []string{"evt_r1"},
			State: `{"failures":0,"lastReplay":"r1","delivered":1,"failedAttempts":3,"deadLettered":1}`, AcceptedAt: time.Now()},
		{Namespace: ns, Name: "removed", Pending: []string{"evt_g1"}, DeadLetters: []string{"evt_g2"}, AcceptedAt: time.Now()},
	} {
		if err := queuetest.Write(ctx, js, l); err != nil {
			t.Fatal(err)
		}
	}

	d := startDispatcherOn(t, config.Store{URL: url})
	waitEndpoint(t, c, ns, "billing", "the pending deliveries delivered", func(ep *heraldv1.WebhookEndpoint) bool {
		k := ep.Status.Counters
		return k != nil && k.Pending == 0 && rcv.count("evt_p1") >= 1 && rcv.count("evt_p2") >= 1
	})
	base := d.url + "/v1/namespaces/" + ns + "/endpoints/billing"
	var dl wire.DeadLetterList
	if code, raw := call(t, http.MethodGet, base+"/dead-letters", operator, nil); code != http.StatusOK || json.Unmarshal(raw, &dl) != nil ||
		len(dl.Items) != 1 || dl.Items[0].EventID != "evt_d1" || dl.Items[0].StatusCode != 503 {
		t.Errorf("dead letters after the upgrade: %d %s, want evt_d1", code, raw)
	}
	var h wire.EventHistory
	if code, raw := call(t, http.MethodGet, d.url+"/v1/namespaces/"+ns+"/events/evt_r1", operator, nil); code != http.StatusOK || json.Unmarshal(raw, &h) != nil ||
		len(h.Deliveries) != 1 || h.Deliveries[0].State != "Delivered" || len(h.Deliveries[0].Attempts) != 1 || h.Deliveries[0].Attempts[0].StatusCode != 200 {
		t.Errorf("history of evt_r1 after the upgrade: %d %s", code, raw)
	}
	ep := waitEndpoint(t, c, ns, "billing", "the old state kept", func(ep *heraldv1.WebhookEndpoint) bool {
		return ep.Status.Counters != nil && ep.Status.Counters.DeadLettered == 1 && ep.Status.LastHandledReplay == "r1"
	})
	if ep.Status.Replay != nil || rcv.count("evt_d1") != 0 {
		t.Errorf("the handled replay annotation replayed again: status.replay %+v, evt_d1 received %d times", ep.Status.Replay, rcv.count("evt_d1"))
	}
	// Delivered once each: wait a little past any redelivery (AckWait is 5s here).
	time.Sleep(6 * time.Second)
	for _, id := range []string{"evt_p1", "evt_p2"} {
		if n := rcv.count(id); n != 1 {
			t.Errorf("%s delivered %d times after the upgrade, want once", id, n)
		}
	}
	if n := rcv.count("evt_g1"); n != 0 {
		t.Errorf("a delivery of an endpoint that no longer exists was delivered %d times", n)
	}
	for _, c := range []struct{ stream, filter string }{
		{queue.DeliveriesStream, "herald.dlv.*.*"}, {queue.DeadLettersStream, "herald.dlq.*.*"},
		{queue.DeliveredStream, "herald.done.*.*.*"}, {queue.AttemptsStream, "herald.att.*.*.*"},
		{"KV_" + queue.StateBucket, "$KV." + queue.StateBucket + ".*.*.*"},
	} {
		s, err := js.Stream(ctx, c.stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(c.filter))
		if err != nil {
			t.Fatal(err)
		}
		if len(info.State.Subjects) != 0 {
			t.Errorf("%s still holds the old layout: %v", c.stream, info.State.Subjects)
		}
	}
}
