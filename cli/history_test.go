package cli

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/pkg/wire"
)

// TestHistory_AttemptsEventsAndReplayBySelection runs the commands of the attempt log
// and of replay by selection against a real dispatcher, API server and receiver: the
// failed attempts are listed (their bodies, which the endpoint keeps, only for someone
// who may read them; the others are told how to), a time-range replay of dead letters is
// followed to its end on status, an event's history shows every attempt, and a delivered
// event is re-sent from the retained deliveries.
func TestHistory_AttemptsEventsAndReplayBySelection(t *testing.T) {
	isolate(t)
	c := startCluster(t)
	s := newSink(t)
	// The endpoint keeps its failed answers' bodies.
	c.endpointWithSink(t, nsHistory, "ledger", s, 0, func(spec *heraldv1.WebhookEndpointSpec) {
		spec.AttemptLog.ResponseBody = heraldv1.ResponseBodyOnFailure
	})
	operator := c.token(t, nsHistory, "ledger-operator", publishRule, operatorRule)
	auditor := c.token(t, nsHistory, "ledger-auditor", operatorRule, responsesRule)
	t.Setenv(envHeraldURL, c.dispatcher)
	t.Setenv(envHeraldToken, operator)
	t.Setenv("KUBECONFIG", tokenKubeconfig(t, c, nsHistory, c.kubeToken(t, nsHistory, "ledger-operator")))
	waitRouted(t, c.dispatcher, operator, nsHistory, s)

	publish(t, c.dispatcher, operator, nsHistory, "evt_ledger_ok", "ledger.posted")
	s.waitAccepted(t, "evt_ledger_ok")
	s.failing.Store(true)
	publish(t, c.dispatcher, operator, nsHistory, "evt_ledger_bad1", "ledger.posted")
	publish(t, c.dispatcher, operator, nsHistory, "evt_ledger_bad2", "ledger.posted")
	eventually(t, 30*time.Second, "two dead letters", func() bool {
		return len(deadLetters(t, "ledger").Items) == 2
	})

	// The failed attempts of the last hour: two per dead letter, each a 500.
	var failed wire.AttemptList
	eventually(t, 10*time.Second, "four failed attempts in the log", func() bool {
		r := mustCLI(t, "attempts", "list", "ledger", "--failed", "--since", "1h", "-o", "json")
		return json.Unmarshal([]byte(r.stdout), &failed) == nil && len(failed.Items) == 4
	})
	for _, a := range failed.Items {
		if a.StatusCode != http.StatusInternalServerError || a.Error == "" || !strings.HasPrefix(a.EventID, "evt_ledger_bad") {
			t.Errorf("failed attempt = %+v", a)
		}
	}
	r := mustCLI(t, "attempts", "list", "ledger", "--failed", "--since", "1h")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 5 || !strings.Contains(lines[0], "ATTEMPT") || !strings.Contains(lines[1], "HTTP 500") {
		t.Errorf("attempts table:\n%s", r.stdout)
	}
	// The operator may not read response bodies: left out, and the grant printed.
	const grant = "kubectl create rolebinding ledger-operator-herald-response-reader -n cli-history --clusterrole=herald-response-reader --serviceaccount=cli-history:ledger-operator"
	if strings.Contains(r.stdout, "down for maintenance") || !strings.Contains(r.stderr, "The dispatcher left out the response bodies (response bodies withheld, forbidden: system:serviceaccount:cli-history:ledger-operator may not get webhookendpoints/responses.hooks.herald.dev in namespace cli-history") ||
		!strings.Contains(r.stderr, "\n  "+grant+"\n") {
		t.Errorf("attempts list as the operator printed\n%s\n%s\nwant no body, and the grant %q", r.stdout, r.stderr, grant)
	}
	if failed.BodiesWithheld == "" {
		t.Errorf("attempts list -o json as the operator: bodiesWithheld is empty")
	}
	// Someone who may read them sees the receiver's words.
	r = mustCLI(t, "attempts", "list", "ledger", "--failed", "--since", "1h", "--token", auditor)
	if !strings.Contains(r.stdout, "down for maintenance (evt_ledger_bad") || strings.Contains(r.stderr, "left out") {
		t.Errorf("attempts list as the auditor printed\n%s\n%s", r.stdout, r.stderr)
	}

	// The dead letters of the last two hours, replayed in the background and followed.
	s.failing.Store(false)
	r = mustCLI(t, "dlq", "replay", "ledger", "--since", "2h")
	if !strings.Contains(r.stdout, "2 selected") || !strings.Contains(r.stdout, "Complete: 2 re-sent, 0 remaining of 2") {
		t.Errorf("dlq replay --since printed %q", r.stdout)
	}
	s.waitAccepted(t, "evt_ledger_bad1", "evt_ledger_bad2")
	if got := deadLetters(t, "ledger").Items; len(got) != 0 {
		t.Errorf("dead letters left: %+v", got)
	}

	// The history of a dead-lettered then replayed event: two 500s, then the replay's 204.
	var h wire.EventHistory
	eventually(t, 10*time.Second, "three attempts of evt_ledger_bad1", func() bool {
		r := mustCLI(t, "events", "get", "evt_ledger_bad1", "-o", "json")
		return json.Unmarshal([]byte(r.stdout), &h) == nil && len(h.Deliveries) == 1 && len(h.Deliveries[0].Attempts) == 3
	})
	if a := h.Deliveries[0].Attempts; h.Deliveries[0].State != "Delivered" || a[0].StatusCode != 500 || a[1].StatusCode != 500 || a[2].StatusCode != 204 || a[2].Replay != 1 {
		t.Errorf("history = %+v", h)
	}
	r = mustCLI(t, "events", "get", "evt_ledger_bad1")
	if !strings.Contains(r.stdout, "WebhookEndpoint cli-history/ledger: Delivered") || strings.Count(r.stdout, "HTTP 500") != 2 || !strings.Contains(r.stdout, "1 (replay 1)") {
		t.Errorf("events get printed:\n%s", r.stdout)
	}
	if r := runCLI(t, "events", "get", "evt_never_sent"); r.err == nil || !strings.Contains(r.err.Error(), "no attempt of event") {
		t.Errorf("an unknown event: %v", r.err)
	}

	// A delivered event, re-sent from the retained deliveries.
	r = mustCLI(t, "events", "resend", "ledger", "--event-id", "evt_ledger_ok", "--from", "delivered", "-o", "json")
	var p ReplayProgress
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.Selected != 1 || p.Status == nil || p.Status.State != heraldv1.ReplayComplete || p.Status.Resent != 1 {
		t.Fatalf("events resend -o json printed %q (%v)", r.stdout, err)
	}
	eventually(t, 20*time.Second, "evt_ledger_ok a second time", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.attempts["evt_ledger_ok"] == 2
	})
	if r := runCLI(t, "events", "resend", "ledger"); r.err == nil || !strings.Contains(r.err.Error(), "since") {
		t.Errorf("resend without a selection: %v", r.err)
	}
}
