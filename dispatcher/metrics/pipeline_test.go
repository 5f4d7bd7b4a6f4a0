package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/accept"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/ingest"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/dispatcher/sender"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/internal/outbound"
)

// storeSource is the dispatcher's Source (dispatcher/app has the same) without the
// shared failure state, which is not under test here.
type storeSource struct {
	engine *delivery.Engine
	store  *queue.Store
}

func (s storeSource) Endpoints() map[delivery.Key]string { return s.engine.Endpoints() }
func (s storeSource) Disabled(delivery.Key) bool         { return false }
func (s storeSource) Pending(k delivery.Key) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.store.PendingDeliveries(ctx, k.Namespace, k.Name)
}

const producerToken = "producer-token-metrics"

// TestPipeline_ScrapeShowsWhatHappenedToARealEventAndNoIDs publishes an event through
// the real ingest API into the real store and engine, lets the real sender deliver it
// to receivers on 127.0.0.1 (one recovers after a failure, one never does, one endpoint
// is suspended), and reads the outcome from a Prometheus scrape over HTTP.
func TestPipeline_ScrapeShowsWhatHappenedToARealEventAndNoIDs(t *testing.T) {
	ctx := context.Background()
	store, err := queue.Open(ctx, queue.Options{DataDir: t.TempDir(), Log: testr.New(t)})
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	defer store.Close()

	reg := prometheus.NewRegistry()
	src := &storeSource{store: store}
	m, err := New(reg, src)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// Every scrape reads the store afresh, so the test can wait for settled values.
	m.c.state.ttl = 0
	engine := delivery.New(delivery.Options{Store: store, AckWait: 5 * time.Second, Observer: delivery.Observers{m}, Log: testr.New(t)})
	defer engine.Stop()
	src.engine = engine
	table := router.NewTable()

	var billingHits atomic.Int32
	billing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if billingHits.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer billing.Close()
	legacy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer legacy.Close()

	const ns = "shop"
	endpoint := func(name, url, hold string, schedule ...time.Duration) {
		cfg := delivery.EndpointConfig{Schedule: schedule, Hold: hold}
		if hold == "" {
			sg, err := signer.New(heraldv1.SignatureStandardWebhooks, "", []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Target = sender.New(sender.Config{
				URL: url, Signer: sg, HeaderPrefix: "X-Herald", Timeout: 2 * time.Second,
				Policy: outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true},
			})
		}
		engine.Upsert(delivery.Key{Namespace: ns, Name: name}, cfg)
		table.Set(ns, router.Subscription{Name: "to-" + name, Endpoint: name, Patterns: []string{"order.*"}})
	}
	endpoint("billing", billing.URL, "", 200*time.Millisecond)
	endpoint("legacy", legacy.URL, "", 50*time.Millisecond)
	endpoint("paused", "", heraldv1.ReasonSuspended)

	handler, err := ingest.NewHandler(ingest.Options{
		Acceptor: &accept.Acceptor{Store: store, Router: table, Known: engine.Known},
		Authorizer: auth.AuthorizerFunc(func(_ context.Context, r *http.Request, _ string) (auth.Identity, error) {
			if tok, _ := auth.BearerToken(r); tok != producerToken {
				return auth.Identity{}, auth.ErrUnauthenticated
			}
			return auth.Identity{Name: "system:serviceaccount:shop:producer", Method: auth.MethodToken}, nil
		}),
		Log: testr.New(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ingestSrv := httptest.NewServer(m.Ingest(handler))
	defer ingestSrv.Close()
	metricsSrv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer metricsSrv.Close()

	const eventID = "evt-metrics-marker-4242"
	publish := func(token string) int {
		req, _ := http.NewRequest(http.MethodPost, ingestSrv.URL+"/v1/namespaces/"+ns+"/events",
			strings.NewReader(`{"id":"`+eventID+`","type":"order.created","data":{"amount":1200}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := publish("not-a-token"); code != http.StatusUnauthorized {
		t.Fatalf("publish with a bad token: %d, want 401", code)
	}
	if code := publish(producerToken); code != http.StatusAccepted {
		t.Fatalf("publish: %d, want 202", code)
	}

	outcome := func(name, outcome string) float64 {
		return testutil.ToFloat64(m.c.deliveries.WithLabelValues(ns, name, outcome))
	}
	deadline := time.Now().Add(20 * time.Second)
	for outcome("billing", OutcomeDelivered) < 1 || outcome("legacy", OutcomeDeadLettered) < 1 ||
		gauge(t, reg, "herald_queue_pending_deliveries", delivery.Key{Namespace: ns, Name: "billing"}) != 0 ||
		gauge(t, reg, "herald_queue_pending_deliveries", delivery.Key{Namespace: ns, Name: "legacy"}) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("within 20s: billing delivered %v, legacy dead-lettered %v", outcome("billing", OutcomeDelivered), outcome("legacy", OutcomeDeadLettered))
		}
		time.Sleep(20 * time.Millisecond)
	}

	resp, err := http.Get(metricsSrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %s", resp.StatusCode, body)
	}
	text := string(body)
	for _, series := range []string{
		`herald_deliveries_total{endpoint="billing",namespace="shop",outcome="delivered"} 1`,
		`herald_deliveries_total{endpoint="billing",namespace="shop",outcome="failed"} 1`,
		`herald_deliveries_total{endpoint="legacy",namespace="shop",outcome="failed"} 2`,
		`herald_deliveries_total{endpoint="legacy",namespace="shop",outcome="dead_lettered"} 1`,
		`herald_delivery_http_responses_total{code_class="5xx",endpoint="billing",namespace="shop"} 1`,
		`herald_delivery_http_responses_total{code_class="2xx",endpoint="billing",namespace="shop"} 1`,
		`herald_delivery_attempt_duration_seconds_count{endpoint="legacy",namespace="shop"} 2`,
		`herald_ingest_to_delivery_seconds_count{endpoint="billing",namespace="shop"} 1`,
		`herald_ingest_to_delivery_seconds_count{endpoint="legacy",namespace="shop"} 0`,
		`herald_queue_pending_deliveries{endpoint="paused",namespace="shop"} 1`,
		`herald_held_deliveries{endpoint="paused",namespace="shop",reason="Suspended"} 1`,
		`herald_endpoints{state="flowing"} 2`,
		`herald_endpoints{state="held"} 1`,
		`herald_endpoints_disabled 0`,
		`herald_queue_pending_read_errors_total 0`,
		`herald_ingest_requests_total{code="202"} 1`,
		`herald_ingest_requests_total{code="401"} 1`,
		`herald_ingest_request_duration_seconds_count 2`,
	} {
		if !strings.Contains(text, series+"\n") {
			t.Errorf("scrape lacks %s", series)
		}
	}
	// The delivery reached billing only after its 200ms retry wait; a latency measured
	// from anything later than ingest would be shorter.
	if h := histogram(t, reg, "herald_ingest_to_delivery_seconds", delivery.Key{Namespace: ns, Name: "billing"}); h.GetSampleSum() < 0.2 {
		t.Errorf("ingest to delivery %.3fs, want at least the 0.2s retry wait", h.GetSampleSum())
	}
	for _, id := range []string{eventID, queue.DeliveryID(ns, eventID, "billing"), "dlv_"} {
		if strings.Contains(text, id) {
			t.Errorf("scrape contains %q: event and delivery ids must never be labels", id)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", text)
	}
}
