package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/pkg/wire"
)

// hostileBody is what a receiver answers to make whoever reads the attempt log run its
// terminal: clear the screen, go home, overwrite the line, ring, set the window title,
// and the C1 form of ESC [.
const hostileBody = "\x1b[2J\x1b[H\rHTTP 200 all good\x07\x08\x1b]0;owned\x07\x7f\u009b31m"

// TestCLI_AReceiversTextCannotDriveTheTerminal: a receiver answers 500 with a body full
// of control sequences; every command that shows it prints it inert, and -o json and
// -o yaml still carry it byte for byte.
func TestCLI_AReceiversTextCannotDriveTheTerminal(t *testing.T) {
	isolate(t)
	c := startCluster(t)
	s := &sink{attempts: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("webhook-id")
		if strings.HasPrefix(id, "evt_probe_") {
			s.mu.Lock()
			s.accepted = append(s.accepted, id)
			s.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(hostileBody))
	}))
	t.Cleanup(s.Close)
	c.endpointWithSink(t, nsHistory, "hostile", s, 0, func(spec *heraldv1.WebhookEndpointSpec) {
		spec.AttemptLog.ResponseBody = heraldv1.ResponseBodyAlways // kept, so that there is a body to print
	})
	operator := c.token(t, nsHistory, "hostile-operator", publishRule, operatorRule, responsesRule)
	t.Setenv(envHeraldURL, c.dispatcher)
	t.Setenv(envHeraldToken, operator)
	t.Setenv("KUBECONFIG", tokenKubeconfig(t, c, nsHistory, c.kubeToken(t, nsHistory, "hostile-operator")))
	// Probes of this test's own (waitRouted's ids are the namespace's, which the history
	// test has used already, and the dispatcher deduplicates by id) until the receiver
	// has one: the dispatcher's informers have the endpoint and the subscription then.
	eventually(t, 30*time.Second, "a probe routed to the hostile receiver", func() bool {
		id := fmt.Sprintf("evt_probe_hostile_%d", time.Now().UnixNano())
		publish(t, c.dispatcher, operator, nsHistory, id, "probe.ping")
		deadline := time.Now().Add(2 * time.Second)
		for !s.got(id) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		return s.got(id)
	})
	publish(t, c.dispatcher, operator, nsHistory, "evt_hostile", "hostile.answer")
	eventually(t, 30*time.Second, "the event dead-lettered", func() bool {
		return len(deadLetters(t, "hostile").Items) == 1
	})

	// -o json and -o yaml: the body as the receiver sent it.
	var fromJSON, fromYAML wire.AttemptList
	r := mustCLI(t, "attempts", "list", "hostile", "--failed", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &fromJSON); err != nil || len(fromJSON.Items) == 0 || fromJSON.Items[0].Body != hostileBody {
		t.Fatalf("attempts -o json printed %q (%v)", r.stdout, err)
	}
	assertInert(t, "attempts list -o json", r)
	r = mustCLI(t, "attempts", "list", "hostile", "--failed", "-o", "yaml")
	if err := yaml.Unmarshal([]byte(r.stdout), &fromYAML); err != nil || len(fromYAML.Items) == 0 || fromYAML.Items[0].Body != hostileBody {
		t.Fatalf("attempts -o yaml printed %q (%v)", r.stdout, err)
	}
	assertInert(t, "attempts list -o yaml", r)

	// Tables and text: the escapes are visible, the sequences inert.
	for _, args := range [][]string{
		{"attempts", "list", "hostile", "--failed"},
		{"events", "get", "evt_hostile"},
		{"dlq", "list", "hostile"},
		{"endpoint", "status", "hostile"},
	} {
		r := mustCLI(t, args...)
		assertInert(t, strings.Join(args, " "), r)
		if args[0] == "attempts" || args[0] == "events" {
			if !strings.Contains(r.stdout, `\u001b[2J\u001b[H HTTP 200 all good\u0007`) {
				t.Errorf("herald %s printed %q; want the body's escapes visible", strings.Join(args, " "), r.stdout)
			}
		}
	}
}

func assertInert(t *testing.T, what string, r cliRun) {
	t.Helper()
	for _, out := range []string{r.stdout, r.stderr} {
		if i := strings.IndexFunc(out, func(c rune) bool {
			return c < 0x20 && c != '\n' && c != '\t' || c >= 0x7f && c <= 0x9f
		}); i >= 0 {
			t.Errorf("herald %s printed a control character %q at %d: %q", what, out[i], i, out)
		}
	}
}
