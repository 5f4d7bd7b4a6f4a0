package delivery_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/accept"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/ingest"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/queue/queuetest"
	"github.com/herald-dev/herald/dispatcher/replay"
	"github.com/herald-dev/herald/dispatcher/resolve"
	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/dispatcher/sender"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/internal/outbound"
	"github.com/herald-dev/herald/internal/refreceiver"
	"github.com/herald-dev/herald/internal/routing"
	"github.com/herald-dev/herald/internal/testenv"
)

const (
	ns     = "shop"
	secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

var loopback = outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true}

// receiver is a real HTTP server on 127.0.0.1 that records what arrives and answers
// with whatever its script says for the n-th request.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []received
	answer   func(n int, w http.ResponseWriter, r *http.Request)
	arrived  chan struct{}
}

type received struct {
	at     time.Time
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{answer: answer, arrived: make(chan struct{}, 100000)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.requests = append(rc.requests, received{at: time.Now(), header: r.Header.Clone(), body: body})
		n := len(rc.requests)
		rc.mu.Unlock()
		rc.arrived <- struct{}{}
		if rc.answer != nil {
			rc.answer(n, w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) got() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.requests...)
}

// waitFor waits until n requests have arrived.
func (rc *receiver) waitFor(t *testing.T, n int, within time.Duration) []received {
	t.Helper()
	deadline := time.After(within)
	for {
		if got := rc.got(); len(got) >= n {
			return got
		}
		select {
		case <-rc.arrived:
		case <-deadline:
			t.Fatalf("receiver %s: %d requests arrived within %s, want %d", rc.URL, len(rc.got()), within, n)
		}
	}
}

type harness struct {
	t      testing.TB
	dir    string
	store  queue.Store
	engine *delivery.Engine
	router *router.Table
	acc    *accept.Acceptor
	obs    *recordingObserver
}

func newHarness(t testing.TB, dir string, tune ...func(*delivery.Options)) *harness {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	return newHarnessOn(t, queue.Options{Store: config.Store{DataDir: dir}, History: config.History{AttemptLog: true}}, tune...)
}

// newHarnessOn is newHarness on the store o opens (embedded in o.DataDir, or on the
// NATS at o.URL).
func newHarnessOn(t testing.TB, o queue.Options, tune ...func(*delivery.Options)) *harness {
	t.Helper()
	ctx := context.Background()
	dir := o.DataDir
	o.Log = testr.NewWithInterface(t, testr.Options{})
	st, err := queue.Open(ctx, o)
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	h := &harness{t: t, dir: dir, store: st, router: router.NewTable(), obs: &recordingObserver{}}
	opts := delivery.Options{Store: st, Delivery: config.Delivery{AckWait: 3 * time.Second}, Observer: h.obs, Log: testr.NewWithInterface(t, testr.Options{})}
	for _, f := range tune {
		f(&opts)
	}
	h.engine = delivery.New(opts)
	// Accepting stamps the same clock the engine ages held deliveries by.
	h.acc = &accept.Acceptor{Store: st, Router: h.router, Lookup: h.engine.Lookup, Now: opts.Now}
	t.Cleanup(h.close)
	return h
}

func (h *harness) close() {
	if h.engine != nil {
		h.engine.Stop()
		h.engine = nil
	}
	if h.store != nil {
		h.store.Close()
		h.store = nil
	}
}

// crash stops everything without a graceful drain, as a killed process would.
func (h *harness) crash() {
	queuetest.Crash(h.store)
	h.engine.Stop()
	h.engine, h.store = nil, nil
}

type endpointOpts struct {
	style    heraldv1.SignatureStyle
	format   heraldv1.PayloadFormat
	schedule []time.Duration
	timeout  time.Duration
	inFlight int
	hold     string
	extra    map[string]string
	rps      int
	ordered  bool
	adaptive bool
}

func (h *harness) endpoint(name, url string, o endpointOpts) {
	h.t.Helper()
	if o.style == "" {
		o.style = heraldv1.SignatureStandardWebhooks
	}
	if o.timeout == 0 {
		o.timeout = 2 * time.Second
	}
	sg, err := signer.New(o.style, "X-Herald", []byte(secret), nil)
	if err != nil {
		h.t.Fatalf("building signer: %v", err)
	}
	target := sender.New(sender.Config{
		URL: url, Signer: sg, HeaderPrefix: "X-Herald", Format: o.format, ExtraFields: o.extra,
		Timeout: o.timeout, MaxInFlight: o.inFlight, Policy: loopback,
	})
	cfg := delivery.EndpointConfig{Target: target, Hold: o.hold,
		Settings: resolve.Settings{Schedule: o.schedule, MaxInFlight: o.inFlight, RequestsPerSecond: o.rps, Ordered: o.ordered,
			Adaptive: o.adaptive, MaxRetryAfter: time.Hour}}
	if o.hold != "" {
		cfg.Target = nil
	}
	h.engine.Upsert(key(name), cfg)
	h.router.Set(ns, router.Subscription{Name: "to-" + name, Endpoint: name, Patterns: []string{"*"}})
}

func (h *harness) publish(events ...ingest.Event) []ingest.Result {
	h.t.Helper()
	for i := range events {
		if events[i].CreatedAt.IsZero() {
			events[i].CreatedAt = time.Now().UTC()
		}
		if events[i].Data == nil {
			events[i].Data = json.RawMessage(`{"n":` + fmt.Sprint(i) + `}`)
		}
	}
	res, err := h.acc.Accept(context.Background(), ns, events)
	if err != nil {
		h.t.Fatalf("accept: %v", err)
	}
	return res
}

// settled waits until the store holds want deliveries of the endpoint (0: every
// delivery was attempted to its end and acknowledged). It is the positive signal that
// the engine has processed past a point, after which "nothing more arrived" is a fact.
func (h *harness) settled(endpoint string, want int64) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := h.store.PendingDeliveries(context.Background(), key(endpoint))
		if err == nil && n == want {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: %d deliveries pending (err %v) after 20s, want %d", endpoint, n, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deadLetters lists an endpoint's dead letters through the store's own API.
func (h *harness) deadLetters(endpoint string) []queue.DeadLetter {
	h.t.Helper()
	var out []queue.DeadLetter
	if err := h.store.DeadLetters(context.Background(), key(endpoint), func(dl *queue.DeadLetter) bool {
		out = append(out, *dl)
		return true
	}); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// key is the engine's key of a test endpoint: each name has its own object.
func key(name string) delivery.Key {
	return delivery.Key{Namespace: ns, Name: name, UID: "uid-" + name}
}

// nopProgress is a replay's progress reported to no status (there is no API server).
type nopProgress struct{}

func (nopProgress) ReplayProgress(context.Context, delivery.Key, heraldv1.ReplayStatus) error {
	return nil
}

type recordingObserver struct {
	mu       sync.Mutex
	attempts []delivery.Attempt
	dead     []queue.DeadLetter
}

func (o *recordingObserver) Attempted(a delivery.Attempt) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.attempts = append(o.attempts, a)
}

func (o *recordingObserver) DeadLettered(_ delivery.Key, dl *queue.DeadLetter) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dead = append(o.dead, *dl)
}

// verifyStandardWebhooks is written from the Standard Webhooks text, independently of
// the signer: HMAC-SHA256 keyed with the base64-decoded part after whsec_, over
// "{id}.{timestamp}.{body}".
func verifyStandardWebhooks(t *testing.T, r received) {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", r.header.Get("webhook-id"), r.header.Get("webhook-timestamp"), r.body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(r.header.Get("webhook-signature")) {
		if sig == want {
			return
		}
	}
	t.Fatalf("webhook-signature %q does not verify", r.header.Get("webhook-signature"))
}

