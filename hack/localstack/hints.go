package main

import (
	"os/exec"
	"path/filepath"
	"strings"
)

// hintsHeader opens the closing hints; hack/firsthour finds them by it.
const hintsHeader = "Herald is running locally"

// printHints says where to look next: one block per terminal a person would open (the
// cluster admin, a producer, an operator), each starting with the exports that make the
// commands below it work when pasted into a fresh terminal, in any folder. Paths are
// absolute for that reason. hack/firsthour pastes every one of these lines into a shell
// and checks the outcome, so a line here that stops working fails `make test`.
func (s *stack) printHints() {
	ns := s.cfg.namespace
	// herald, and kubectl when the machine has none, come first on PATH, so the commands
	// read as they do in the README.
	path := filepath.Dir(s.cfg.herald)
	kubectlNote := ""
	if _, err := exec.LookPath("kubectl"); err != nil {
		path += ":" + s.cfg.assets
		kubectlNote = " (kubectl: the API server's own, from " + s.rel(s.cfg.assets) + ")"
	}
	exportPath := `export PATH="` + path + `:$PATH"`
	url := "HERALD_URL=" + s.ingestURL + " HERALD_CA_FILE=" + s.caFile
	lines := []string{
		"",
		hintsHeader + " (" + s.since() + " after " + s.startedBy + "). In other terminals:",
		"",
		"As the cluster admin" + kubectlNote + ":",
		"",
		"    " + exportPath + " KUBECONFIG=" + s.kubeconfig + " " + url + "   # context herald-local, namespace " + ns,
		"    kubectl get whe,whs                     # endpoints (URL, Ready, Disabled, Failures) and subscriptions",
		"    kubectl describe whe billing            # conditions, last attempt, counters, Events",
		"    kubectl get events --field-selector involvedObject.kind=WebhookEndpoint",
		"    # check a delivery's signature as a receiver would (the last request per endpoint is kept):",
		"    herald verify --tolerance 24h --headers-file " + s.receiver.dumpPath(ns, "billing") + " \\",
		"      --secret-file <(kubectl get secret billing-signing -o jsonpath='{.data.secret}' | base64 -d)",
	}
	if s.producer != nil {
		lines = append(lines,
			"",
			"As a producer: ServiceAccount "+s.producer.account+", bound to ClusterRole "+s.producer.clusterRole+" in "+ns+":",
			"",
			"    "+exportPath+" KUBECONFIG="+s.producer.kubeconfig+" "+url,
			"    herald publish --type invoice.paid --data '{\"amount\": 2500}'",
			"    # a token for Herald's audience alone, for HERALD_TOKEN or curl: "+s.producer.tokenFile,
		)
	}
	if s.operator != nil {
		lines = append(lines,
			"",
			"As an operator: ServiceAccount "+s.operator.account+", bound to ClusterRole "+s.operator.clusterRole+" in "+ns+":",
			"",
			"    "+exportPath+" KUBECONFIG="+s.operator.kubeconfig+" "+url,
			"    herald endpoint status                  # Ready (reason), Disabled, failures, counters, last attempt",
			"    herald dlq list billing                 # dead letters, through the dispatcher's endpoint API",
		)
		if s.demoEvent != "" {
			lines = append(lines,
				"    herald events get "+s.demoEvent+"   # the demo's event to billing: every attempt, from the attempt log")
		}
		lines = append(lines,
			"    herald endpoint enable billing          # re-enables through the endpoint API (the verb enable; no patch)",
			"    kubectl get whe,whs",
			"    herald console                          # all of the above in a browser, as this identity, on 127.0.0.1 (Ctrl-C stops it)",
		)
	}
	lines = append(lines,
		"",
		"Deliveries show up here as [receiver] lines, verified with pkg/verify. Logs: "+s.rel(s.logDir())+".",
		"Ctrl-C stops everything; the state stays in "+s.rel(s.cfg.state)+" (delete it for a fresh start).",
		"",
	)
	s.con.Block(lines...)
}

// withoutEnv returns env without the named variables.
func withoutEnv(env []string, names ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			drop = drop || name == n
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}
