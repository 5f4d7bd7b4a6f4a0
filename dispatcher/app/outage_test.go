package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/internal/testenv"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func readyz(addr string) int {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// readiness is /readyz sampled every 50ms for the rest of a test.
type readiness struct {
	mu      sync.Mutex
	at      []time.Time
	ready   []bool
	stopped chan struct{}
}

func watchReadyz(t *testing.T, addr string) *readiness {
	r := &readiness{stopped: make(chan struct{})}
	done := make(chan struct{})
	t.Cleanup(func() { close(r.stopped); <-done })
	go func() {
		defer close(done)
		for {
			ok := readyz(addr) == http.StatusOK
			r.mu.Lock()
			r.at, r.ready = append(r.at, time.Now()), append(r.ready, ok)
			r.mu.Unlock()
			select {
			case <-r.stopped:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return r
}

// unreadyThroughout reports whether every sample in [from, to] said unready, and there
// were enough of them to say so.
func (r *readiness) unreadyThroughout(from, to time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for i, at := range r.at {
		if at.Before(from) || at.After(to) {
			continue
		}
		if r.ready[i] {
			return false
		}
		n++
	}
	return n >= 3
}

// unreadyFor says why /readyz has not been unready for the last d.
func (r *readiness) unreadyFor(d time.Duration) error {
	now := time.Now()
	if !r.unreadyThroughout(now.Add(-d), now) {
		return fmt.Errorf("/readyz not unready for the last %s with 2 of 3 NATS nodes down", d)
	}
	return nil
}

// rawPublish posts one event and returns the answer as it is.
func (d *dispatcher) rawPublish(ns, id string) (*http.Response, []byte) {
	d.t.Helper()
	body, _ := json.Marshal(map[string]any{"id": id, "type": "order.created", "data": map[string]any{"n": 1}})
	req, _ := http.NewRequest(http.MethodPost, d.url+"/v1/namespaces/"+ns+"/events", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey(d.t, ns))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

// Observed on 907df01 against a 3-node cluster that lost the stream's quorum: ingest
// answered 500 {"code":"internal"} and /readyz stayed ok, so the Service kept sending
// producers there. Now: /readyz fails within seconds, ingest answers 503 with
// Retry-After, deliveries wait (no attempt while the store is down, none counted as
// the receiver's failure), and everything recovers by itself when the quorum is back.
func TestDispatcher_StoreOutage(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "outage"
	var mu sync.Mutex
	var received []time.Time
	s := newSink(t)
	inner := s.Config.Handler
	s.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received = append(received, time.Now())
		mu.Unlock()
		inner.ServeHTTP(w, r)
	})
	// Two requests a second: deliveries are still waiting in the dispatcher when the
	// quorum goes.
	fixture(t, c, ns, "paced", heraldv1.WebhookEndpointSpec{URL: s.URL, Timeout: "2s", Limits: heraldv1.DeliveryLimits{RequestsPerSecond: ptr.To[int32](2)}})
	cluster := testenv.NATSCluster(t, 3)
	health := freeAddr(t)
	d := startDispatcherWith(t, func(o *app.Options) {
		o.Config.Store, o.Config.Serving.HealthProbeBindAddress = config.Store{URL: cluster.URL()}, health
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		if code := readyz(health); code != http.StatusOK {
			return fmt.Errorf("/readyz %d", code)
		}
		return nil
	})
	const n = 30
	for i := range n {
		d.publish(ns, fmt.Sprintf("evt_o%d", i), "order.created")
	}
	s.waitEvent(t, "evt_o1", 30*time.Second)

	rz := watchReadyz(t, health)
	cluster.Stop(0)
	cluster.Stop(1)
	// A stretch of outage to look at, as the dispatcher sees it. Its first verdict may
	// flap: a write can still commit while the second node is shutting down.
	testenv.Eventually(t, 30*time.Second, func() error { return rz.unreadyFor(3 * time.Second) })
	resp, raw := d.rawPublish(ns, "evt_during")
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(raw, &body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || body.Error.Code != "unavailable" {
		t.Errorf("publishing while the store is down: %d Retry-After=%q %s; want 503 with Retry-After, code unavailable",
			resp.StatusCode, resp.Header.Get("Retry-After"), raw)
	}

	cluster.Start(0)
	cluster.Start(1)
	testenv.Eventually(t, 60*time.Second, func() error {
		if code := readyz(health); code != http.StatusOK {
			return fmt.Errorf("/readyz %d after the quorum came back", code)
		}
		return nil
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		if resp, raw := d.rawPublish(ns, "evt_after"); resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("publishing after recovery: %d %s", resp.StatusCode, raw)
		}
		return nil
	})
	for i := range n {
		s.waitEvent(t, fmt.Sprintf("evt_o%d", i), 60*time.Second)
	}
	s.waitEvent(t, "evt_after", 30*time.Second)

	// No attempt starts while the dispatcher knows the store is down. Finding out takes
	// up to a probe interval and timeout after the fault (an attempt may pass the gate
	// just before), so what is checked is the dispatcher's own verdict: an attempt must
	// not reach the receiver amid /readyz saying unready, from a second before it (one
	// that passed the gate just before the verdict) to half a second after (the first
	// attempt after the recovery may arrive before the next sample).
	mu.Lock()
	for _, at := range received {
		if rz.unreadyThroughout(at.Add(-time.Second), at.Add(time.Second/2)) {
			t.Errorf("an attempt reached the receiver at %s, amid /readyz saying unready", at.Format(time.StampMilli))
		}
	}
	// The rate limit holds across the recovery: no burst of the workers that waited.
	for i := 4; i < len(received); i++ {
		if d := received[i].Sub(received[i-4]); d < time.Second {
			t.Errorf("5 attempts within %s around %s; the endpoint allows 2 a second", d, received[i].Format(time.StampMilli))
			break
		}
	}
	mu.Unlock()
	ep := waitEndpoint(t, c, ns, "paced", "every delivery counted", func(e *heraldv1.WebhookEndpoint) bool {
		return e.Status.Counters != nil && e.Status.Counters.Delivered >= n+1
	})
	if ep.Status.Counters.FailedAttempts != 0 || ep.Status.ConsecutiveFailures != 0 {
		t.Errorf("the store's outage was counted against the receiver: failedAttempts %d, consecutiveFailures %d",
			ep.Status.Counters.FailedAttempts, ep.Status.ConsecutiveFailures)
	}
}