func TestEngine_DeliversSignedEnvelopeWithDataByteForByte(t *testing.T) {
	h := newHarness(t, "")
	rc := newReceiver(t, nil)
	h.endpoint("billing", rc.URL, endpointOpts{extra: map[string]string{"environment": "test"}})
	data := json.RawMessage(`{"amount": 1200,  "currency":"EUR"}`)
	res := h.publish(ingest.Event{ID: "evt_1", Type: "invoice.paid", Data: data,
		CreatedAt: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)})
	if res[0].Matched != 1 || res[0].Duplicate {
		t.Fatalf("result = %+v, want matched 1", res[0])
	}
	got := rc.waitFor(t, 1, 10*time.Second)[0]
	verifyStandardWebhooks(t, got)
	wantBody := `{"id":"evt_1","type":"invoice.paid","created_at":"2026-11-23T10:00:00Z","data":{"amount": 1200,  "currency":"EUR"},"environment":"test"}`
	if string(got.body) != wantBody {
		t.Errorf("body = %s\nwant   %s", got.body, wantBody)
	}
	for k, want := range map[string]string{
		"webhook-id":                "evt_1",
		"X-Herald-Event-Id":         "evt_1",
		"X-Herald-Event-Type":       "invoice.paid",
		"X-Herald-Delivery-Attempt": "1",
		"Content-Type":              "application/json",
	} {
		if v := got.header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	if !strings.HasPrefix(got.header.Get("X-Herald-Delivery-Id"), "dlv_") {
		t.Errorf("delivery id = %q", got.header.Get("X-Herald-Delivery-Id"))
	}
	if !strings.HasPrefix(got.header.Get("User-Agent"), "herald-dispatcher/") {
		t.Errorf("user agent = %q", got.header.Get("User-Agent"))
	}
}

