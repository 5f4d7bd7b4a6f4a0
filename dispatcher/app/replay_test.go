package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"net/http/httptest"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/pkg/wire"
)

// clock is the dispatcher's clock in these tests: events are accepted at the times it
// says, so a window of hours is published in seconds.
type clock struct{ at atomic.Int64 }

func (c *clock) set(t time.Time) { c.at.Store(t.UnixNano()) }
func (c *clock) now() time.Time  { return time.Unix(0, c.at.Load()) }

// counter is a receiver that answers each request with what answer says and counts,
// per event id, the requests it answered 2xx.
type counter struct {
	mu     sync.Mutex
	ok     map[string]int
	answer func(id string, attempt string) int
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("webhook-id")
	code := c.answer(id, r.Header.Get("X-Herald-Delivery-Attempt"))
	if code < 300 {
		c.mu.Lock()
		c.ok[id]++
		c.mu.Unlock()
	}
	w.Header().Set("X-Request-Id", "req-"+id)
	w.WriteHeader(code)
	if code >= 300 {
		fmt.Fprintf(w, "overloaded, try later (%s)", id)
	}
}

func (c *counter) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ok[id]
}

func (c *counter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.ok))
	for k, v := range c.ok {
		out[k] = v
	}
	return out
}

func newSinkWith(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// TestDispatcher_ReplaysTwoHourWindowAfterOutage: an endpoint's receiver fails every
// other request for two hours (by the dispatcher's clock), so the window holds dead
// letters and delivered events alike; a replay of that window (since, until) from both sources delivers
// every event of the window once more, and none outside it (before or after), with its progress on
// status.replay and a Normal Event at the end.
func TestDispatcher_ReplaysTwoHourWindowAfterOutage(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "replaywindow"
	rcv := &counter{ok: map[string]int{}}
	var outage atomic.Bool
	rcv.answer = func(id, _ string) int {
		// During the outage the events with an odd number fail: the window then has
		// dead letters and delivered (retained) events.
		if outage.Load() && strings.HasSuffix(id, "_odd") {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	srv := newSinkWith(t, rcv)
	fixture(t, c, ns, "billing", heraldv1.WebhookEndpointSpec{
		URL: srv.URL, Timeout: "2s",
		Retry:       heraldv1.RetrySpec{Schedule: []string{"10ms"}, JitterPercent: ptr.To[int32](0)},
		AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To[int32](0)},
	})
	operator := serviceAccountToken(t, c, ns, "operator", "get", "replay")
	clk := &clock{}
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	clk.set(end.Add(-3 * time.Hour))
	d := startDispatcherWith(t, func(o *app.Options) {
		o.Now = clk.now
		// Paced (2.4s for the window) so that the progress, written every second, is seen
		// moving on status.
		o.Config.History.ReplayRate = 10
	})

	// An hour before the window, all delivered; then two hours of outage at one event
	// every five minutes; then the receiver is back.
	var before, window []string
	for i := range 6 {
		clk.set(end.Add(-3*time.Hour + time.Duration(i)*10*time.Minute))
		id := fmt.Sprintf("evt_before_%d", i)
		d.publish(ns, id, "invoice.paid")
		before = append(before, id)
	}
	outage.Store(true)
	for i := range 24 {
		clk.set(end.Add(-2*time.Hour + time.Duration(i)*5*time.Minute))
		id := fmt.Sprintf("evt_window_%02d_even", i)
		if i%2 == 1 {
			id = fmt.Sprintf("evt_window_%02d_odd", i)
		}
		d.publish(ns, id, "invoice.paid")
		window = append(window, id)
	}
	waitEndpoint(t, c, ns, "billing", "the outage's dead letters", func(ep *heraldv1.WebhookEndpoint) bool {
		k := ep.Status.Counters
		return k != nil && k.DeadLettered == 12 && k.Delivered == 18 && k.Pending == 0
	})
	// After the window (the receiver is back), three more: not selected.
	var after []string
	outage.Store(false)
	for i := range 3 {
		clk.set(end.Add(time.Duration(i) * 5 * time.Minute))
		id := fmt.Sprintf("evt_after_%d", i)
		d.publish(ns, id, "invoice.paid")
		after = append(after, id)
	}
	clk.set(end.Add(20 * time.Minute))
	// Now 6 + 12 + 3 delivered, 12 dead letters.
	waitEndpoint(t, c, ns, "billing", "the window's deliveries settled", func(ep *heraldv1.WebhookEndpoint) bool {
		k := ep.Status.Counters
		return k != nil && k.DeadLettered == 12 && k.Delivered == 21 && k.Pending == 0
	})
	sent := rcv.snapshot()

	base := d.url + "/v1/namespaces/" + ns + "/endpoints/billing"
	code, raw := call(t, http.MethodPost, base+"/replays", operator,
		wire.ReplaySelectionRequest{Since: end.Add(-2 * time.Hour).Format(time.RFC3339), Until: end.Format(time.RFC3339), From: []string{"dead-letters", "delivered"}})
	if code != http.StatusAccepted {
		t.Fatalf("replay = %d %s", code, raw)
	}
	var started wire.ReplayStarted
	if err := json.Unmarshal(raw, &started); err != nil || started.Selected != 24 {
		t.Fatalf("replay answered %s (%v), want 24 selected", raw, err)
	}
	if want := "since=" + end.Add(-2*time.Hour).UTC().Format(time.RFC3339); !strings.Contains(started.Selection, want) {
		t.Errorf("selection = %q, want it to say %s", started.Selection, want)
	}

	// The progress, as status shows it, until it is complete.
	var seen []heraldv1.ReplayStatus
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ep heraldv1.WebhookEndpoint
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "billing"}, &ep); err != nil {
			t.Fatal(err)
		}
		if r := ep.Status.Replay; r != nil && r.ID == started.ID {
			if len(seen) == 0 || seen[len(seen)-1].Remaining != r.Remaining || seen[len(seen)-1].State != r.State {
				seen = append(seen, *r)
			}
			if r.State != heraldv1.ReplayRunning {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replay not done within 60s; seen %+v", seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
	last := seen[len(seen)-1]
	if last.State != heraldv1.ReplayComplete || last.Selected != 24 || last.Resent != 24 || last.Remaining != 0 || last.CompletionTime == nil {
		t.Errorf("final progress = %+v", last)
	}
	running := 0
	for _, p := range seen {
		if p.Selected != p.Resent+p.Remaining {
			t.Errorf("progress %+v: selected != re-sent + remaining", p)
		}
		if p.State == heraldv1.ReplayRunning && p.Remaining > 0 && p.Remaining < 24 {
			running++
		}
	}
	if running == 0 {
		t.Errorf("no progress under way was seen on status: %+v", seen)
	}
	waitEvent(t, c, ns, heraldv1.EventReplayCompleted, "re-sent 24 of 24")

	// Every event of the window arrives once more; none from before it.
	deadline = time.Now().Add(30 * time.Second)
	for _, id := range window {
		for rcv.count(id) == sent[id] {
			if time.Now().After(deadline) {
				t.Fatalf("%s was not re-sent within 30s", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitEndpoint(t, c, ns, "billing", "the replay's deliveries settled", func(ep *heraldv1.WebhookEndpoint) bool {
		k := ep.Status.Counters
		return k != nil && k.Delivered == 21+24 && k.Pending == 0
	})
	for _, id := range window {
		if got := rcv.count(id) - sent[id]; got != 1 {
			t.Errorf("%s received %d times by the replay, want once", id, got)
		}
	}
	for _, id := range append(before, after...) {
		if got := rcv.count(id) - sent[id]; got != 0 {
			t.Errorf("%s (outside the window) received %d times by the replay, want none", id, got)
		}
	}
	// The dead letters went with the replay.
	_, raw = call(t, http.MethodGet, base+"/dead-letters", operator, nil)
	var dl wire.DeadLetterList
	if err := json.Unmarshal(raw, &dl); err != nil || len(dl.Items) != 0 {
		t.Errorf("dead letters after the replay: %s", raw)
	}
}

// TestDispatcher_AttemptLogOfFailedThenDeliveredEvent: an event answered 503 twice and
// then 200 has three attempts in the log, each with its status and the receiver's
// request id, read through the endpoint API by someone who may read dead letters; the
// start of the failed answers' bodies (the endpoint asks for them, OnFailure) only by
// someone who may also get webhookendpoints/responses, the others being told they were
// withheld; nothing Herald sent (signature, secret) is stored. The replay annotation
// with a selection re-sends it from the retained deliveries.
func TestDispatcher_AttemptLogOfFailedThenDeliveredEvent(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "attemptlog"
	rcv := &counter{ok: map[string]int{}}
	rcv.answer = func(id, attempt string) int {
		if id == "evt_flaky" && (attempt == "1" || attempt == "2") {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	srv := newSinkWith(t, rcv)
	fixture(t, c, ns, "billing", heraldv1.WebhookEndpointSpec{
		URL: srv.URL, Timeout: "2s",
		Retry:      heraldv1.RetrySpec{Schedule: []string{"10ms", "10ms", "10ms"}, JitterPercent: ptr.To[int32](0)},
		AttemptLog: heraldv1.AttemptLogSpec{ResponseBody: heraldv1.ResponseBodyOnFailure},
	})
	reader := serviceAccountToken(t, c, ns, "reader", "get")
	mustCreate(t, c, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "responses", Namespace: ns}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{heraldv1.GroupVersion.Group}, Resources: []string{"webhookendpoints/responses"}, Verbs: []string{"get"},
	}}}, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "reader-responses", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "responses"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "reader", Namespace: ns}}})
	viewer := serviceAccountToken(t, c, ns, "viewer", "get")
	stranger := serviceAccountToken(t, c, ns, "stranger")
	d := startDispatcher(t)
	d.publish(ns, "evt_flaky", "invoice.paid")
	d.publish(ns, "evt_fine", "invoice.paid")

	var h wire.EventHistory
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, raw := call(t, http.MethodGet, d.url+"/v1/namespaces/"+ns+"/events/evt_flaky", reader, nil)
		if code == http.StatusOK {
			if err := json.Unmarshal(raw, &h); err != nil {
				t.Fatal(err)
			}
			if len(h.Deliveries) == 1 && h.Deliveries[0].State == "Delivered" && len(h.Deliveries[0].Attempts) == 3 {
				if strings.Contains(string(raw), "webhook-signature") || strings.Contains(string(raw), strings.TrimPrefix(secretV1, "whsec_")) {
					t.Errorf("the history holds what Herald sent: %s", raw)
				}
				break
			}
		} else if code != http.StatusNotFound {
			t.Fatalf("events get = %d %s", code, raw)
		}
		if time.Now().After(deadline) {
			t.Fatalf("history of evt_flaky within 30s: %d %s", code, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	dv := h.Deliveries[0]
	if dv.Endpoint != "billing" || h.EventType != "invoice.paid" || dv.DeliveredAt == nil || h.BodiesWithheld != "" {
		t.Errorf("history = %+v", h)
	}
	for i, a := range dv.Attempts {
		wantCode, failed := http.StatusServiceUnavailable, true
		if i == 2 {
			wantCode, failed = http.StatusOK, false
		}
		if a.Attempt != i+1 || a.StatusCode != wantCode || (a.Error != "") != failed || a.Headers["X-Request-Id"] != "req-evt_flaky" || a.Time.IsZero() || a.DurationMillis <= 0 {
			t.Errorf("attempt %d = %+v", i+1, a)
		}
		if want := map[bool]string{true: "overloaded, try later (evt_flaky)"}[failed]; a.Body != want {
			t.Errorf("attempt %d body = %q, want %q (OnFailure keeps the failed answers' bodies only)", i+1, a.Body, want)
		}
		if a.Final != !failed {
			t.Errorf("attempt %d final = %v", i+1, a.Final)
		}
	}

	// The endpoint's log, failed attempts only: the two 503s, without their bodies for
	// someone who may read the endpoint but not its responses.
	code, raw := call(t, http.MethodGet, d.url+"/v1/namespaces/"+ns+"/endpoints/billing/attempts?failed=true&since=1h", viewer, nil)
	var list wire.AttemptList
	if err := json.Unmarshal(raw, &list); code != http.StatusOK || err != nil || len(list.Items) != 2 || list.Items[0].EventID != "evt_flaky" || list.Items[1].Attempt != 2 {
		t.Errorf("failed attempts = %d %s", code, raw)
	}
	const withheld = "response bodies withheld, forbidden: system:serviceaccount:" + ns + ":viewer may not get webhookendpoints/responses.hooks.herald.dev in namespace " + ns
	if strings.Contains(string(raw), "overloaded") || !strings.HasPrefix(list.BodiesWithheld, withheld) {
		t.Errorf("the viewer's attempt log = %s, want the bodies withheld, saying %q", raw, withheld)
	}
	code, raw = call(t, http.MethodGet, d.url+"/v1/namespaces/"+ns+"/events/evt_flaky", viewer, nil)
	if h = (wire.EventHistory{}); json.Unmarshal(raw, &h) != nil || code != http.StatusOK || strings.Contains(string(raw), "overloaded") || !strings.HasPrefix(h.BodiesWithheld, withheld) {
		t.Errorf("the viewer's event history = %d %s, want the bodies withheld", code, raw)
	}
	if code, _ := call(t, http.MethodGet, d.url+"/v1/namespaces/"+ns+"/events/evt_flaky", stranger, nil); code != http.StatusForbidden {
		t.Errorf("a stranger reads the history: %d", code)
	}
	if code, _ := call(t, http.MethodGet, d.url+"/v1/namespaces/"+ns+"/endpoints/billing/attempts", stranger, nil); code != http.StatusForbidden {
		t.Errorf("a stranger reads the attempt log: %d", code)
	}

	// The annotation with a selection re-sends the delivered event, by id.
	before := rcv.count("evt_flaky")
	token := "from=delivered ids=evt_flaky"
	update(t, c, &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"}}, func(ep *heraldv1.WebhookEndpoint) {
		if ep.Annotations == nil {
			ep.Annotations = map[string]string{}
		}
		ep.Annotations[heraldv1.AnnotationReplayDeadLetters] = token
	})
	ep := waitEndpoint(t, c, ns, "billing", "the annotation's replay", func(ep *heraldv1.WebhookEndpoint) bool {
		r := ep.Status.Replay
		return r != nil && r.ID == token && r.State == heraldv1.ReplayComplete
	})
	if r := ep.Status.Replay; r.Selected != 1 || r.Resent != 1 || r.Selection != "ids=evt_flaky from=delivered" {
		t.Errorf("status.replay = %+v", r)
	}
	waitEvent(t, c, ns, heraldv1.EventReplayCompleted, "re-sent 1 of 1")
	deadline = time.Now().Add(20 * time.Second)
	for rcv.count("evt_flaky") == before {
		if time.Now().After(deadline) {
			t.Fatal("evt_flaky was not re-sent within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rcv.count("evt_fine") != 1 {
		t.Errorf("evt_fine received %d times, want once (not selected)", rcv.count("evt_fine"))
	}
}
