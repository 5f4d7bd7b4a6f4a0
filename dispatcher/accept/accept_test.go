package accept_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/herald-dev/herald/dispatcher/accept"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/ingest"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/internal/testenv"
)

// replica is ingest and accept on a real store, as one dispatcher runs them.
type replica struct {
	url   string
	store queue.Store
}

func newReplica(t *testing.T, opts queue.Options) *replica {
	t.Helper()
	opts.Log = testr.New(t)
	st, err := queue.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	table := router.NewTable()
	table.Set("shop", router.Subscription{Name: "invoices", Endpoint: "billing", Patterns: []string{"invoice.*"}})
	h, err := ingest.NewHandler(ingest.Options{
		Acceptor: &accept.Acceptor{Store: st, Router: table, Lookup: func(ns, name string) (queue.Endpoint, bool) {
			return queue.Endpoint{Namespace: ns, Name: name, UID: "uid-" + name}, name == "billing"
		}, Log: testr.New(t)},
		Authorizer: auth.AuthorizerFunc(func(context.Context, *http.Request, string) (auth.Identity, error) {
			return auth.Identity{Name: "producer", Method: auth.MethodAPIKey}, nil
		}),
		Log: testr.New(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &replica{url: srv.URL, store: st}
}

func (r *replica) publish(t *testing.T, id string) ingest.Result {
	t.Helper()
	resp, err := http.Post(r.url+"/v1/namespaces/shop/events", "application/json",
		strings.NewReader(`{"id":"`+id+`","type":"invoice.paid","data":{"amount":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res ingest.Result
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish %s: %d (%v)", id, resp.StatusCode, err)
	}
	return res
}

func (r *replica) pending(t *testing.T) int64 {
	t.Helper()
	n, err := r.store.PendingDeliveries(context.Background(), queue.Endpoint{Namespace: "shop", Name: "billing", UID: "uid-billing"})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAccept_RepeatedIDIsADuplicateWithTheFirstResult: publishing the same id again
// through the ingest API answers with the first result and stores nothing new.
func TestAccept_RepeatedIDIsADuplicateWithTheFirstResult(t *testing.T) {
	r := newReplica(t, queue.Options{Store: config.Store{DataDir: t.TempDir()}})
	if res := r.publish(t, "inv_1"); res.Duplicate || res.Matched != 1 {
		t.Fatalf("first publish = %+v", res)
	}
	if res := r.publish(t, "inv_1"); !res.Duplicate || res.Matched != 1 {
		t.Fatalf("repeat = %+v, want a duplicate with the first result", res)
	}
	if n := r.pending(t); n != 1 {
		t.Fatalf("%d deliveries stored, want 1", n)
	}
}

// TestAccept_IDsAreForgottenAfterTheWindow: past the dedupe window an id is new again
// (memory stays bounded by age as well as by count).
func TestAccept_IDsAreForgottenAfterTheWindow(t *testing.T) {
	const window = 2 * time.Second
	r := newReplica(t, queue.Options{Store: config.Store{DataDir: t.TempDir(), DedupeWindow: window}})
	start := time.Now()
	r.publish(t, "inv_w")
	if res := r.publish(t, "inv_w"); !res.Duplicate {
		t.Fatalf("within the window: %+v, want a duplicate", res)
	}
	deadline := start.Add(window + 10*time.Second)
	for {
		res := r.publish(t, "inv_w")
		if !res.Duplicate {
			if age := time.Since(start); age < window {
				t.Fatalf("forgotten after %s, before the %s window ended", age, window)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still remembered %s after the %s window", time.Since(start), window)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAccept_OneIDThroughTwoReplicasIsStoredOnce: two dispatchers on one NATS server
// share the dedupe records, so a producer that retries through another replica (the
// Service picks any pod) gets the first answer and no second delivery.
func TestAccept_OneIDThroughTwoReplicasIsStoredOnce(t *testing.T) {
	url := testenv.NATS(t)
	a := newReplica(t, queue.Options{Store: config.Store{URL: url}})
	b := newReplica(t, queue.Options{Store: config.Store{URL: url}})

	if res := a.publish(t, "inv_r"); res.Duplicate {
		t.Fatalf("through a: %+v", res)
	}
	if res := b.publish(t, "inv_r"); !res.Duplicate || res.Matched != 1 {
		t.Fatalf("the same id through b = %+v, want a duplicate with a's result", res)
	}
	if n := b.pending(t); n != 1 {
		t.Fatalf("%d deliveries stored, want 1", n)
	}
}
