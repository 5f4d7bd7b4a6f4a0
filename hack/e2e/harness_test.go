package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/herald-dev/herald/hack/framework"
)

// harness is the run (hack/framework) with the e2e's own shorthands bound to its test.
type harness struct {
	*framework.Run
	t       *testing.T
	metrics string // the dispatcher's metrics address, host:port
}

// run runs a tool with the run's environment plus extra variables.
func (h *harness) run(extraEnv []string, stdin []byte, name string, args ...string) framework.Result {
	h.t.Helper()
	return h.Command(name, args...).WithEnv(extraEnv...).WithStdin(stdin).Run(h.t)
}

// must runs a tool and fails the test, with its output, when it does not exit 0.
func (h *harness) must(extraEnv []string, name string, args ...string) string {
	h.t.Helper()
	return h.Command(name, args...).WithEnv(extraEnv...).Must(h.t)
}

func (h *harness) kubectlMust(args ...string) string {
	h.t.Helper()
	return h.Kubectl(args...).Must(h.t)
}

// heraldMust runs the herald CLI as a user would, with extra environment such as
// HERALD_TOKEN (a token belongs in the environment, not in the process list).
func (h *harness) heraldMust(extraEnv []string, args ...string) string {
	h.t.Helper()
	return h.Herald(args...).WithEnv(extraEnv...).Must(h.t)
}

// eventually polls cond until it holds or within passes; a herald process that died
// fails it at once.
func (h *harness) eventually(within time.Duration, what string, cond func() bool) {
	h.t.Helper()
	h.Eventually(h.t, within, what, framework.Bool(cond))
}

// envelope is the Envelope payload format.
type envelope struct {
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Data        json.RawMessage `json:"data"`
	Environment string          `json:"environment"`
}
