package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/hack/framework"
)

const (
	ns          = "e2e"
	chartNS     = "herald-system"
	chartFM     = "herald-chart" // field manager of the chart's objects, as Helm or Argo CD would have its own
	userFM      = "kubectl"      // field manager of everything a person applies
	failingName = "governance"   // the endpoint whose receiver goes down
)

var repoRoot = framework.RepoRoot

// TestHerald_EndToEnd installs Herald from its public artefacts and drives it only as a
// user can: kubectl, helm and the herald binary.
func TestHerald_EndToEnd(t *testing.T) {
	h := setup(t)
	step := func(name string, fn func()) {
		t.Helper()
		start := time.Now()
		fn()
		t.Logf("== %s (%s)", name, time.Since(start).Round(100*time.Millisecond))
	}

	var chart string
	step("CRDs and the Helm chart install with kubectl apply --server-side", func() {
		chart = h.installCRDsAndChart()
	})
	var ingest string
	step("herald manager and dispatcher run as the chart's ServiceAccounts", func() {
		ingest = h.startHerald()
	})
	var s *samples
	step("config/samples apply and become Ready", func() {
		s = h.applySamples()
	})
	// Every delivery Herald makes has to verify. Reported at the end even when a wait
	// fails first, since a refused signature is often why a delivery never arrived.
	t.Cleanup(func() {
		for _, r := range s.receivers {
			for _, p := range r.Refusals() {
				t.Errorf("a delivery did not verify: %s", p)
			}
		}
	})
	// Publishing: the chart's ClusterRole herald-publisher, bound in the namespace.
	// (`kubectl create role --resource=events.hooks.herald.dev` is refused by kubectl,
	// which finds no such resource in discovery: events are not stored objects.)
	producer := h.serviceAccountToken("producer", "--clusterrole=herald-publisher")
	// Dead letters, replay and re-enabling: the chart's ClusterRole herald-operator (get,
	// and the custom verbs replay and enable, which `kubectl create role` would refuse).
	operator := h.serviceAccountToken("operator", "--clusterrole=herald-operator")
	pub := &publisher{h: h, env: []string{"HERALD_URL=" + ingest, "HERALD_TOKEN=" + producer}}
	opEnv := []string{"HERALD_URL=" + ingest, "HERALD_TOKEN=" + operator}

	step("every signature style delivers, signed, to its receiver", func() {
		h.deliverEveryStyle(s, pub)
	})
	step("ed25519: Herald generates the key pair, publishes the public key, and a receiver holding only that key verifies the deliveries", func() {
		h.ed25519Endpoint(pub)
	})
	step("a failing receiver: retries, auto-disable, Events, a dead letter, held deliveries; enable and replay deliver them", func() {
		h.failAndRecover(s, pub, opEnv)
	})
	step("the dispatcher exports every metric the README lists", func() {
		h.metricsTheREADMEPromises(s, pub)
	})
	step("deleting a subscription stops routing, recreating it resumes", func() {
		h.subscriptionLifecycle(s, pub)
	})
	step("GitOps: kubectl diff --server-side of every applied manifest is empty", func() {
		h.diffEverything(chart, s)
	})
	step("kubectl herald works as a kubectl plugin", func() {
		h.kubectlPlugin()
	})
	step("hex styles: a rotation sends the old secret's signature as -Previous, and its end stops it", func() {
		h.rotationStartsAndEnds(s, pub)
	})
}

func setup(t *testing.T) *harness {
	t.Helper()
	return &harness{Run: framework.NewRun(t, framework.RunInput{Name: "e2e"}), t: t}
}

// installCRDsAndChart applies the CRDs and the chart's default rendering; it returns
// the rendered chart file. Nothing runs the chart's Deployment (envtest has no
// kubelet): what counts is that the API server takes every object.
func (h *harness) installCRDsAndChart() string {
	chart := h.InstallCRDsAndChart(h.t, framework.ChartInput{Namespace: chartNS, CRDFieldManager: userFM, ChartFieldManager: chartFM})
	h.t.Log(chart.CRDsApplied)
	h.t.Log("helm template charts/herald | kubectl apply --server-side -f -\n" + chart.ChartApplied)
	if n, want := strings.Count(chart.ChartApplied, "serverside-applied"), strings.Count(chart.Rendered, "\nkind: "); n != want {
		h.t.Fatalf("the API server took %d of the chart's %d objects", n, want)
	}
	h.kubectlMust("get", "deployment/herald-manager", "serviceaccount/herald-manager", "-n", chartNS)
	return chart.Path
}

// startHerald runs the manager and the dispatcher with the tokens of the chart's
// ServiceAccounts, so the chart's RBAC is what they run on. It returns the ingest URL.
func (h *harness) startHerald() string {
	policy := []string{"--allow-plain-http", "--allow-loopback"}
	manager := h.StartManager(h.t, framework.ManagerInput{Namespace: chartNS, Args: policy, NoWait: true})
	dispatcher := h.StartDispatcher(h.t, framework.DispatcherInput{Namespace: chartNS, Args: append(policy, "--status-interval=500ms"), NoWait: true})
	h.metrics = dispatcher.Metrics
	h.WaitReady(h.t, manager, 90*time.Second)
	h.WaitReady(h.t, dispatcher, 90*time.Second)
	return dispatcher.IngestURL()
}

