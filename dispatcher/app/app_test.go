package app_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/internal/outbound"
	"github.com/herald-dev/herald/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	if mode := os.Getenv(envMemoryChild); mode != "" {
		os.Exit(memoryChild(mode))
	}
	var err error
	env, err = testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

type sink struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
	body [][]byte
	ch   chan struct{}
}

func newSink(t testing.TB) *sink {
	s := &sink{ch: make(chan struct{}, 1000)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, r)
		s.body = append(s.body, b)
		s.mu.Unlock()
		s.ch <- struct{}{}
	}))
	t.Cleanup(s.Close)
	return s
}

// next waits for the next request carrying event id.
func (s *sink) waitEvent(t testing.TB, id string, within time.Duration) (*http.Request, []byte) {
	t.Helper()
	deadline := time.After(within)
	for {
		s.mu.Lock()
		for i, r := range s.reqs {
			if r.Header.Get("webhook-id") == id {
				b := s.body[i]
				s.mu.Unlock()
				return r, b
			}
		}
		s.mu.Unlock()
		select {
		case <-s.ch:
		case <-deadline:
			t.Fatalf("event %s did not arrive within %s", id, within)
		}
	}
}

func (s *sink) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.reqs {
		if r.Header.Get("webhook-id") == id {
			return true
		}
	}
	return false
}

// signatures returns which of the given secrets produced a signature of the request,
// written from the Standard Webhooks text independently of the signer.
func signedWith(r *http.Request, body []byte, secrets ...string) []bool {
	out := make([]bool, len(secrets))
	sigs := strings.Fields(r.Header.Get("webhook-signature"))
	for i, sec := range secrets {
		key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sec, "whsec_"))
		mac := hmac.New(sha256.New, key)
		fmt.Fprintf(mac, "%s.%s.%s", r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), body)
		want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
		for _, s := range sigs {
			out[i] = out[i] || s == want
		}
	}
	return out
}

const (
	secretV1 = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secretV2 = "whsec_c2Vjb25kLXNlY3JldC1vZi10aGlydHktdHdvIQ=="
)

type dispatcher struct {
	t      testing.TB
	url    string
	cancel context.CancelFunc
	// done is closed when the dispatcher has stopped, with err.
	done chan struct{}
	err  error
}

// stop stops the dispatcher as a shutdown does, and waits for it.
func (d *dispatcher) stop() {
	d.t.Helper()
	d.cancel()
	select {
	case <-d.done:
		if d.err != nil {
			d.t.Fatalf("dispatcher stopped with %v", d.err)
		}
	case <-time.After(30 * time.Second):
		d.t.Fatal("dispatcher did not stop within 30s")
	}
}

func startDispatcher(t testing.TB) *dispatcher {
	t.Helper()
	return startDispatcherOn(t, config.Store{DataDir: t.TempDir()})
}

func startDispatcherOn(t testing.TB, store config.Store) *dispatcher {
	t.Helper()
	return startDispatcherWith(t, func(o *app.Options) { o.Config.Store = store })
}

// startDispatcherWith starts a dispatcher with the tests' options, changed by mutate.
func startDispatcherWith(t testing.TB, mutate func(*app.Options)) *dispatcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	d := &dispatcher{t: t, cancel: cancel, done: make(chan struct{})}
	log := testr.NewWithInterface(t, testr.Options{})
	conf := config.Default()
	conf.Store.DataDir = t.TempDir()
	conf.Serving = config.Serving{IngestBindAddress: "127.0.0.1:0", HealthProbeBindAddress: "0", MetricsBindAddress: "0"}
	conf.Outbound = outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true}
	conf.Delivery.AckWait, conf.Status.Interval = 5*time.Second, 200*time.Millisecond
	opts := app.Options{
		Config: conf,
		// Producers authenticate with a real API key Secret (see publish).
		Authorizer:       app.ClusterAuthorizer(app.AuthOptions{Auth: config.Auth{APIKeys: true}, Log: log}),
		AdminAuthorizers: app.ClusterAdminAuthorizers(app.AuthOptions{Log: log}),
		Log:              log,
		Ready:            ready,
	}
	mutate(&opts)
	go func() {
		d.err = app.Run(ctx, env.Config, opts)
		close(d.done)
	}()
	select {
	case addr := <-ready:
		d.url = "http://" + addr
	case <-d.done:
		t.Fatalf("dispatcher stopped: %v", d.err)
	case <-time.After(60 * time.Second):
		t.Fatal("dispatcher did not open ingest within 60s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			t.Error("dispatcher did not stop within 30s")
		}
	})
	return d
}

