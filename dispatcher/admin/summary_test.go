package admin_test

import (
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
	"github.com/herald-dev/herald/dispatcher/resolve"
	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/dispatcher/sender"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/internal/outbound"
	"github.com/herald-dev/herald/pkg/wire"
)

// TestAttemptSummary_CountsANamespacesAttemptsPerMinuteInOneRequest delivers to two
// endpoints of a namespace through the dispatcher's own pipeline on a real store, one
// receiver answering 204 and the other 500, then removes a third endpoint that had
// attempts: the namespace's summary counts the two that exist, the endpoint's its own,
// and a caller without get on webhookendpoints is refused.
func TestAttemptSummary_CountsANamespacesAttemptsPerMinuteInOneRequest(t *testing.T) {
	ctx := context.Background()
	conf := config.Default()
	conf.Store.DataDir = t.TempDir()
	p, err := app.NewPipeline(ctx, app.PipelineOptions{Config: conf, Authorizer: allow, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sg, err := signer.New(heraldv1.SignatureStandardWebhooks, "", []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), nil)
	if err != nil {
		t.Fatal(err)
	}
	endpoint := func(name, uid string, status int) delivery.Key {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			time.Sleep(5 * time.Millisecond)
			w.WriteHeader(status)
		}))
		t.Cleanup(srv.Close)
		k := delivery.Key{Namespace: "shop", Name: name, UID: uid}
		p.Engine.Upsert(k, delivery.EndpointConfig{
			Target: sender.New(sender.Config{URL: srv.URL, Signer: sg, Timeout: 2 * time.Second,
				Policy: outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true}}),
			Settings: resolve.Settings{Schedule: []time.Duration{}, Generation: 1},
		})
		p.Router.Set("shop", router.Subscription{Name: "to-" + name, Endpoint: name, Patterns: []string{"*"}})
		return k
	}
	endpoint("billing", "0a6c1f6e-0000-4000-8000-000000000001", http.StatusNoContent)
	endpoint("audit", "0a6c1f6e-0000-4000-8000-000000000002", http.StatusInternalServerError)
	gone := endpoint("legacy", "0a6c1f6e-0000-4000-8000-000000000003", http.StatusNoContent)
	ing := httptest.NewServer(p.Ingest)
	defer ing.Close()
	for i := range 3 {
		code, raw := call(t, http.MethodPost, ing.URL+"/v1/namespaces/shop/events",
			map[string]any{"id": fmt.Sprint("evt_", i), "type": "invoice.paid", "data": map[string]any{}})
		if code != http.StatusAccepted {
			t.Fatalf("publish: %d %s", code, raw)
		}
	}

	deny := auth.AuthorizerFunc(func(context.Context, *http.Request, string) (auth.Identity, error) {
		return auth.Identity{Name: "publisher"}, fmt.Errorf("%w: publisher may not get webhookendpoints.hooks.herald.dev in namespace shop", auth.ErrForbidden)
	})
	api := httptest.NewServer(admin.NewHandler(admin.Options{
		Store: p.Store, Lifecycle: p.Tracker, Lookup: p.Engine.Lookup, Access: admin.Access{Read: allow}, Log: testr.New(t),
	}))
	defer api.Close()
	refusing := httptest.NewServer(admin.NewHandler(admin.Options{
		Store: p.Store, Lifecycle: p.Tracker, Lookup: p.Engine.Lookup, Access: admin.Access{Read: deny}, Log: testr.New(t),
	}))
	defer refusing.Close()

	summary := func(path string) wire.AttemptSummary {
		t.Helper()
		code, raw := call(t, http.MethodGet, api.URL+path, nil)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, raw)
		}
		var s wire.AttemptSummary
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	totals := func(s wire.AttemptSummary) (delivered, failed int, maxMs float64) {
		for _, b := range s.Buckets {
			delivered, failed, maxMs = delivered+b.Delivered, failed+b.Failed, max(maxMs, b.MaxMillis)
		}
		return
	}
	// Three events to three endpoints, one attempt each (no retries); records are
	// written asynchronously.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if d, f, _ := totals(summary("/v1/namespaces/shop/attempts:summary?minutes=5")); d == 6 && f == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the namespace's summary never counted 6 delivered and 3 failed attempts: %+v", summary("/v1/namespaces/shop/attempts:summary?minutes=5"))
		}
		time.Sleep(50 * time.Millisecond)
	}

	p.Engine.Remove(gone)
	s := summary("/v1/namespaces/shop/attempts:summary?minutes=5")
	if len(s.Buckets) != 5 || s.StepSeconds != 60 || !s.Buckets[4].Start.Equal(s.Since.Add(4*time.Minute)) {
		t.Errorf("5 one-minute buckets from since, the current minute last: %+v", s)
	}
	if d, f, maxMs := totals(s); d != 3 || f != 3 || maxMs < 5 {
		t.Errorf("after legacy's removal the namespace counts billing's 3 delivered and audit's 3 failed attempts, each of 5ms or more: got %d delivered, %d failed, max %.1fms", d, f, maxMs)
	}
	if d, f, _ := totals(summary("/v1/namespaces/shop/endpoints/audit/attempts:summary?minutes=5")); d != 0 || f != 3 {
		t.Errorf("audit's own summary: %d delivered, %d failed; want 0 and 3", d, f)
	}
	for _, b := range s.Buckets {
		if n := b.Delivered + b.Failed; n > 0 && (b.MeanMillis <= 0 || b.MeanMillis > b.MaxMillis) {
			t.Errorf("bucket %+v: the mean of its attempts' durations must be in (0, max]", b)
		}
	}

	for path, want := range map[string]int{
		"/v1/namespaces/shop/attempts:summary?minutes=0":    http.StatusBadRequest,
		"/v1/namespaces/shop/attempts:summary?minutes=1441": http.StatusBadRequest,
		"/v1/namespaces/Shop!/attempts:summary":             http.StatusBadRequest,
	} {
		if code, raw := call(t, http.MethodGet, api.URL+path, nil); code != want {
			t.Errorf("GET %s: %d %s, want %d", path, code, raw, want)
		}
	}
	for _, path := range []string{"/v1/namespaces/shop/attempts:summary", "/v1/namespaces/shop/endpoints/audit/attempts:summary"} {
		code, raw := call(t, http.MethodGet, refusing.URL+path, nil)
		if code != http.StatusForbidden || !strings.Contains(string(raw), "may not get webhookendpoints") || strings.Contains(string(raw), "buckets") {
			t.Errorf("GET %s without get on webhookendpoints: %d %s, want 403 naming the permission and no counts", path, code, raw)
		}
	}
}