// samples are config/samples as applied: one file per sample, each endpoint's url
// pointing at its own receiver.
type samples struct {
	files     map[string]string // sample file name -> applied copy
	objects   map[string][]*unstructured.Unstructured
	receivers map[string]*framework.Receiver // by endpoint
	endpoints map[string]*heraldv1.WebhookEndpoint
	// pristine is the failing endpoint's file as first applied, before kubectl patch.
	pristine string
}

func (h *harness) applySamples() *samples {
	h.kubectlMust("create", "namespace", ns)
	// The workspace sample sends a header from this Secret.
	h.kubectlMust("create", "secret", "generic", "workspace-token", "-n", ns, "--from-literal=token=Bearer e2e-workspace")

	s := &samples{files: map[string]string{}, objects: map[string][]*unstructured.Unstructured{},
		receivers: map[string]*framework.Receiver{}, endpoints: map[string]*heraldv1.WebhookEndpoint{}}
	paths, err := filepath.Glob(filepath.Join(repoRoot, "config", "samples", "*.yaml"))
	if err != nil {
		h.t.Fatal(err)
	}
	applied := filepath.Join(h.Dir, "applied")
	if err := os.MkdirAll(applied, 0o700); err != nil {
		h.t.Fatal(err)
	}
	for _, p := range paths {
		name := filepath.Base(p)
		if name == "kustomization.yaml" {
			continue
		}
		objs := readObjects(h.t, p)
		for _, u := range objs {
			if u.GetKind() != "WebhookEndpoint" {
				continue
			}
			var ep heraldv1.WebhookEndpoint
			if err := fromUnstructured(u, &ep); err != nil {
				h.t.Fatalf("%s: %v", name, err)
			}
			r := framework.ReceiverFor(h.t, &ep)
			if err := unstructured.SetNestedField(u.Object, r.URL(), "spec", "url"); err != nil {
				h.t.Fatal(err)
			}
			ep.Spec.URL = r.URL()
			s.receivers[ep.Name], s.endpoints[ep.Name] = r, &ep
		}
		s.objects[name] = objs
		s.files[name] = filepath.Join(applied, name)
		s.write(h.t, name)
		h.t.Log(h.kubectlMust("apply", "--server-side", "--field-manager="+userFM, "-n", ns, "-f", s.files[name]))
	}
	if len(s.receivers) != 4 {
		h.t.Fatalf("config/samples has %d endpoints, want one per signature style (4)", len(s.receivers))
	}

	// Ready, except the sample that is suspended on purpose.
	var ready []string
	for name, ep := range s.endpoints {
		if !ep.Spec.Suspend {
			ready = append(ready, "whe/"+name)
		}
	}
	sort.Strings(ready)
	h.kubectlMust(append([]string{"wait", "--for=condition=Ready", "--timeout=60s", "-n", ns}, ready...)...)
	h.kubectlMust("wait", "--for=condition=Ready", "--timeout=60s", "-n", ns, "whs", "--all")
	h.kubectlMust("wait", `--for=jsonpath={.status.conditions[?(@.type=="Ready")].reason}=Suspended`, "--timeout=60s", "-n", ns, "whe/evaluations")

	// The receivers learn each signing secret the way a person would: from the Secret
	// the manager generated.
	for name, ep := range s.endpoints {
		ref := ep.SigningSecretRef()
		raw := h.kubectlMust("get", "secret", ref.Name, "-n", ns, "-o", "jsonpath={.data."+ref.Key+"}")
		secret, err := base64.StdEncoding.DecodeString(raw)
		if err != nil || len(secret) == 0 {
			h.t.Fatalf("signing Secret %s of %s: %q (%v)", ref.Name, name, raw, err)
		}
		s.receivers[name].SetSecret(string(secret))
	}
	s.receivers["workspace"].SetAuthorization("Bearer e2e-workspace")
	h.t.Log("kubectl get whe,whs -n " + ns + "\n" + h.kubectlMust("get", "whe,whs", "-n", ns))
	return s
}