func TestEngine_CreatedAtAsTheProducerWroteItOrAsTheDocumentsDo(t *testing.T) {
	h := newHarness(t, "")
	rc := newReceiver(t, nil)
	h.endpoint("billing", rc.URL, endpointOpts{})
	h.publish(ingest.Event{ID: "evt_own", Type: "x", Data: json.RawMessage(`{}`),
		CreatedAt: time.Date(2026, 1, 2, 13, 4, 5, 123e6, time.UTC), CreatedAtText: "2026-01-02T15:04:05.123+02:00"})
	h.publish(ingest.Event{ID: "evt_stamped", Type: "x", Data: json.RawMessage(`{}`),
		CreatedAt: time.Date(2026, 11, 30, 15, 55, 2, 0, time.UTC)})
	got := rc.waitFor(t, 2, 10*time.Second)
	bodies := map[string]string{}
	for _, r := range got {
		bodies[r.header.Get("webhook-id")] = string(r.body)
	}
	for id, want := range map[string]string{
		"evt_own":     `"created_at":"2026-01-02T15:04:05.123+02:00"`, // byte for byte
		"evt_stamped": `"created_at":"2026-11-30T15:55:02Z"`,          // 2024-01-15T10:30:00Z style
	} {
		if !strings.Contains(bodies[id], want) {
			t.Errorf("%s: body %s, want %s", id, bodies[id], want)
		}
	}
}

func TestEngine_DataPayloadSendsDataAlone(t *testing.T) {
	h := newHarness(t, "")
	rc := newReceiver(t, nil)
	h.endpoint("raw", rc.URL, endpointOpts{format: heraldv1.PayloadData, style: heraldv1.SignatureTimestampedHex})
	h.publish(ingest.Event{ID: "evt_d", Type: "order.created", Data: json.RawMessage(`[1,2,3]`)})
	got := rc.waitFor(t, 1, 10*time.Second)[0]
	if string(got.body) != `[1,2,3]` {
		t.Errorf("body = %s", got.body)
	}
	if got.header.Get("X-Herald-Event") != "order.created" {
		t.Errorf("X-Herald-Event = %q", got.header.Get("X-Herald-Event"))
	}
	// Verified as reference 004's receiver does, with code that shares nothing with the
	// signer.
	event, ok := refreceiver.Praxis(secret, got.header, got.body, "X-Herald-Signature", "X-Herald-Timestamp", "X-Herald-Event", time.Now())
	if !ok || event != "order.created" {
		t.Errorf("the reference receiver refuses the delivery (event %q, ok %v): %v", event, ok, got.header)
	}
}

func TestEngine_DuplicateIDIsAcceptedOnceAndReturnsFirstResult(t *testing.T) {
	h := newHarness(t, "")
	rc := newReceiver(t, nil)
	h.endpoint("a", rc.URL, endpointOpts{})
	first := h.publish(ingest.Event{ID: "evt_same", Type: "x"})
	// A second subscription now also matches; the duplicate must still report the
	// first acceptance and deliver nothing new.
	h.router.Set(ns, router.Subscription{Name: "again", Endpoint: "a", Patterns: []string{"x"}})
	second := h.publish(ingest.Event{ID: "evt_same", Type: "x"}, ingest.Event{ID: "evt_same", Type: "x"})
	if first[0].Duplicate || !second[0].Duplicate || !second[1].Duplicate || second[0].Matched != first[0].Matched {
		t.Fatalf("first %+v, second %+v", first, second)
	}
	rc.waitFor(t, 1, 10*time.Second)
	h.settled("a", 0)
	if n := len(rc.got()); n != 1 {
		t.Fatalf("receiver got %d requests, want 1", n)
	}
}

