package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
)

func (c *cluster) endpoint(t *testing.T, ns, name string) *heraldv1.WebhookEndpoint {
	t.Helper()
	var ep heraldv1.WebhookEndpoint
	if err := c.client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &ep); err != nil {
		t.Fatal(err)
	}
	return &ep
}

func (c *cluster) waitDisabled(t *testing.T, ns, name string, want bool) {
	t.Helper()
	eventually(t, 30*time.Second, "the endpoint's Disabled condition", func() bool {
		ep := c.endpoint(t, ns, name)
		return meta.IsStatusConditionTrue(ep.Status.Conditions, heraldv1.ConditionDisabled) == want
	})
}

func TestEndpoint_EnableAndReplayThroughTheAnnotationsAndTheAPI(t *testing.T) {
	isolate(t)
	c := startCluster(t)
	s := newSink(t)
	c.endpointWithSink(t, nsEnable, "billing", s, 2)
	operator := c.token(t, nsEnable, "operator", publishRule, operatorRule)
	t.Setenv("KUBECONFIG", c.kubeconfig)
	t.Setenv(envHeraldURL, c.dispatcher)
	t.Setenv(envHeraldToken, operator)
	generation := c.endpoint(t, nsEnable, "billing").Generation
	waitRouted(t, c.dispatcher, operator, nsEnable, s)
	s.failing.Store(true)

	// Two failed attempts disable the endpoint and dead-letter the event; the next
	// event is held.
	publish(t, c.dispatcher, operator, nsEnable, "evt_first", "invoice.paid")
	c.waitDisabled(t, nsEnable, "billing", true)
	publish(t, c.dispatcher, operator, nsEnable, "evt_held", "invoice.paid")
	eventually(t, 20*time.Second, "the dead letter and the held delivery on status", func() bool {
		st := c.endpoint(t, nsEnable, "billing").Status
		return st.Counters != nil && st.Counters.DeadLettered == 1 && st.Counters.Pending == 1
	})

	r := mustCLI(t, "endpoint", "status", "billing", "-n", nsEnable)
	for _, want := range []string{
		"URL:           " + s.URL,
		"Ready:         False (Disabled): auto-disabled by the dispatcher",
		"Disabled:      True since ",
		"ConsecutiveFailures: 2 consecutive failed attempts; last: receiver answered 500",
		"Failures:      2 consecutive",
		"Counters:      1 delivered, 2 failed attempts, 1 dead-lettered, 1 pending",
		// " in 1ms" between the two when the attempt took a millisecond or more.
		"Last attempt:  ", "HTTP 500", ", event evt_first",
		"Last success:  2", // a time, not <none>: the probe was delivered
		"Next:          herald endpoint enable billing -n cli-enable re-enables it; herald dlq list billing -n cli-enable shows its dead letters",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("endpoint status billing lacks %q:\n%s", want, r.stdout)
		}
	}
	r = mustCLI(t, "endpoint", "status", "-n", nsEnable)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME ") || !strings.Contains(lines[0], "LAST ATTEMPT") {
		t.Fatalf("endpoint status table:\n%s", r.stdout)
	}
	if f := strings.Fields(lines[1]); f[0] != "billing" || f[1] != s.URL || f[2] != "False" || f[3] != "(Disabled)" || f[4] != "True" || f[5] != "2" {
		t.Errorf("row %q: want billing, its URL, False (Disabled), True, 2 failures", lines[1])
	}

	// Re-enable through the annotation (the admin may patch): the held delivery goes
	// out, spec is untouched.
	s.failing.Store(false)
	r = mustCLI(t, "endpoint", "enable", "billing", "-n", nsEnable, "--via-annotation")
	if !strings.Contains(r.stdout, "Re-enabled WebhookEndpoint cli-enable/billing (annotation hooks.herald.dev/reenable=") {
		t.Errorf("enable printed %q", r.stdout)
	}
	s.waitAccepted(t, "evt_held")
	ep := c.endpoint(t, nsEnable, "billing")
	if ep.Generation != generation || ep.Annotations[heraldv1.AnnotationReenable] == "" || ep.Status.LastHandledReenable != ep.Annotations[heraldv1.AnnotationReenable] {
		t.Errorf("after enable: generation %d (was %d), annotations %v, lastHandledReenable %q",
			ep.Generation, generation, ep.Annotations, ep.Status.LastHandledReenable)
	}
	owner := ""
	for _, mf := range ep.ManagedFields {
		if strings.Contains(string(mf.FieldsV1.Raw), heraldv1.AnnotationReenable) {
			owner = mf.Manager
		}
	}
	if owner != fieldManagerCLI {
		t.Errorf("the annotation is owned by %q, want %q", owner, fieldManagerCLI)
	}

	// Replay every dead letter through the annotation.
	r = mustCLI(t, "dlq", "replay", "billing", "--all", "--via-annotation", "-n", nsEnable, "-o", "yaml")
	var res ReplayResult
	if err := yaml.Unmarshal([]byte(r.stdout), &res); err != nil || res.Via != "annotation" || res.Handled == nil || !*res.Handled {
		t.Errorf("replay --via-annotation -o yaml printed %q (%v)", r.stdout, err)
	}
	s.waitAccepted(t, "evt_first")
	if ep := c.endpoint(t, nsEnable, "billing"); ep.Status.LastHandledReplay != res.Annotation || ep.Annotations[heraldv1.AnnotationReplayDeadLetters] != res.Annotation {
		t.Errorf("replay annotation %q, lastHandledReplay %q, want both %q",
			ep.Annotations[heraldv1.AnnotationReplayDeadLetters], ep.Status.LastHandledReplay, res.Annotation)
	}

	// Disabled again, re-enabled through the dispatcher's API.
	s.failing.Store(true)
	publish(t, c.dispatcher, operator, nsEnable, "evt_again", "invoice.paid")
	c.waitDisabled(t, nsEnable, "billing", true)
	s.failing.Store(false)
	// A replay into a disabled endpoint is held, and the command says what sends it.
	eventually(t, 20*time.Second, "the second dead letter", func() bool {
		return len(deadLetters(t, "billing", "-n", nsEnable).Items) == 1
	})
	r = mustCLI(t, "dlq", "replay", "billing", "--all", "-n", nsEnable)
	if !strings.Contains(r.stdout, "Replayed 1 dead letter") ||
		!strings.Contains(r.stderr, "WebhookEndpoint cli-enable/billing is disabled, so the replayed deliveries are held: herald endpoint enable billing -n cli-enable sends them.") {
		t.Errorf("replay into a disabled endpoint printed %q / %q", r.stdout, r.stderr)
	}
	// Held, not lost: the status (its counters read from the store) shows the replayed
	// delivery waiting, while the receiver has not had it.
	eventually(t, 20*time.Second, "the replayed dead letter pending on the disabled endpoint's status", func() bool {
		ep := c.endpoint(t, nsEnable, "billing")
		return ep.Status.Counters != nil && ep.Status.Counters.Pending == 1
	})
	if s.got("evt_again") {
		t.Fatal("a disabled endpoint delivered a replayed dead letter")
	}
	// The operator's token (the verb enable, no patch) through the API, the default.
	r = mustCLI(t, "endpoint", "enable", "billing", "-n", nsEnable, "-o", "json")
	var en EnableResult
	if err := json.Unmarshal([]byte(r.stdout), &en); err != nil || en.Via != "api" || !en.WasDisabled {
		t.Errorf("enable -o json printed %q (%v)", r.stdout, err)
	}
	c.waitDisabled(t, nsEnable, "billing", false)
	s.waitAccepted(t, "evt_again")

	// The status as stored, for scripts.
	r = mustCLI(t, "endpoint", "status", "billing", "-n", nsEnable, "-o", "json")
	var st heraldv1.WebhookEndpointStatus
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Counters == nil || st.Counters.Delivered < 2 || st.LastHandledReenable == "" {
		t.Errorf("endpoint status -o json printed %q (%v)", r.stdout, err)
	}
	r = mustCLI(t, "endpoint", "status", "-A", "-o", "yaml")
	var list EndpointStatusList
	if err := yaml.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Items) == 0 {
		t.Errorf("endpoint status -A -o yaml printed %q (%v)", r.stdout, err)
	}
}

