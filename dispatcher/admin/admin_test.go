package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/admin"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/replay"
	"github.com/herald-dev/herald/dispatcher/resolve"
	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/dispatcher/sender"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/internal/outbound"
	"github.com/herald-dev/herald/pkg/wire"
)

var allow = auth.AuthorizerFunc(func(context.Context, *http.Request, string) (auth.Identity, error) {
	return auth.Identity{Name: "operator"}, nil
})

func call(t *testing.T, method, url string, body any) (int, []byte) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes()
}

// TestEndpointAPI_ListsReplaysAndRefusesWithClearErrors runs the endpoint API over the
// dispatcher's own pipeline on a real store, with dead letters made by real failed
// attempts against a receiver that always answers 500.
func TestEndpointAPI_ListsReplaysAndRefusesWithClearErrors(t *testing.T) {
	ctx := context.Background()
	conf := config.Default()
	conf.Store.DataDir = t.TempDir()
	p, err := app.NewPipeline(ctx, app.PipelineOptions{Config: conf, Authorizer: allow, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	defer down.Close()
	sg, err := signer.New(heraldv1.SignatureStandardWebhooks, "", []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// No retries: the first failure dead-letters.
	p.Engine.Upsert(delivery.Key{Namespace: "shop", Name: "billing", UID: "7c1f0e2d-9a8b-4c3d-b2e1-0f9e8d7c6b5a"}, delivery.EndpointConfig{
		Target: sender.New(sender.Config{URL: down.URL, Signer: sg, Timeout: 2 * time.Second,
			Policy: outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true}}),
		Settings: resolve.Settings{Schedule: []time.Duration{}, Generation: 1},
	})
	p.Router.Set("shop", router.Subscription{Name: "all", Endpoint: "billing", Patterns: []string{"*"}})
	ing := httptest.NewServer(p.Ingest)
	defer ing.Close()
	for i, typ := range []string{"invoice.paid", "invoice.paid", "refund.created"} {
		code, raw := call(t, http.MethodPost, ing.URL+"/v1/namespaces/shop/events",
			map[string]any{"id": fmt.Sprint("evt_", i), "type": typ, "data": map[string]any{}})
		if code != http.StatusAccepted {
			t.Fatalf("publish: %d %s", code, raw)
		}
	}

	api := httptest.NewServer(admin.NewHandler(admin.Options{
		Store: p.Store, Lifecycle: p.Tracker, Replayer: p.Replayer, Lookup: p.Engine.Lookup, Access: admin.Access{Read: allow, Replay: allow, Enable: allow}, Log: testr.New(t),
	}))
	defer api.Close()
	base := api.URL + "/v1/namespaces/shop/endpoints/billing"
	var list wire.DeadLetterList
	deadline := time.Now().Add(20 * time.Second)
	for len(list.Items) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("dead letters: %+v", list)
		}
		time.Sleep(50 * time.Millisecond)
		code, raw := call(t, http.MethodGet, base+"/dead-letters", nil)
		if code != http.StatusOK {
			t.Fatalf("list: %d %s", code, raw)
		}
		list = wire.DeadLetterList{}
		_ = json.Unmarshal(raw, &list)
	}
	for _, it := range list.Items {
		if it.Reason != heraldv1.DeadLetterRetriesExhausted || it.StatusCode != 500 || it.Attempts != 1 || !strings.HasPrefix(it.DeliveryID, "dlv_") {
			t.Errorf("dead letter = %+v", it)
		}
	}

	code, raw := call(t, http.MethodGet, base+"/dead-letters?limit=2", nil)
	list = wire.DeadLetterList{}
	if _ = json.Unmarshal(raw, &list); code != http.StatusOK || len(list.Items) != 2 || !list.More {
		t.Errorf("limit=2: %d %s, want two items and more", code, raw)
	}

	// Replay by type: only the refund goes back (and fails again into a new dead letter).
	code, raw = call(t, http.MethodPost, base+"/dead-letters:replay", wire.ReplayRequest{EventType: "refund.created"})
	if code != http.StatusOK || !strings.Contains(string(raw), `"replayed":1`) {
		t.Errorf("replay by type: %d %s", code, raw)
	}

	for _, c := range []struct {
		why, method, url string
		body             any
		status           int
		code, field      string
	}{
		{"a limit out of range", http.MethodGet, base + "/dead-letters?limit=0", nil, 400, wire.CodeInvalidRequest, "limit"},
		{"a namespace that is no namespace name", http.MethodGet, api.URL + "/v1/namespaces/Not_A_NS/endpoints/billing/dead-letters", nil, 400, wire.CodeInvalidRequest, "namespace"},
		{"an endpoint that does not exist", http.MethodPost, api.URL + "/v1/namespaces/shop/endpoints/nope/enable", nil, 404, wire.CodeNotFound, ""},
		{"an empty selection never replays everything", http.MethodPost, base + "/dead-letters:replay", wire.ReplayRequest{}, 400, wire.CodeInvalidRequest, "all"},
	} {
		code, raw := call(t, c.method, c.url, c.body)
		var e wire.ErrorResponse
		if err := json.Unmarshal(raw, &e); err != nil || code != c.status || e.Error.Code != c.code || e.Error.Field != c.field {
			t.Errorf("%s: %d %s, want %d with code %q field %q", c.why, code, raw, c.status, c.code, c.field)
		}
	}
}