func TestEngine_SeveralSubscriptionsToOneEndpointGiveOneDelivery(t *testing.T) {
	h := newHarness(t, "")
	rc := newReceiver(t, nil)
	other := newReceiver(t, nil)
	h.endpoint("a", rc.URL, endpointOpts{})
	h.endpoint("b", other.URL, endpointOpts{})
	h.router.Delete(ns, "to-b")
	h.router.Set(ns, router.Subscription{Name: "exact", Endpoint: "a", Patterns: []string{"approval.granted"}})
	h.router.Set(ns, router.Subscription{Name: "glob", Endpoint: "a", Patterns: []string{"approval.*"}})
	h.router.Set(ns, router.Subscription{Name: "b-other", Endpoint: "b", Patterns: []string{"invoice.*"}})
	res := h.publish(ingest.Event{ID: "evt_f", Type: "approval.granted"})
	if res[0].Matched != 1 {
		t.Fatalf("matched = %d, want 1", res[0].Matched)
	}
	rc.waitFor(t, 1, 10*time.Second)
	h.settled("a", 0)
	h.settled("b", 0)
	if n, m := len(rc.got()), len(other.got()); n != 1 || m != 0 {
		t.Fatalf("a got %d, b got %d; want 1 and 0", n, m)
	}
}

func TestEngine_RetriesOnScheduleThenDeadLetters(t *testing.T) {
	h := newHarness(t, "")
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	schedule := []time.Duration{100 * time.Millisecond, 300 * time.Millisecond}
	h.endpoint("failing", rc.URL, endpointOpts{schedule: schedule})
	h.publish(ingest.Event{ID: "evt_r", Type: "x"})
	got := rc.waitFor(t, 3, 15*time.Second)
	for i, want := range schedule {
		if gap := got[i+1].at.Sub(got[i].at); gap < want {
			t.Errorf("wait before attempt %d = %s, want at least %s", i+2, gap, want)
		}
		if a := got[i+1].header.Get("X-Herald-Delivery-Attempt"); a != fmt.Sprint(i+2) {
			t.Errorf("attempt header = %q, want %d", a, i+2)
		}
	}
	for _, r := range got {
		if r.header.Get("webhook-id") != "evt_r" || r.header.Get("X-Herald-Delivery-Id") != got[0].header.Get("X-Herald-Delivery-Id") {
			t.Errorf("every attempt must carry the same event and delivery id: %v", r.header)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(h.deadLetters("failing")) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	dls := h.deadLetters("failing")
	if len(dls) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(dls))
	}
	if r := dls[0].Reason; r != heraldv1.DeadLetterRetriesExhausted {
		t.Errorf("dead letter reason = %q", r)
	}
	if s := dls[0].StatusCode; s != 500 {
		t.Errorf("dead letter status = %d", s)
	}
	h.settled("failing", 0)
	if n := len(rc.got()); n != 3 {
		t.Errorf("attempts = %d, want exactly 3 (1 + 2 retries)", n)
	}
}

func TestEngine_HonoursRetryAfterOn429(t *testing.T) {
	h := newHarness(t, "")
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	h.endpoint("busy", rc.URL, endpointOpts{schedule: []time.Duration{10 * time.Millisecond}})
	h.publish(ingest.Event{ID: "evt_ra", Type: "x"})
	got := rc.waitFor(t, 2, 15*time.Second)
	if gap := got[1].at.Sub(got[0].at); gap < time.Second {
		t.Fatalf("retried after %s; Retry-After asked for 1s", gap)
	}
}

func TestEngine_TimeoutAndRedirectAreFailures(t *testing.T) {
	h := newHarness(t, "")
	target := newReceiver(t, nil)
	slow := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	redirecting := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusFound)
	})
	h.endpoint("slow", slow.URL, endpointOpts{timeout: 300 * time.Millisecond, schedule: []time.Duration{50 * time.Millisecond}})
	h.endpoint("redirecting", redirecting.URL, endpointOpts{schedule: []time.Duration{50 * time.Millisecond}})
	h.publish(ingest.Event{ID: "evt_t", Type: "x"})
	slow.waitFor(t, 2, 15*time.Second) // the timed-out attempt was retried
	redirecting.waitFor(t, 2, 15*time.Second)
	h.settled("redirecting", 0)
	if n := len(target.got()); n != 0 {
		t.Fatalf("redirect target received %d requests; redirects must not be followed", n)
	}
	h.obs.mu.Lock()
	defer h.obs.mu.Unlock()
	var sawTimeout, sawRedirect bool
	for _, a := range h.obs.attempts {
		if a.Outcome.Err != nil && strings.Contains(a.Outcome.Err.Error(), "timeout") {
			sawTimeout = true
		}
		if a.Outcome.StatusCode == http.StatusFound && a.Outcome.Err != nil {
			sawRedirect = true
		}
	}
	if !sawTimeout || !sawRedirect {
		t.Fatalf("observed attempts lack a timeout (%v) or a redirect failure (%v)", sawTimeout, sawRedirect)
	}
}