// write (re)writes the applied copy of a sample file from its objects.
func (s *samples) write(t *testing.T, name string) {
	t.Helper()
	var b bytes.Buffer
	for i, u := range s.objects[name] {
		if i > 0 {
			b.WriteString("---\n")
		}
		raw, err := yaml.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(raw)
	}
	if err := os.WriteFile(s.files[name], b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fileOf returns the sample file holding the object of that kind and name.
func (s *samples) fileOf(t *testing.T, kind, name string) (string, *unstructured.Unstructured) {
	t.Helper()
	for file, objs := range s.objects {
		for _, u := range objs {
			if u.GetKind() == kind && u.GetName() == name {
				return file, u
			}
		}
	}
	t.Fatalf("no %s %s in config/samples", kind, name)
	return "", nil
}

// serviceAccountToken creates a ServiceAccount bound to a role (--role=NAME or
// --clusterrole=NAME) in the namespace and returns `kubectl create token`.
func (h *harness) serviceAccountToken(sa, role string) string {
	h.t.Helper()
	h.kubectlMust("create", "serviceaccount", sa, "-n", ns)
	h.kubectlMust("create", "rolebinding", sa, "-n", ns, role, "--serviceaccount="+ns+":"+sa)
	// For the dispatcher, which takes tokens for Herald's audience only.
	return strings.TrimSpace(h.kubectlMust("create", "token", sa, "-n", ns, "--audience", "hooks.herald.dev"))
}

// publisher sends events with `herald publish`.
type publisher struct {
	h   *harness
	env []string
	n   int
}

// publish sends an event of typ with data until the dispatcher routes it to
// wantMatched endpoints, each time with a new id, and returns the id that did: the
// dispatcher learns about endpoints and subscriptions through informers, a moment after
// kubectl returns. Earlier tries are delivered where they matched, which harms nothing.
func (p *publisher) publish(typ, data string, wantMatched int) string {
	p.h.t.Helper()
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for {
		p.n++
		id := fmt.Sprintf("evt_e2e_%03d", p.n)
		out := p.h.heraldMust(p.env, "publish", "-n", ns, "--type", typ, "--id", id, "--data", data, "-o", "json")
		var res struct {
			ID        string `json:"id"`
			Matched   int    `json:"matched"`
			Duplicate bool   `json:"duplicate"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || res.ID != id || res.Duplicate {
			p.h.t.Fatalf("herald publish -o json printed %q (%v)", out, err)
		}
		if res.Matched == wantMatched {
			return id
		}
		last = out
		if time.Now().After(deadline) {
			p.h.t.Fatalf("event type %s matched %d endpoints for 30s, want %d; last answer %s", typ, res.Matched, wantMatched, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (h *harness) waitDelivered(r *framework.Receiver, id string) framework.Request {
	h.t.Helper()
	var got framework.Request
	h.eventually(30*time.Second, fmt.Sprintf("%s to receive event %s, signed", r.Endpoint, id), func() bool {
		var ok bool
		got, ok = r.Delivered(id)
		return ok
	})
	return got
}

func (h *harness) deliverEveryStyle(s *samples, pub *publisher) {
	t := h.t
	billing, governance, workspace, evaluations := s.receivers["billing"], s.receivers["governance"], s.receivers["workspace"], s.receivers["evaluations"]
	// workspace subscribes to "*", so it gets every event as well.
	const invoice = `{"amount":1500,"currency":"EUR","invoice":"INV-1001"}`
	inv := pub.publish("invoice.paid", invoice, 2)
	appr := pub.publish("approval.granted", `{"request":"APR-7"}`, 2)
	eval := pub.publish("evaluation.completed", `{"score":0.93}`, 2)

	// Standard Webhooks, Envelope with the sample's extra field.
	got := h.waitDelivered(billing, inv)
	var env envelope
	if err := json.Unmarshal(got.Body, &env); err != nil || env.ID != inv || env.Type != "invoice.paid" || env.Environment != "production" || string(env.Data) != invoice {
		t.Errorf("billing received %s (%v), want the envelope of %s with environment production", got.Body, err, inv)
	}
	if got.Header.Get("Webhook-Id") != inv {
		t.Errorf("billing: webhook-id %q, want the event id %s", got.Header.Get("Webhook-Id"), inv)
	}
	// Body-only hex with payload format Data: the body is the event's data, byte for byte.
	got = h.waitDelivered(workspace, inv)
	if string(got.Body) != invoice {
		t.Errorf("workspace received %q, want the data alone %q", got.Body, invoice)
	}
	h.waitDelivered(workspace, appr)
	h.waitDelivered(workspace, eval)
	// Timestamped prefixed hex.
	got = h.waitDelivered(governance, appr)
	if !strings.HasPrefix(got.Header.Get("X-Acme-Signature"), "sha256=") {
		t.Errorf("governance: X-Acme-Signature %q, want sha256=<hex>", got.Header.Get("X-Acme-Signature"))
	}

	// The suspended sample holds its event and delivers it when the manifest says
	// suspend: false. (Its status.counters.pending is not checked: the dispatcher writes
	// an endpoint's delivery status only once it has attempted a delivery there.) The
	// held gauge counting it is the sign that the dispatcher has stored the event for
	// the endpoint and decided to hold it; only then does "no request" mean something.
	h.eventually(30*time.Second, "herald_held_deliveries of evaluations to count the held event", func() bool {
		if n := len(evaluations.Attempts(eval)); n != 0 {
			t.Fatalf("the suspended endpoint received %d requests", n)
		}
		return h.gauge("herald_held_deliveries", `endpoint="evaluations"`) >= 1
	})
	if n := len(evaluations.Attempts(eval)); n != 0 {
		t.Fatalf("the suspended endpoint received %d requests", n)
	}
	file, u := s.fileOf(t, "WebhookEndpoint", "evaluations")
	if err := unstructured.SetNestedField(u.Object, false, "spec", "suspend"); err != nil {
		t.Fatal(err)
	}
	s.write(t, file)
	h.kubectlMust("apply", "--server-side", "--field-manager="+userFM, "-n", ns, "-f", s.files[file])
	got = h.waitDelivered(evaluations, eval)
	if got.Header.Get("X-Acme-Event") != "evaluation.completed" || strings.HasPrefix(got.Header.Get("X-Acme-Signature"), "sha256=") {
		t.Errorf("evaluations: X-Acme-Event %q, X-Acme-Signature %q; want the event type and a bare hex signature",
			got.Header.Get("X-Acme-Event"), got.Header.Get("X-Acme-Signature"))
	}

	h.verifyWithTheCLI(s, billing, inv)
}

// ed25519Endpoint adds an endpoint with the asymmetric Standard Webhooks style. Its
// receiver learns the public key as a receiver's owner would, from the ConfigMap Herald
// publishes (and the CLI prints the same), and verifies with pkg/verify and with the
// receiver written from the specification and crypto/ed25519 alone.
func (h *harness) ed25519Endpoint(pub *publisher) {
	t := h.t
	ep := &heraldv1.WebhookEndpoint{Spec: heraldv1.WebhookEndpointSpec{Signature: heraldv1.SignatureSpec{Style: heraldv1.SignatureStandardWebhooksEd25519}}}
	ep.Name = "ledger"
	r := framework.ReceiverFor(t, ep)
	manifest := fmt.Sprintf(`apiVersion: hooks.herald.dev/v1alpha1
kind: WebhookEndpoint
metadata: {name: ledger}
spec:
  url: %s
  signature: {style: StandardWebhooksEd25519}
---
apiVersion: hooks.herald.dev/v1alpha1
kind: WebhookSubscription
metadata: {name: ledger-entries}
spec:
  endpointRef: {name: ledger}
  eventTypes: ["ledger.*"]
`, r.URL())
	if res := h.run(nil, []byte(manifest), h.KubectlBin, "apply", "--server-side", "--field-manager="+userFM, "-n", ns, "-f", "-"); res.Code != 0 {
		t.Fatalf("kubectl apply of the ed25519 endpoint exited %d:\n%s%s", res.Code, res.Stderr, res.Stdout)
	}
	h.kubectlMust("wait", "--for=condition=Ready", "--timeout=60s", "-n", ns, "whe/ledger", "whs/ledger-entries")
	var public string
	h.eventually(30*time.Second, "the public-key ConfigMap", func() bool {
		res := h.run(nil, nil, h.KubectlBin, "get", "configmap", "ledger-public-key", "-n", ns, "-o", "jsonpath={.data.publicKey}")
		public = strings.TrimSpace(res.Stdout)
		return res.Code == 0 && public != ""
	})
	if !strings.HasPrefix(public, "whpk_") {
		t.Fatalf("ConfigMap ledger-public-key holds %q, want whpk_<base64>", public)
	}
	if printed := strings.TrimSpace(h.heraldMust(nil, "endpoint", "public-key", "ledger", "-n", ns)); printed != public {
		t.Errorf("herald endpoint public-key printed %q, the ConfigMap holds %q", printed, public)
	}
	if st := h.jsonpath("whe/ledger", "{.status.publicKey}"); st != public {
		t.Errorf("status.publicKey %q, the ConfigMap holds %q", st, public)
	}
	r.SetSecret(public)
	// workspace subscribes to every type.
	id := pub.publish("ledger.posted", `{"entry":"LE-1","amount":-250}`, 2)
	got := h.waitDelivered(r, id)
	if sig := got.Header.Get("Webhook-Signature"); !strings.HasPrefix(sig, "v1a,") || strings.Contains(sig, "v1,") {
		t.Errorf("webhook-signature %q, want v1a signatures only", sig)
	}
	for _, p := range r.Refusals() {
		t.Errorf("a delivery did not verify: %s", p)
	}
}

// verifyWithTheCLI checks a captured delivery with `herald verify`, and that its exit
// codes reach the shell: 0 valid, 1 invalid, 2 used wrongly.
func (h *harness) verifyWithTheCLI(s *samples, r *framework.Receiver, id string) {
	t := h.t
	got, _ := r.Delivered(id)
	var dump bytes.Buffer
	dump.WriteString("POST /hooks/billing HTTP/1.1\r\n")
	if err := got.Header.Write(&dump); err != nil {
		t.Fatal(err)
	}
	dump.WriteString("\r\n")
	dump.Write(got.Body)
	request := filepath.Join(h.Dir, "billing-request.http")
	tampered := filepath.Join(h.Dir, "billing-tampered.http")
	secret := filepath.Join(h.Dir, "billing-secret")
	key := r.Secret()
	for path, content := range map[string][]byte{
		request:  dump.Bytes(),
		tampered: bytes.Replace(dump.Bytes(), []byte("1500"), []byte("9500"), 1),
		secret:   []byte(key + "\n"),
	} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--secret-file", secret, "--headers-file", request}, 0, "signature valid"},
		{[]string{"--secret-file", secret, "--headers-file", tampered}, 1, "signature invalid"},
		{[]string{"--secret-file", secret, "--no-such-flag"}, 2, "unknown flag: --no-such-flag"},
	} {
		res := h.run(nil, nil, h.HeraldBin, append([]string{"verify"}, tc.args...)...)
		if res.Code != tc.code || !strings.Contains(res.Stdout+res.Stderr, tc.out) {
			t.Errorf("herald verify %s: exit %d, output %q; want exit %d and %q", strings.Join(tc.args, " "), res.Code, res.Stdout+res.Stderr, tc.code, tc.out)
		}
		if strings.Count(res.Stderr, tc.out) > 1 {
			t.Errorf("herald verify %s printed its message twice:\n%s", strings.Join(tc.args, " "), res.Stderr)
		}
	}
}

func (h *harness) jsonpath(obj, path string) string {
	h.t.Helper()
	return h.kubectlMust("get", obj, "-n", ns, "-o", "jsonpath="+path)
}

func (h *harness) failAndRecover(s *samples, pub *publisher, opEnv []string) {
	t := h.t
	gov, workspace := s.receivers[failingName], s.receivers["workspace"]
	gov.SetFailing(true)

	// A short schedule and a low threshold, with kubectl patch as a person in a hurry
	// would; the applied manifest gets the same change, as its repository would.
	patch := `{"spec":{"retry":{"schedule":["200ms","200ms"]},"autoDisable":{"afterConsecutiveFailures":3}}}`
	h.kubectlMust("patch", "whe", failingName, "-n", ns, "--type", "merge", "-p", patch)
	file, u := s.fileOf(t, "WebhookEndpoint", failingName)
	pristine := filepath.Join(h.Dir, "pristine-"+file)
	if err := os.WriteFile(pristine, mustRead(t, s.files[file]), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedStringSlice(u.Object, []string{"200ms", "200ms"}, "spec", "retry", "schedule"); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(u.Object, int64(3), "spec", "autoDisable", "afterConsecutiveFailures"); err != nil {
		t.Fatal(err)
	}
	s.write(t, file)
	s.pristine = pristine
	// The dispatcher has the new generation once it reports on it.
	gen := h.jsonpath("whe/"+failingName, "{.metadata.generation}")
	h.kubectlMust("wait", `--for=jsonpath={.status.conditions[?(@.type=="Disabled")].observedGeneration}=`+gen,
		"--timeout=30s", "-n", ns, "whe/"+failingName)

	first := pub.publish("approval.requested", `{"request":"APR-8"}`, 2)
	h.waitDelivered(workspace, first)
	h.eventually(30*time.Second, "three attempts of the first event at the failing receiver", func() bool {
		return len(gov.Attempts(first)) >= 3
	})
	h.kubectlMust("wait", "--for=condition=Disabled", "--timeout=30s", "-n", ns, "whe/"+failingName)
	attempts := gov.Attempts(first)
	for i, a := range attempts {
		if a.Status != http.StatusInternalServerError || a.Attempt != fmt.Sprint(i+1) {
			t.Errorf("attempt %d of %s: HTTP %d, Delivery-Attempt %q", i+1, first, a.Status, a.Attempt)
		}
	}
	if len(attempts) != 3 {
		t.Errorf("the failing receiver saw %d attempts of %s, want 3 (one and two retries)", len(attempts), first)
	}

	// What kubectl shows: Disabled, the dispatcher holding (Delivering False), and
	// Ready mirroring both. Columns are found by their header.
	row := func() map[string]string {
		col := map[string]string{}
		lines := strings.Split(h.kubectlMust("get", "whe", "-n", ns), "\n")
		header := strings.Fields(lines[0])
		for _, line := range lines[1:] {
			if f := strings.Fields(line); len(f) == len(header) && f[0] == failingName {
				for i, name := range header {
					col[name] = f[i]
				}
			}
		}
		return col
	}
	var col map[string]string
	h.eventually(30*time.Second, "kubectl get whe shows the endpoint disabled and held", func() bool {
		col = row()
		return col["READY"] == "False" && col["DELIVERING"] == "False" && col["DISABLED"] == "True" && col["FAILURES"] == "3"
	})
	var events string
	h.eventually(30*time.Second, "EndpointDisabled and DeliveryFailed Events", func() bool {
		events = h.kubectlMust("get", "events", "-n", ns, "--field-selector", "involvedObject.name="+failingName,
			"-o", "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message", "--sort-by=.lastTimestamp")
		return strings.Contains(events, "EndpointDisabled") && strings.Contains(events, "DeliveryFailed")
	})
	h.t.Log("kubectl get events -n e2e --field-selector involvedObject.name=" + failingName + "\n" + events)

	var dlq string
	h.eventually(30*time.Second, "the dead letter in herald dlq list", func() bool {
		dlq = h.heraldMust(opEnv, "dlq", "list", failingName, "-n", ns)
		return strings.Contains(dlq, first)
	})
	if !strings.Contains(dlq, "RetriesExhausted") || !strings.Contains(dlq, "HTTP 500") {
		t.Errorf("herald dlq list:\n%s\nwant %s with RetriesExhausted and HTTP 500", dlq, first)
	}
	h.t.Log("herald dlq list " + failingName + " -n e2e\n" + dlq)

	// Disabled holds: the next event waits, counted as pending.
	held := pub.publish("approval.granted", `{"request":"APR-8"}`, 2)
	h.waitDelivered(workspace, held)
	h.eventually(20*time.Second, "the held delivery on status.counters.pending", func() bool {
		return h.jsonpath("whe/"+failingName, "{.status.counters.pending}") == "1"
	})
	if n := len(gov.Attempts(held)); n != 0 {
		t.Errorf("the disabled endpoint was sent %s %d times", held, n)
	}
	h.t.Log("kubectl get whe -n e2e -o wide\n" + h.kubectlMust("get", "whe", "-n", ns, "-o", "wide"))
	h.t.Log("kubectl describe whe " + failingName + " -n e2e\n" + h.kubectlMust("describe", "whe", failingName, "-n", ns))
	h.t.Log("herald endpoint status -n e2e\n" + h.heraldMust(nil, "endpoint", "status", "-n", ns))
	h.t.Log("herald endpoint status " + failingName + " -n e2e\n" + h.heraldMust(nil, "endpoint", "status", failingName, "-n", ns))

	// The receiver recovers; re-enable, then replay.
	gov.SetFailing(false)
	out := h.heraldMust(opEnv, "endpoint", "enable", failingName, "-n", ns)
	h.t.Log("herald endpoint enable " + failingName + " -n e2e\n" + out)
	if !strings.Contains(out, "Re-enabled WebhookEndpoint e2e/"+failingName) {
		t.Errorf("herald endpoint enable printed %q", out)
	}
	h.waitDelivered(gov, held)
	out = h.heraldMust(opEnv, "dlq", "replay", failingName, "--all", "-n", ns)
	h.t.Log("herald dlq replay " + failingName + " --all -n e2e\n" + out)
	if !strings.Contains(out, "Replayed 1 dead letter") {
		t.Errorf("herald dlq replay printed %q", out)
	}
	replayed := h.waitDelivered(gov, first)
	// Receivers deduplicate on the event id: the replay must carry the original one.
	if got := replayed.Header.Get("X-Acme-Event-Id"); got != first {
		t.Errorf("the replay carries event id %q, want the original %s", got, first)
	}
	t.Logf("event %s: failed attempts as delivery %s, replayed as delivery %s (attempt %s)", first,
		attempts[0].Header.Get("X-Acme-Delivery-Id"), replayed.Header.Get("X-Acme-Delivery-Id"), replayed.Attempt)
	res := h.run(opEnv, nil, h.HeraldBin, "dlq", "list", failingName, "-n", ns)
	if res.Code != 0 || res.Stdout != "" || !strings.Contains(res.Stderr, "No dead letters") {
		t.Errorf("herald dlq list after the replay: exit %d, %q %q", res.Code, res.Stdout, res.Stderr)
	}
	h.kubectlMust("wait", "--for=condition=Ready", "--timeout=30s", "-n", ns, "whe/"+failingName)
	h.t.Log("kubectl get whe -n e2e -o wide (after enable and replay)\n" + h.kubectlMust("get", "whe", "-n", ns, "-o", "wide"))
}

func (h *harness) subscriptionLifecycle(s *samples, pub *publisher) {
	gov, workspace := s.receivers[failingName], s.receivers["workspace"]
	file, _ := s.fileOf(h.t, "WebhookSubscription", "governance-decisions")
	h.kubectlMust("delete", "whs", "governance-decisions", "-n", ns)
	// Only workspace's "*" matches now.
	orphan := pub.publish("policy.violated", `{"policy":"P-1"}`, 1)
	h.waitDelivered(workspace, orphan)
	h.kubectlMust("apply", "--server-side", "--field-manager="+userFM, "-n", ns, "-f", s.files[file])
	again := pub.publish("policy.violated", `{"policy":"P-2"}`, 2)
	h.waitDelivered(gov, again)
	// governance has received an event accepted after the orphan: had the orphan been
	// routed there, it would have been queued ahead of this one.
	if n := len(gov.Attempts(orphan)); n != 0 {
		h.t.Errorf("%s received %s %d times after its subscription was deleted", failingName, orphan, n)
	}
}

// diffEverything runs kubectl diff --server-side, as the manager that applied it, on
// every manifest applied: nothing Herald does may show up as a change to what users
// own.
func (h *harness) diffEverything(chart string, s *samples) {
	t := h.t
	type manifest struct{ path, fm, ns string }
	all := []manifest{
		{filepath.Join(repoRoot, "config", "crd", "bases"), userFM, ""},
		{chart, chartFM, ""},
	}
	names := make([]string, 0, len(s.files))
	for name := range s.files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		all = append(all, manifest{s.files[name], userFM, ns})
	}
	for _, m := range all {
		args := []string{"diff", "--server-side", "--field-manager=" + m.fm, "-f", m.path}
		if m.ns != "" {
			args = append(args, "-n", m.ns)
		}
		res := h.run(nil, nil, h.KubectlBin, args...)
		switch res.Code {
		case 0:
			t.Logf("kubectl %s: no difference", strings.Join(args, " "))
		case 1:
			t.Errorf("kubectl %s shows a difference:\n%s%s", strings.Join(args, " "), res.Stdout, res.Stderr)
		default:
			t.Errorf("kubectl %s failed (exit %d):\n%s%s", strings.Join(args, " "), res.Code, res.Stderr, res.Stdout)
		}
	}

	// The manifest from before the kubectl patch does not set retry or autoDisable, so
	// server-side apply leaves what kubectl-patch owns there: no difference either. A
	// change made outside Git to fields Git does not set is invisible to a diff, by
	// design of server-side apply.
	diff := func(path string) (int, []string, string) {
		res := h.run(nil, nil, h.KubectlBin, "diff", "--server-side", "--field-manager="+userFM, "-n", ns, "-f", path)
		var changed []string
		for _, line := range strings.Split(res.Stdout, "\n") {
			if (strings.HasPrefix(line, "-") || strings.HasPrefix(line, "+")) && !strings.HasPrefix(line, "---") && !strings.HasPrefix(line, "+++") {
				changed = append(changed, strings.TrimSpace(line[1:]))
			}
		}
		sort.Strings(changed)
		return res.Code, changed, res.Stdout + res.Stderr
	}
	if code, _, out := diff(s.pristine); code != 0 {
		t.Errorf("kubectl diff of %s's manifest from before the patch: exit %d\n%s", failingName, code, out)
	}

	// And the check does see a change to a field the manifest owns: exactly that field
	// (and the generation it would bump).
	file, u := s.fileOf(t, "WebhookEndpoint", failingName)
	edited := u.DeepCopy()
	if err := unstructured.SetNestedField(edited.Object, "11s", "spec", "timeout"); err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.Marshal(edited.Object)
	if err != nil {
		t.Fatal(err)
	}
	editedPath := filepath.Join(h.Dir, "edited-"+file)
	if err := os.WriteFile(editedPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	code, changed, out := diff(editedPath)
	if want := []string{"generation: 2", "generation: 3", "timeout: 10s", "timeout: 11s"}; code != 1 || strings.Join(changed, "|") != strings.Join(want, "|") {
		t.Errorf("kubectl diff of %s with timeout 11s: exit %d, changed lines %q, want exit 1 and %q\n%s", failingName, code, changed, want, out)
	}
}

// kubectlPlugin installs herald as kubectl-herald on PATH, as the README says.
func (h *harness) kubectlPlugin() {
	t := h.t
	plugins := filepath.Join(h.Dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(h.HeraldBin, filepath.Join(plugins, "kubectl-herald")); err != nil {
		t.Fatal(err)
	}
	path := []string{"PATH=" + plugins + string(os.PathListSeparator) + os.Getenv("PATH")}
	if out := h.must(path, h.KubectlBin, "plugin", "list"); !strings.Contains(out, filepath.Join(plugins, "kubectl-herald")) {
		t.Errorf("kubectl plugin list does not show kubectl-herald:\n%s", out)
	}
	out := h.must(path, h.KubectlBin, "herald", "endpoint", "status", "-n", ns)
	t.Log("kubectl herald endpoint status -n e2e\n" + out)
	if !strings.Contains(out, failingName) || !strings.HasPrefix(out, "NAME ") {
		t.Errorf("kubectl herald endpoint status printed:\n%s", out)
	}
	if out := h.must(path, h.KubectlBin, "herald", "dlq", "list", "--help"); !strings.Contains(out, "kubectl herald dlq list ENDPOINT") {
		t.Errorf("kubectl herald dlq list --help does not name itself kubectl herald:\n%s", out)
	}
}

func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(mustRead(t, path)), 4096)
	var out []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("%s: %v", path, err)
		}
		if len(obj) > 0 {
			out = append(out, &unstructured.Unstructured{Object: obj})
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fromUnstructured(u *unstructured.Unstructured, into any) error {
	raw, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, into)
}

// metricsTheREADMEPromises scrapes the running dispatcher and checks that every metric
// the README's feature list names is exported, with the label the README gives it, and
// that every herald_ metric the chart's alerts and Grafana dashboard query is one it
// exports (histograms through their _bucket series). By
// now there have been deliveries, failures, a dead letter and an auto-disable; a held
// delivery is made here (a suspended endpoint with an event waiting), because the held
// gauge has series only while something is held.
func (h *harness) metricsTheREADMEPromises(s *samples, pub *publisher) {
	t := h.t
	promised := readmeMetrics(t)
	if len(promised) < 5 {
		t.Fatalf("found only %d metrics in the README's list (%v); has the sentence moved?", len(promised), promised)
	}
	queried := chartMetrics(t)
	h.kubectlMust("patch", "whe", "evaluations", "-n", ns, "--type", "merge", "-p", `{"spec":{"suspend":true}}`)
	h.kubectlMust("wait", `--for=jsonpath={.status.conditions[?(@.type=="Ready")].reason}=Suspended`, "--timeout=30s", "-n", ns, "whe/evaluations")
	held := pub.publish("evaluation.completed", `{"score":0.5}`, 2)

	// The gauges are read from the store when scraped and cached for a few seconds, so
	// the hold shows up a moment later: scrape until nothing is missing, or report what is.
	var missing []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		missing = missing[:0]
		families, labels := exposition(h.scrape())
		for name, label := range promised {
			switch {
			case !families[name]:
				missing = append(missing, fmt.Sprintf("the README lists %s; the dispatcher's /metrics has no such family", name))
			case label != "" && !labels[name][label]:
				missing = append(missing, fmt.Sprintf("the README lists %s{%s}; the dispatcher exports it without a %q label (labels %v)", name, label, label, labels[name]))
			}
		}
		for name, where := range queried {
			if !families[exportedFamily(name, families)] {
				missing = append(missing, fmt.Sprintf("%s queries %s; the dispatcher's /metrics has no such series", where, name))
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Error(m)
	}
	h.kubectlMust("patch", "whe", "evaluations", "-n", ns, "--type", "merge", "-p", `{"spec":{"suspend":false}}`)
	h.waitDelivered(s.receivers["evaluations"], held)
}

// gauge returns the sum of the samples of the metric name whose labels contain match
// (such as `endpoint="evaluations"`) in a scrape of the dispatcher.
func (h *harness) gauge(name, match string) float64 {
	var sum float64
	for _, line := range strings.Split(h.scrape(), "\n") {
		// The value follows the last space; label values may hold spaces themselves.
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || !strings.HasPrefix(line, name+"{") || !strings.Contains(line[:i], match) {
			continue
		}
		value := line[i+1:]
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			h.t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

func (h *harness) scrape() string {
	h.t.Helper()
	resp, err := http.Get("http://" + h.metrics + "/metrics")
	if err != nil {
		h.t.Fatalf("scraping the dispatcher: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		h.t.Fatalf("scraping the dispatcher: %d %v", resp.StatusCode, err)
	}
	return string(body)
}

// chartMetrics returns every herald_ metric name the chart's PrometheusRule and Grafana
// dashboard query, each with the file that queries it.
func chartMetrics(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, file := range []string{"charts/herald/templates/prometheusrule.yaml", "charts/herald/dashboards/herald.json"} {
		for _, name := range regexp.MustCompile(`\bherald_[a-z_]+\b`).FindAllString(string(mustRead(t, filepath.Join(repoRoot, file))), -1) {
			out[name] = file
		}
	}
	if len(out) < 8 {
		t.Fatalf("found only %d herald_ metrics in the chart's alerts and dashboard (%v)", len(out), out)
	}
	return out
}

// exportedFamily maps a queried series name to its family: name_bucket, _sum and _count
// are series of the histogram name.
func exportedFamily(name string, families map[string]bool) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && families[base] {
			return base
		}
	}
	return name
}

// readmeMetrics returns the metric names in the README's "Metrics on the dispatcher's"
// item, each with the label written in braces after it ("" when none).
func readmeMetrics(t *testing.T) map[string]string {
	t.Helper()
	readme := string(mustRead(t, filepath.Join(repoRoot, "README.md")))
	start := strings.Index(readme, "- Metrics on the dispatcher's")
	if start < 0 {
		t.Fatal(`README.md has no "- Metrics on the dispatcher's" item`)
	}
	item := readme[start:]
	if end := strings.Index(item[1:], "\n- "); end >= 0 {
		item = item[:end+1]
	}
	if end := strings.Index(item, "\n\n"); end >= 0 {
		item = item[:end]
	}
	out := map[string]string{}
	for _, m := range regexp.MustCompile("`(herald_[a-z_]+)(?:\\{([a-z_]+)\\})?`").FindAllStringSubmatch(item, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// exposition reads the Prometheus text format: the families declared by # TYPE, and
// the label names seen on each family's samples (histogram series folded into their
// family).
func exposition(text string) (families map[string]bool, labels map[string]map[string]bool) {
	families, labels = map[string]bool{}, map[string]map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = true
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && families[base] {
				name = base
			}
		}
		if labels[name] == nil {
			labels[name] = map[string]bool{}
		}
		if set, _, ok := strings.Cut(rest, "}"); ok {
			for _, pair := range strings.Split(set, ",") {
				if k, _, ok := strings.Cut(pair, "="); ok {
					labels[name][k] = true
				}
			}
		}
	}
	return families, labels
}

// rotationStartsAndEnds rotates the signing secret of every hex-style sample: with
// previousSecretRef set, each delivery carries the old secret's signature in
// X-…-Signature-Previous (checked with the reference receiver and the old secret);
// once previousSecretRef is removed and its Secret deleted, no delivery carries it.
func (h *harness) rotationStartsAndEnds(s *samples, pub *publisher) {
	t := h.t
	// Each hex endpoint and an event type routed to it (and to workspace, which takes
	// "*"); the data passes billing's filter, so invoice.paid also reaches billing.
	types := map[string]string{"workspace": "invoice.paid", failingName: "approval.granted", "evaluations": "evaluation.completed"}
	for name := range types {
		if st := s.endpoints[name].Spec.SignatureStyle(); st == heraldv1.SignatureStandardWebhooks {
			t.Fatalf("%s signs with %s; this step is about the hex styles", name, st)
		}
	}
	old := func(name string) string { return "e2e-old-secret-of-" + name }
	previous := func(name string, got framework.Request) string {
		return got.Header.Get(s.receivers[name].Prefix + "-Signature-Previous")
	}
	// until publishes to every endpoint in turn until each has received a delivery
	// satisfying want: the dispatcher sees a spec change through its informer, a moment
	// after kubectl returns.
	until := func(what string, want func(name string, got framework.Request) bool) {
		t.Helper()
		pending := map[string]bool{"workspace": true, failingName: true, "evaluations": true}
		h.eventually(60*time.Second, what, func() bool {
			for name := range pending {
				got := h.waitDelivered(s.receivers[name], pub.publish(types[name], `{"amount":1500,"rotation":"on"}`, 2))
				if want(name, got) {
					delete(pending, name)
				}
			}
			return len(pending) == 0
		})
	}

	for name := range types {
		h.kubectlMust("create", "secret", "generic", name+"-old", "-n", ns, "--from-literal=secret="+old(name))
		h.kubectlMust("patch", "whe", name, "-n", ns, "--type", "merge",
			"-p", fmt.Sprintf(`{"spec":{"previousSecretRef":{"name":%q,"key":"secret"}}}`, name+"-old"))
	}
	until("every hex endpoint to send X-…-Signature-Previous", func(name string, got framework.Request) bool {
		if previous(name, got) == "" {
			return false
		}
		r := s.receivers[name]
		if !r.Reference(old(name), r.Prefix+"-Signature-Previous", got.Header, got.Body) {
			t.Errorf("%s: X-…-Signature-Previous %q does not verify with the previous secret", name, previous(name, got))
		}
		return true
	})

	for name := range types {
		h.kubectlMust("patch", "whe", name, "-n", ns, "--type", "json", "-p", `[{"op":"remove","path":"/spec/previousSecretRef"}]`)
		h.kubectlMust("delete", "secret", name+"-old", "-n", ns)
	}
	until("every hex endpoint to stop sending X-…-Signature-Previous", func(name string, got framework.Request) bool {
		return previous(name, got) == ""
	})
	// And it stays stopped: the next delivery to each carries one signature only.
	for name, typ := range types {
		got := h.waitDelivered(s.receivers[name], pub.publish(typ, `{"amount":1500,"rotation":"over"}`, 2))
		if p := previous(name, got); p != "" {
			t.Errorf("%s: X-…-Signature-Previous %q after the rotation ended", name, p)
		}
	}
	var ready []string
	for name := range types {
		ready = append(ready, "whe/"+name)
	}
	h.kubectlMust(append([]string{"wait", "--for=condition=Ready", "--timeout=30s", "-n", ns}, ready...)...)
}