// The replay sources a client names (package wire) are the ones the replayer parses.
func TestReplaySources_WireNamesParse(t *testing.T) {
	for _, tt := range []struct {
		source                 string
		deadLetters, delivered bool
	}{{wire.SourceDeadLetters, true, false}, {wire.SourceDelivered, false, true}} {
		dl, dv, err := replay.ParseSources(tt.source)
		if err != nil || dl != tt.deadLetters || dv != tt.delivered {
			t.Errorf("ParseSources(%q) = %v, %v, %v; want %v, %v", tt.source, dl, dv, err, tt.deadLetters, tt.delivered)
		}
	}
}

// Two replays of one endpoint asked for in the same millisecond: one starts, the other
// is refused with 409 while it runs. (Their ids, and so the lease's holder, once came
// from the millisecond alone: the second took the lease the first held, and both ran.)
func TestStartReplay_TwoInTheSameMillisecond_OneRuns(t *testing.T) {
	ctx := context.Background()
	conf := config.Default()
	conf.Store.DataDir = t.TempDir()
	conf.History.ReplayRate = 0.5 // a re-send every 2 s: the first replay still runs when the second comes
	p, err := app.NewPipeline(ctx, app.PipelineOptions{Config: conf, Authorizer: allow, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	received := make(chan struct{}, 100)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { received <- struct{}{} }))
	defer up.Close()
	sg, err := signer.New(heraldv1.SignatureStandardWebhooks, "", []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Engine.Upsert(delivery.Key{Namespace: "shop", Name: "billing", UID: "0d1c2b3a-4f5e-4d6c-8b7a-695847362514"}, delivery.EndpointConfig{
		Target: sender.New(sender.Config{URL: up.URL, Signer: sg, Timeout: 2 * time.Second,
			Policy: outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true}}),
		Settings: resolve.Settings{Generation: 1},
	})
	p.Router.Set("shop", router.Subscription{Name: "all", Endpoint: "billing", Patterns: []string{"*"}})
	ing := httptest.NewServer(p.Ingest)
	defer ing.Close()
	for i := range 3 {
		if code, raw := call(t, http.MethodPost, ing.URL+"/v1/namespaces/shop/events",
			map[string]any{"id": fmt.Sprint("evt_", i), "type": "invoice.paid", "data": map[string]any{}}); code != http.StatusAccepted {
			t.Fatalf("publish: %d %s", code, raw)
		}
	}
	for range 3 {
		select {
		case <-received:
		case <-time.After(20 * time.Second):
			t.Fatal("the events were not delivered within 20s")
		}
	}

	instant := time.Now()
	api := httptest.NewServer(admin.NewHandler(admin.Options{
		Store: p.Store, Lifecycle: p.Tracker, Replayer: p.Replayer, Lookup: p.Engine.Lookup, Access: admin.Access{Read: allow, Replay: allow, Enable: allow},
		Now: func() time.Time { return instant }, Log: testr.New(t),
	}))
	defer api.Close()
	replays := api.URL + "/v1/namespaces/shop/endpoints/billing/replays"
	// The retained deliveries are written in the background: until they are, nothing is
	// selected and the replay is complete at once.
	var first wire.ReplayStarted
	deadline := time.Now().Add(20 * time.Second)
	for first.Selected == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no replay selected the delivered events within 20s: %+v", first)
		}
		code, raw := call(t, http.MethodPost, replays, wire.ReplaySelectionRequest{All: true, From: []string{"delivered"}})
		if code != http.StatusAccepted {
			t.Fatalf("first replay: %d %s", code, raw)
		}
		_ = json.Unmarshal(raw, &first)
		time.Sleep(50 * time.Millisecond)
	}
	code, raw := call(t, http.MethodPost, replays, wire.ReplaySelectionRequest{All: true, From: []string{"delivered"}})
	var e wire.ErrorResponse
	if _ = json.Unmarshal(raw, &e); code != http.StatusConflict || e.Error.Code != wire.CodeConflict {
		t.Errorf("a second replay in the same millisecond while %s runs: %d %s, want 409 %s", first.ID, code, raw, wire.CodeConflict)
	}
}