func TestEngine_DeadEndpointDoesNotDelayHealthyOne(t *testing.T) {
	h := newHarness(t, "")
	release := make(chan struct{})
	dead := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	healthy := newReceiver(t, nil)
	h.endpoint("dead", dead.URL, endpointOpts{timeout: 20 * time.Second, inFlight: 2, schedule: []time.Duration{time.Hour}})
	h.endpoint("healthy", healthy.URL, endpointOpts{inFlight: 4})
	const n = 300
	events := make([]ingest.Event, n)
	for i := range events {
		events[i] = ingest.Event{ID: fmt.Sprintf("evt_%d", i), Type: "x"}
	}
	h.publish(events...)
	healthy.waitFor(t, n, 60*time.Second)
	// While the healthy endpoint received everything, the dead one has been holding
	// only its own two workers.
	if got := len(dead.got()); got > 2 {
		t.Fatalf("dead endpoint received %d concurrent requests, want at most its maxInFlight 2", got)
	}
}

func TestEngine_HeldEndpointKeepsDeliveriesUntilReleased(t *testing.T) {
	h := newHarness(t, "")
	rc := newReceiver(t, nil)
	// One worker, so that dispatch order is arrival order.
	h.endpoint("paused", rc.URL, endpointOpts{hold: heraldv1.ReasonSuspended, inFlight: 1})
	res := h.publish(ingest.Event{ID: "evt_h1", Type: "x"}, ingest.Event{ID: "evt_h2", Type: "x"})
	if res[0].Matched != 1 {
		t.Fatalf("a held endpoint still receives routed events; matched = %d", res[0].Matched)
	}
	h.settled("paused", 2) // stored, and not taken
	if n := len(rc.got()); n != 0 {
		t.Fatalf("held endpoint received %d requests", n)
	}
	h.endpoint("paused", rc.URL, endpointOpts{inFlight: 1})
	got := rc.waitFor(t, 2, 10*time.Second)
	if got[0].header.Get("webhook-id") != "evt_h1" {
		t.Errorf("oldest first: got %q first", got[0].header.Get("webhook-id"))
	}
}

func TestEngine_RestartWithoutDrainLosesNothing(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir)
	// Every event's first attempt fails (so it waits for its retry), and a few of the
	// later ones hang so that they are in flight when the process dies.
	var mu sync.Mutex
	seen := map[string]int{}
	delivered := map[string]int{}
	hang := make(chan struct{})
	var hangOnce sync.Once
	var hanging atomic.Int32 // retries under way when the process dies
	handler := func(_ int, w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("webhook-id")
		mu.Lock()
		seen[id]++
		first := seen[id] == 1
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if strings.HasSuffix(id, "7") {
			hanging.Add(1)
			select {
			case <-hang:
			case <-r.Context().Done():
				return
			}
		}
		mu.Lock()
		delivered[id]++
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}
	rc := newReceiver(t, handler)
	schedule := []time.Duration{1500 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}
	h.endpoint("a", rc.URL, endpointOpts{schedule: schedule, inFlight: 4})
	const n = 40
	events := make([]ingest.Event, n)
	for i := range events {
		events[i] = ingest.Event{ID: fmt.Sprintf("evt_%02d", i), Type: "x"}
	}
	h.publish(events...)
	rc.waitFor(t, n, 20*time.Second) // every first attempt failed: all are in retry wait
	// The process dies with retries in flight: wait until one hangs in the receiver.
	testenv.Eventually(t, 20*time.Second, func() error {
		if hanging.Load() == 0 {
			return errors.New("no retry in flight yet")
		}
		return nil
	})
	mu.Lock()
	t.Logf("crash with %d retries in flight and %d of %d events delivered", hanging.Load(), len(delivered), n)
	mu.Unlock()
	h.crash()

	h2 := newHarness(t, dir)
	h2.endpoint("a", rc.URL, endpointOpts{schedule: schedule, inFlight: 4})
	hangOnce.Do(func() { close(hang) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		done := len(delivered)
		mu.Unlock()
		if done == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events delivered after restart", done, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, r := range rc.got() {
		if id := r.header.Get("webhook-id"); !strings.HasPrefix(id, "evt_") {
			t.Errorf("a request without a Herald event id: %q", id)
		}
	}
}