func (d *dispatcher) publish(ns, id, typ string) int {
	d.t.Helper()
	body, _ := json.Marshal(map[string]any{"id": id, "type": typ, "data": map[string]any{"n": 1}})
	req, _ := http.NewRequest(http.MethodPost, d.url+"/v1/namespaces/"+ns+"/events", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey(d.t, ns))
	var resp *http.Response
	var err error
	// The key Secret reaches the dispatcher's watch within moments of its creation.
	for range 50 {
		req.Body = io.NopCloser(bytes.NewReader(body))
		if resp, err = http.DefaultClient.Do(req); err != nil {
			d.t.Fatal(err)
		}
		if resp.StatusCode != http.StatusUnauthorized {
			break
		}
		resp.Body.Close()
		time.Sleep(100 * time.Millisecond)
	}
	defer resp.Body.Close()
	var res struct {
		Matched int `json:"matched"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		d.t.Fatalf("publish %s: %d %s", id, resp.StatusCode, raw)
	}
	_ = json.Unmarshal(raw, &res)
	return res.Matched
}

func mustCreate(t testing.TB, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func update[T client.Object](t *testing.T, c client.Client, obj T, mutate func(T)) {
	t.Helper()
	ctx := context.Background()
	for range 5 {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatal(err)
		}
		mutate(obj)
		if err := c.Update(ctx, obj); err == nil {
			return
		}
	}
	t.Fatalf("updating %s failed repeatedly", obj.GetName())
}

// eventually publishes fresh events until check accepts a delivery of one of them.
func eventually(t *testing.T, d *dispatcher, s *sink, ns, what string, check func(r *http.Request, body []byte) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		id := fmt.Sprintf("evt_%s_%d", strings.ReplaceAll(what, " ", "_"), i)
		d.publish(ns, id, "invoice.paid")
		r, b := s.waitEvent(t, id, 10*time.Second)
		if check(r, b) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not in effect within 20s", what)
}

func TestDispatcher_FollowsEndpointSecretAndSubscriptionChanges(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "acme"
	s := newSink(t)
	mustCreate(t, c,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "billing-signing", Namespace: ns}, StringData: map[string]string{"secret": secretV1}},
		&heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "billing", Namespace: ns}, Spec: heraldv1.WebhookEndpointSpec{
			URL: s.URL, Timeout: "2s", Retry: heraldv1.RetrySpec{Schedule: []string{"100ms"}},
		}},
		&heraldv1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: "invoices", Namespace: ns}, Spec: heraldv1.WebhookSubscriptionSpec{
			EndpointRef: heraldv1.LocalObjectReference{Name: "billing"}, EventTypes: []string{"invoice.*"},
		}},
	)
	d := startDispatcher(t)

	// Configuration that existed before the dispatcher started is in effect at once.
	if m := d.publish(ns, "evt_first", "invoice.paid"); m != 1 {
		t.Fatalf("matched = %d, want 1", m)
	}
	r, b := s.waitEvent(t, "evt_first", 10*time.Second)
	if got := signedWith(r, b, secretV1); !got[0] {
		t.Fatal("first delivery is not signed with the endpoint's secret")
	}
	if m := d.publish(ns, "evt_other_type", "order.created"); m != 0 {
		t.Fatalf("an event type no subscription matches was routed to %d endpoints", m)
	}

	// Rotation: the old secret moves to previousSecretRef and the Secret gets the new
	// value. Deliveries carry both signatures, and none is dropped on the way: events
	// published before, between and after the two changes all arrive, each verifiable
	// with a secret the receiver holds.
	var across []string
	publishAcross := func(phase string) {
		for i := range 5 {
			id := fmt.Sprintf("evt_rotation_%s_%d", phase, i)
			d.publish(ns, id, "invoice.paid")
			across = append(across, id)
		}
	}
	publishAcross("before")
	mustCreate(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "billing-signing-old", Namespace: ns}, StringData: map[string]string{"secret": secretV1}})
	ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "billing", Namespace: ns}}
	update(t, c, ep, func(e *heraldv1.WebhookEndpoint) {
		e.Spec.PreviousSecretRef = &heraldv1.SecretKeySelector{Name: "billing-signing-old", Key: "secret"}
	})
	publishAcross("between")
	update(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "billing-signing", Namespace: ns}}, func(s *corev1.Secret) {
		s.Data = map[string][]byte{"secret": []byte(secretV2)}
	})
	publishAcross("after")
	for _, id := range across {
		r, b := s.waitEvent(t, id, 20*time.Second)
		if got := signedWith(r, b, secretV1, secretV2); !got[0] && !got[1] {
			t.Errorf("%s arrived with a signature no secret verifies", id)
		}
	}
	eventually(t, d, s, ns, "rotation", func(r *http.Request, b []byte) bool {
		got := signedWith(r, b, secretV2, secretV1)
		return got[0] && got[1]
	})

	// Suspend holds deliveries; resuming delivers what was held.
	update(t, c, ep, func(e *heraldv1.WebhookEndpoint) { e.Spec.Suspend = true })
	waitHeld(t, c, d, s, ns, "billing", heraldv1.ReasonSuspended, "evt_while_suspended")
	update(t, c, ep, func(e *heraldv1.WebhookEndpoint) { e.Spec.Suspend = false })
	s.waitEvent(t, "evt_while_suspended", 20*time.Second)

	// A deleted Secret holds deliveries; restoring it delivers them.
	if err := c.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "billing-signing", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, c, d, s, ns, "billing", heraldv1.ReasonSecretNotFound, "evt_while_secret_missing")
	mustCreate(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "billing-signing", Namespace: ns}, StringData: map[string]string{"secret": secretV2}})
	r, b = s.waitEvent(t, "evt_while_secret_missing", 20*time.Second)
	if got := signedWith(r, b, secretV2); !got[0] {
		t.Fatal("delivery after the Secret was restored is not signed with the restored secret")
	}

	// A deleted subscription routes nothing.
	if err := c.Delete(context.Background(), &heraldv1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: "invoices", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; d.publish(ns, fmt.Sprintf("evt_after_delete_%d", i), "invoice.paid") != 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("a deleted subscription still routes events after 20s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitHeld waits until the dispatcher says on the resource that it holds the
// endpoint's deliveries for reason, publishes id, and waits until the status counts it
// pending (the dispatcher stored it and holds it): only then is its absence at the
// receiver a fact rather than a race.
func waitHeld(t *testing.T, c client.Client, d *dispatcher, s *sink, ns, endpoint, reason, id string) {
	t.Helper()
	waitDelivering(t, c, ns, endpoint, metav1.ConditionFalse, reason)
	d.publish(ns, id, "invoice.paid")
	waitEndpoint(t, c, ns, endpoint, "a pending delivery", func(ep *heraldv1.WebhookEndpoint) bool {
		return ep.Status.Counters != nil && ep.Status.Counters.Pending >= 1
	})
	if s.has(id) {
		t.Fatalf("%s was delivered while the endpoint was held (%s)", id, reason)
	}
}

// waitDelivering waits for the dispatcher's Delivering condition on the current
// generation.
func waitDelivering(t *testing.T, c client.Client, ns, endpoint string, status metav1.ConditionStatus, reason string) *heraldv1.WebhookEndpoint {
	t.Helper()
	return waitEndpoint(t, c, ns, endpoint, fmt.Sprintf("Delivering=%s %s", status, reason), func(ep *heraldv1.WebhookEndpoint) bool {
		cond := meta.FindStatusCondition(ep.Status.Conditions, heraldv1.ConditionDelivering)
		return cond != nil && cond.Status == status && cond.Reason == reason && cond.ObservedGeneration == ep.Generation
	})
}

var (
	keysMu sync.Mutex
	keys   = map[string]string{}
)

// apiKey returns the namespace's API key, creating its Secret on first use.
func apiKey(t testing.TB, ns string) string {
	t.Helper()
	keysMu.Lock()
	defer keysMu.Unlock()
	if k, ok := keys[ns]; ok {
		return k
	}
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	k := auth.NewAPIKey()
	mustCreate(t, c, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "producer-key", Namespace: ns, Labels: map[string]string{auth.APIKeyLabel: "true"}},
		StringData: map[string]string{auth.APIKeyDataKey: k},
	})
	keys[ns] = k
	return k
}

// fixture creates a namespace with one endpoint (its signing Secret holding secretV1)
// and a subscription "all" routing every event type to it.
func fixture(t *testing.T, c client.Client, ns, endpoint string, spec heraldv1.WebhookEndpointSpec) {
	t.Helper()
	mustCreate(t, c,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: endpoint + "-signing", Namespace: ns}, StringData: map[string]string{"secret": secretV1}},
		&heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: endpoint, Namespace: ns}, Spec: spec},
		&heraldv1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: "all", Namespace: ns}, Spec: heraldv1.WebhookSubscriptionSpec{
			EndpointRef: heraldv1.LocalObjectReference{Name: endpoint}, EventTypes: []string{"*"},
		}},
	)
}
