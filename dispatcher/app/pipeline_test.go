package app_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/resolve"
	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/dispatcher/sender"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/internal/outbound"
)

const producerToken = "producer-token-metrics"

// TestPipeline_ScrapeShowsWhatHappenedToARealEventAndNoIDs publishes an event through
// the dispatcher's own assembly (app.NewPipeline: the real ingest API, store, engine,
// outcome and metrics), lets the real sender deliver it to receivers on 127.0.0.1 (one
// recovers after a failure, one never does, one endpoint is suspended), and reads the
// outcome from a Prometheus scrape over HTTP.
func TestPipeline_ScrapeShowsWhatHappenedToARealEventAndNoIDs(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	conf := config.Default()
	conf.Store.DataDir, conf.Delivery.AckWait = t.TempDir(), 5*time.Second
	p, err := app.NewPipeline(ctx, app.PipelineOptions{
		Config:  conf,
		Metrics: reg,
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
	defer p.Close()
	engine, table := p.Engine, p.Router

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
		cfg := delivery.EndpointConfig{Hold: hold, Settings: resolve.Settings{Schedule: schedule}}
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
		engine.Upsert(delivery.Key{Namespace: ns, Name: name, UID: "uid-" + name}, cfg)
		table.Set(ns, router.Subscription{Name: "to-" + name, Endpoint: name, Patterns: []string{"order.*"}})
	}
	endpoint("billing", billing.URL, "", 200*time.Millisecond)
	endpoint("legacy", legacy.URL, "", 50*time.Millisecond)
	endpoint("paused", "", heraldv1.ReasonSuspended)

	ingestSrv := httptest.NewServer(p.Ingest)
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

	// Gauges are read from the store at most every few seconds, so wait for the
	// settled values rather than for the first scrape.
	deadline := time.Now().Add(30 * time.Second)
	for {
		text := scrape(t, metricsSrv.URL)
		if value(text, `herald_deliveries_total{endpoint="billing",namespace="shop",outcome="delivered"}`) >= 1 &&
			value(text, `herald_deliveries_total{endpoint="legacy",namespace="shop",outcome="dead_lettered"}`) >= 1 &&
			value(text, `herald_queue_pending_deliveries{endpoint="billing",namespace="shop"}`) == 0 &&
			value(text, `herald_queue_pending_deliveries{endpoint="legacy",namespace="shop"}`) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled within 30s:\n%s", text)
		}
		time.Sleep(100 * time.Millisecond)
	}

	text := scrape(t, metricsSrv.URL)
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
	if sum := value(text, `herald_ingest_to_delivery_seconds_sum{endpoint="billing",namespace="shop"}`); sum < 0.2 {
		t.Errorf("ingest to delivery %.3fs, want at least the 0.2s retry wait", sum)
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

// scrape GETs the metrics endpoint.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %s", resp.StatusCode, body)
	}
	return string(body)
}

// value reads one series' value from a scrape (-1 when absent).
func value(text, series string) float64 {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