func TestEndpoint_ErrorsNameTheProblemAndTheFix(t *testing.T) {
	isolate(t)
	c := startCluster(t)
	s := newSink(t)
	c.endpointWithSink(t, nsUnserved, "orphan", s, 0)
	c.token(t, nsEnable, "nobody") // a ServiceAccount without any role
	viewer := c.token(t, nsEnable, "enable-viewer", viewerRule)
	// The dispatcher serves cli-enable; it knows the endpoint once it has read it.
	c.endpointWithSink(t, nsEnable, "known", s, 0)
	eventually(t, 20*time.Second, "the dispatcher to know the endpoint", func() bool {
		r := runCLI(t, "endpoint", "enable", "known", "-n", nsEnable, "--server", c.dispatcher, "--token", viewer)
		return r.err != nil && strings.Contains(r.err.Error(), "may not enable")
	})

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"an endpoint that does not exist",
			[]string{"endpoint", "enable", "nope", "-n", nsEnable, "--kubeconfig", c.kubeconfig, "--via-annotation"},
			`WebhookEndpoint "nope" not found in namespace "cli-enable": check the name and -n (kubectl get whe -n cli-enable)`},
		{"a token that may read but not re-enable",
			[]string{"endpoint", "enable", "known", "-n", nsEnable, "--server", c.dispatcher, "--token", viewer},
			"the dispatcher refused re-enabling the endpoint: forbidden: system:serviceaccount:cli-enable:enable-viewer may not enable webhookendpoints.hooks.herald.dev in namespace cli-enable; grant it (as a user who may create RoleBindings in cli-enable):\n" +
				"  kubectl create rolebinding enable-viewer-herald-operator -n cli-enable --clusterrole=herald-operator --serviceaccount=cli-enable:enable-viewer\n" +
				"The dispatcher keeps a refusal for 10s: retry 10s after the binding is made.\n" +
				"Or use --via-annotation, which needs only the API server but patch on the WebhookEndpoint."},
		{"a kubeconfig user who may not patch, with --via-annotation",
			[]string{"endpoint", "enable", "known", "-n", nsEnable, "--via-annotation", "--kubeconfig", tokenKubeconfig(t, c, nsEnable, c.kubeToken(t, nsEnable, "enable-viewer"))},
			"the kubeconfig user needs patch on webhookendpoints.hooks.herald.dev in namespace \"cli-enable\". Grant it (as a user who may create RoleBindings there):\n" +
				"  kubectl create rolebinding enable-viewer-herald-editor -n cli-enable --clusterrole=herald-editor --serviceaccount=cli-enable:enable-viewer\n" +
				"Or drop --via-annotation: the dispatcher's endpoint API re-enables with the verb enable alone (herald-operator)"},
		{"a kubeconfig user without rights",
			[]string{"endpoint", "status", "-n", nsEnable, "--kubeconfig", tokenKubeconfig(t, c, nsEnable, c.kubeToken(t, nsEnable, "nobody"))},
			"the kubeconfig user needs list on webhookendpoints.hooks.herald.dev in namespace \"cli-enable\". Grant it (as a user who may create RoleBindings there):\n" +
				"  kubectl create rolebinding nobody-herald-operator -n cli-enable --clusterrole=herald-operator --serviceaccount=cli-enable:nobody"},
		{"a namespace no dispatcher serves",
			[]string{"endpoint", "enable", "orphan", "-n", nsUnserved, "--kubeconfig", c.kubeconfig, "--timeout", "2s", "--via-annotation"},
			"but no dispatcher reported it handled within --timeout (its last handled value is empty): is the dispatcher running and serving namespace cli-unserved?"},
		{"a name with -A",
			[]string{"endpoint", "status", "billing", "-A", "--kubeconfig", c.kubeconfig},
			"-A lists every namespace and takes no name"},
		{"an output format that does not exist",
			[]string{"endpoint", "status", "-o", "wide", "--kubeconfig", c.kubeconfig},
			`--output "wide" is not supported: use table, json or yaml`},
		{"no kubeconfig anywhere",
			[]string{"endpoint", "status"},
			"no kubeconfig found: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.args...)
			if r.err == nil || !strings.Contains(r.err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", r.err, tc.want)
			}
		})
	}

	// --wait=false only sets the annotation, and says so.
	r := mustCLI(t, "endpoint", "enable", "orphan", "-n", nsUnserved, "--kubeconfig", c.kubeconfig, "--via-annotation", "--wait=false")
	if !strings.Contains(r.stdout, "the dispatcher re-enables it when it sees the annotation") {
		t.Errorf("--wait=false printed %q", r.stdout)
	}
}

func TestRoot_NamedAfterTheKubectlPlugin(t *testing.T) {
	for invoked, want := range map[string]string{
		"herald":                        "herald",
		"/usr/local/bin/herald":         "herald",
		"/usr/local/bin/kubectl-herald": "kubectl herald",
		"kubectl-herald.exe":            "kubectl herald",
	} {
		if got := displayName(invoked); got != want {
			t.Errorf("displayName(%q) = %q, want %q", invoked, got, want)
		}
	}

	for invoked, want := range map[string][]string{
		"kubectl-herald": {"kubectl herald dlq list ENDPOINT [flags]", "  kubectl herald dlq list billing -n shop"},
		"herald":         {"herald dlq list ENDPOINT [flags]", "  herald dlq list billing -n shop"},
	} {
		root := NewRootCommandAs(invoked)
		var out strings.Builder
		root.SetOut(&out)
		root.SetArgs([]string{"dlq", "list", "--help"})
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("invoked as %s, help lacks %q:\n%s", invoked, w, out.String())
			}
		}
		if invoked == "kubectl-herald" && strings.Contains(out.String(), "\n  herald ") {
			t.Errorf("invoked as kubectl-herald, help still shows a bare herald command:\n%s", out.String())
		}
	}
}