func TestEngine_ReplayedDeadLetterKeepsItsEventID(t *testing.T) {
	h := newHarness(t, "")
	var mu sync.Mutex
	healthy := false
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if !healthy {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	h.endpoint("flaky", rc.URL, endpointOpts{schedule: []time.Duration{20 * time.Millisecond}})
	h.publish(ingest.Event{ID: "evt_dead1", Type: "a.b"}, ingest.Event{ID: "evt_dead2", Type: "c.d"})
	ctx := context.Background()
	var dls []queue.DeadLetter
	deadline := time.Now().Add(15 * time.Second)
	for len(dls) < 2 && time.Now().Before(deadline) {
		dls = dls[:0]
		if err := h.store.DeadLetters(ctx, key("flaky"), func(dl *queue.DeadLetter) bool {
			dls = append(dls, *dl)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(dls) != 2 || dls[0].StatusCode != http.StatusBadGateway || dls[0].Attempt != 2 {
		t.Fatalf("dead letters = %+v", dls)
	}
	mu.Lock()
	healthy = true
	mu.Unlock()
	before := len(rc.got())
	// Dead-letter replay is one selection of the one replayer.
	rp := replay.New(replay.Options{Store: h.store, Progress: nopProgress{}, Log: testr.New(t)})
	defer rp.Stop()
	st, err := rp.Run(ctx, key("flaky"), replay.Request{ID: "r1", By: "test",
		Selection: replay.Selection{DeadLetters: true, EventType: "c.d"}})
	if err != nil || st.Resent != 1 {
		t.Fatalf("replay = %+v, %v; want 1 re-sent", st, err)
	}
	got := rc.waitFor(t, before+1, 10*time.Second)
	last := got[len(got)-1]
	if last.header.Get("webhook-id") != "evt_dead2" || last.header.Get("X-Herald-Delivery-Attempt") != "1" {
		t.Fatalf("replayed delivery headers: %v", last.header)
	}
	var left []string
	_ = h.store.DeadLetters(ctx, key("flaky"), func(dl *queue.DeadLetter) bool {
		left = append(left, dl.EventID)
		return true
	})
	if len(left) != 1 || left[0] != "evt_dead1" {
		t.Fatalf("dead letters left = %v, want [evt_dead1]", left)
	}
}

func TestEngine_HeldDeliveriesBeyondTheLimitsAreDeadLetteredNotDropped(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	h := newHarness(t, "", func(o *delivery.Options) {
		o.MaxHeld = 3
		o.MaxHeldAge = time.Hour
		o.HeldCheckInterval = 100 * time.Millisecond
		o.Now = clock
	})
	rc := newReceiver(t, nil)
	h.endpoint("parked", rc.URL, endpointOpts{hold: heraldv1.ReasonSuspended, inFlight: 1})
	for i := range 5 {
		h.publish(ingest.Event{ID: fmt.Sprintf("evt_%d", i), Type: "x"})
	}
	waitDead := func(n int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			h.obs.mu.Lock()
			got := len(h.obs.dead)
			h.obs.mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d dead letters within 15s, want %d", got, n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitDead(2)
	h.obs.mu.Lock()
	for i, dl := range h.obs.dead[:2] {
		if dl.EventID != fmt.Sprintf("evt_%d", i) || dl.Reason != heraldv1.DeadLetterHeldLimitExceeded {
			t.Errorf("dead letter %d = %s (%s), want the oldest with HeldLimitExceeded", i, dl.EventID, dl.Reason)
		}
	}
	h.obs.mu.Unlock()

	// Two hours later the three left are over the age limit too (and, three, within
	// the count limit, so only age applies); one published after that is not.
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	waitDead(5)
	h.publish(ingest.Event{ID: "evt_fresh", Type: "x"})
	h.settled("parked", 1)
	h.obs.mu.Lock()
	if len(h.obs.dead) != 5 {
		t.Errorf("%d dead letters, want 5", len(h.obs.dead))
	}
	for _, dl := range h.obs.dead[2:] {
		if dl.Reason != heraldv1.DeadLetterHeldTooLong || dl.EventID == "evt_fresh" {
			t.Errorf("dead letter %s (%s): want the aged ones with HeldTooLong", dl.EventID, dl.Reason)
		}
	}
	h.obs.mu.Unlock()

	// Nothing was dropped: the dead letters are stored, and the fresh one is delivered
	// on release.
	var stored int
	_ = h.store.DeadLetters(context.Background(), key("parked"), func(*queue.DeadLetter) bool { stored++; return true })
	if stored != 5 {
		t.Errorf("dead-letter store holds %d, want 5", stored)
	}
	h.endpoint("parked", rc.URL, endpointOpts{inFlight: 1})
	got := rc.waitFor(t, 1, 10*time.Second)
	if id := got[0].header.Get("webhook-id"); id != "evt_fresh" {
		t.Errorf("delivered %s, want evt_fresh", id)
	}
}

func TestAccept_QueueFullAndStoreUnavailableAreReportedForIngest(t *testing.T) {
	dir := t.TempDir()
	st, err := queue.Open(context.Background(), queue.Options{Store: config.Store{DataDir: dir, MaxPendingDeliveries: 3}})
	if err != nil {
		t.Fatal(err)
	}
	e := delivery.New(delivery.Options{Store: st})
	defer e.Stop()
	table := router.NewTable()
	acc := &accept.Acceptor{Store: st, Router: table, Lookup: e.Lookup}
	// A held endpoint: deliveries stay stored, so the stream fills up.
	e.Upsert(key("full"), delivery.EndpointConfig{Hold: heraldv1.ReasonSuspended})
	table.Set(ns, router.Subscription{Name: "s", Endpoint: "full", Patterns: []string{"*"}})
	ev := func(id string) []ingest.Event {
		return []ingest.Event{{ID: id, Type: "x", Data: json.RawMessage(`1`), CreatedAt: time.Now()}}
	}
	// The store's write probe holds one place in the delivery stream for an instant
	// every second: a request arriving then is refused one delivery early (seen 1 run
	// in 30-40). So: accepted until refused, refused as full, and no earlier than that.
	accepted := 0
	for i := range 4 {
		_, err := acc.Accept(context.Background(), ns, ev(fmt.Sprint("ok", i)))
		if err == nil {
			accepted++
			continue
		}
		if !errors.Is(err, ingest.ErrQueueFull) {
			t.Fatalf("event %d: %v, want it accepted or refused with ingest.ErrQueueFull (429)", i, err)
		}
		break
	}
	if accepted < 2 || accepted > 3 {
		t.Fatalf("%d events accepted under a bound of 3 deliveries, want 3 (2 when the probe held a place)", accepted)
	}
	st.Close()
	if _, err := acc.Accept(context.Background(), ns, ev("after-close")); !errors.Is(err, ingest.ErrUnavailable) {
		t.Fatalf("store closed: %v, want ingest.ErrUnavailable (503)", err)
	}
}

func TestEngine_CELFilterSelectsEvents(t *testing.T) {
	h := newHarness(t, "")
	rc := newReceiver(t, nil)
	h.endpoint("big", rc.URL, endpointOpts{})
	f, err := routing.CompileFilter("event.data.amount > 1000")
	if err != nil {
		t.Fatal(err)
	}
	h.router.Set(ns, router.Subscription{Name: "to-big", Endpoint: "big", Patterns: []string{"invoice.*"}, Filter: f})
	res := h.publish(
		ingest.Event{ID: "evt_small", Type: "invoice.paid", Data: json.RawMessage(`{"amount": 10}`)},
		ingest.Event{ID: "evt_big", Type: "invoice.paid", Data: json.RawMessage(`{"amount": 2500}`)},
		ingest.Event{ID: "evt_nodata", Type: "invoice.paid", Data: json.RawMessage(`{"other": true}`)},
	)
	if res[0].Matched != 0 || res[1].Matched != 1 || res[2].Matched != 0 {
		t.Fatalf("matched = %d %d %d, want 0 1 0", res[0].Matched, res[1].Matched, res[2].Matched)
	}
	got := rc.waitFor(t, 1, 10*time.Second)
	if got[0].header.Get("webhook-id") != "evt_big" {
		t.Fatalf("delivered %s", got[0].header.Get("webhook-id"))
	}
}

func TestEngine_RequestsPerSecondCapsTheRate(t *testing.T) {
	h := newHarness(t, "")
	rc := newReceiver(t, nil)
	h.endpoint("slowpoke", rc.URL, endpointOpts{inFlight: 8, rps: 20})
	events := make([]ingest.Event, 21)
	for i := range events {
		events[i] = ingest.Event{ID: fmt.Sprintf("evt_rate_%d", i), Type: "x"}
	}
	h.publish(events...)
	got := rc.waitFor(t, len(events), 20*time.Second)
	// A burst of 2 (a tenth of the rate), then one every 50ms: 19 waits at least.
	if span := got[len(got)-1].at.Sub(got[0].at); span < 19*50*time.Millisecond-50*time.Millisecond {
		t.Fatalf("21 deliveries at 20/s took %s; the limit was not applied", span)
	}
}

func TestAccept_BatchMixingSeenAndNewIDsDeduplicatesEach(t *testing.T) {
	h := newHarness(t, "")
	rc := newReceiver(t, nil)
	h.endpoint("a", rc.URL, endpointOpts{})
	h.publish(ingest.Event{ID: "evt_old1", Type: "x"}, ingest.Event{ID: "evt_old2", Type: "x"})
	// One request looks all of these up at once (a multi-subject direct get).
	res := h.publish(
		ingest.Event{ID: "evt_new1", Type: "x"},
		ingest.Event{ID: "evt_old2", Type: "x"},
		ingest.Event{ID: "evt_new2", Type: "x"},
		ingest.Event{ID: "evt_old1", Type: "x"},
	)
	want := []bool{false, true, false, true}
	for i, r := range res {
		if r.Duplicate != want[i] || r.Matched != 1 {
			t.Errorf("result %d (%s) = %+v, want duplicate %v, matched 1", i, r.ID, r, want[i])
		}
	}
	rc.waitFor(t, 4, 10*time.Second)
	h.settled("a", 0)
	if n := len(rc.got()); n != 4 {
		t.Fatalf("receiver got %d requests, want 4 (2 old + 2 new)", n)
	}
}

// TestEngine_AnEndpointCreatedAgainUnderItsNameGetsNoneOfTheOldOnesDeliveries: the
// engine holds one endpoint object per name. When the object of a name changes (deleted
// and created again before the watch looked), the old object's runner is retired and
// reported, and the new one, pointing elsewhere, is handed none of the old one's
// deliveries: they stay stored under the old UID for the reclaimer.
func TestEngine_AnEndpointCreatedAgainUnderItsNameGetsNoneOfTheOldOnesDeliveries(t *testing.T) {
	var mu sync.Mutex
	var retired []delivery.Key
	h := newHarness(t, "", func(o *delivery.Options) {
		o.Retired = func(k delivery.Key) {
			mu.Lock()
			defer mu.Unlock()
			retired = append(retired, k)
		}
	})
	rc := newReceiver(t, nil)
	// The old object holds its deliveries (suspended): they wait in the store.
	h.endpoint("billing", rc.URL, endpointOpts{hold: heraldv1.ReasonSuspended})
	h.publish(ingest.Event{ID: "evt_old_1", Type: "a"}, ingest.Event{ID: "evt_old_2", Type: "a"})
	h.settled("billing", 2)
	old := key("billing")

	// The new object of the name flows, to the same receiver.
	renewed := delivery.Key{Namespace: ns, Name: "billing", UID: "uid-billing-2"}
	target := sender.New(sender.Config{URL: rc.URL, Signer: mustSigner(t), Timeout: 2 * time.Second, Policy: loopback})
	h.engine.Upsert(renewed, delivery.EndpointConfig{Target: target, Settings: resolve.Settings{Schedule: []time.Duration{time.Second}}})
	mu.Lock()
	if len(retired) != 1 || retired[0] != old {
		t.Errorf("retired = %v, want the old object %v", retired, old)
	}
	mu.Unlock()
	if k, ok := h.engine.Lookup(ns, "billing"); !ok || k != renewed {
		t.Fatalf("Lookup = %v %v, want the new object", k, ok)
	}
	h.publish(ingest.Event{ID: "evt_new", Type: "a"})
	rc.waitFor(t, 1, 10*time.Second)
	// Long enough for the new runner to have taken anything it could.
	time.Sleep(time.Second)
	got := rc.got()
	if len(got) != 1 || got[0].header.Get("webhook-id") != "evt_new" {
		var ids []string
		for _, r := range got {
			ids = append(ids, r.header.Get("webhook-id"))
		}
		t.Errorf("the receiver got %v, want only evt_new", ids)
	}
	if n, err := h.store.PendingDeliveries(context.Background(), old); err != nil || n != 2 {
		t.Errorf("the old object's deliveries: %d (%v), want the 2 still stored for the reclaimer", n, err)
	}
	// Removing the name with the old UID does nothing to the new object.
	h.engine.Remove(old)
	if _, ok := h.engine.Config(renewed); !ok {
		t.Error("removing the old object removed the new one")
	}
}

func mustSigner(t *testing.T) *signer.Signer {
	t.Helper()
	sg, err := signer.New(heraldv1.SignatureStandardWebhooks, "X-Herald", []byte(secret), nil)
	if err != nil {
		t.Fatal(err)
	}
	return sg
}
