package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/controllers/endpoint"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/internal/outbound"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/pkg/wire"
)

// The dlq and endpoint commands run against a real API server (envtest) with the
// endpoint controller and a dispatcher (dispatcher/app) running in this process. The
// cluster starts on first use only, so the package's other tests stay fast.
var (
	clusterOnce sync.Once
	theCluster  *cluster
	clusterErr  error
)

// Namespaces the dispatcher serves; unserved exists but no dispatcher looks at it.
const (
	nsDLQ      = "cli-dlq"
	nsEnable   = "cli-enable"
	nsUnserved = "cli-unserved"
	nsHistory  = "cli-history"
)

type cluster struct {
	env        *testenv.Env
	client     client.Client
	kubeconfig string // admin, client certificate: good for the API server, not the dispatcher
	dispatcher string // http://127.0.0.1:port
	stop       func()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if theCluster != nil {
		theCluster.stop()
	}
	os.Exit(code)
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	clusterOnce.Do(func() { theCluster, clusterErr = newCluster() })
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	return theCluster
}

func newCluster() (*cluster, error) {
	ctrl.SetLogger(logr.Discard())
	env, err := testenv.Start()
	if err != nil {
		return nil, err
	}
	c := &cluster{env: env}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	c.stop = func() {
		cancel()
		wg.Wait()
		_ = env.Stop()
	}
	fail := func(err error) (*cluster, error) {
		c.stop()
		return nil, err
	}
	if c.client, err = client.New(env.Config, client.Options{Scheme: env.Scheme}); err != nil {
		return fail(err)
	}
	for _, ns := range []string{nsDLQ, nsEnable, nsUnserved, nsHistory} {
		if err := c.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return fail(err)
		}
	}
	admin, err := env.AddUser(envtest.User{Name: "cli-test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fail(err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return fail(err)
	}
	dir, err := os.MkdirTemp("", "herald-cli-")
	if err != nil {
		return fail(err)
	}
	c.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.kubeconfig, kc, 0o600); err != nil {
		return fail(err)
	}

	// The endpoint controller, as herald manager runs it, so Ready is real.
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return fail(err)
	}
	if err := (&endpoint.Reconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("herald-manager"),
		Policy: outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true},
	}).SetupWithManager(mgr); err != nil {
		return fail(err)
	}
	wg.Add(2)
	go func() { defer wg.Done(); _ = mgr.Start(ctx) }()

	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		defer wg.Done()
		// As herald dispatcher runs by default (tokens for Herald's audience only), but
		// for the addresses, the policy and shorter waits.
		conf := config.Default()
		conf.Store.DataDir = filepath.Join(dir, "store")
		conf.Serving = config.Serving{IngestBindAddress: "127.0.0.1:0", HealthProbeBindAddress: "0", MetricsBindAddress: "0"}
		conf.WatchNamespaces = []string{nsDLQ, nsEnable, nsHistory}
		conf.Outbound = outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true}
		conf.Delivery.AckWait, conf.Status.Interval = 5*time.Second, 200*time.Millisecond
		conf.Auth.APIKeys = false
		done <- app.Run(ctx, env.Config, app.Options{
			Config:           conf,
			Authorizer:       app.ClusterAuthorizer(app.AuthOptions{Auth: conf.Auth, Log: logr.Discard()}),
			AdminAuthorizers: app.ClusterAdminAuthorizers(app.AuthOptions{Auth: conf.Auth, Log: logr.Discard()}),
			Log:              logr.Discard(),
			Ready:            ready,
		})
	}()
	select {
	case addr := <-ready:
		c.dispatcher = "http://" + addr
	case err := <-done:
		return fail(fmt.Errorf("dispatcher stopped: %v", err))
	case <-time.After(90 * time.Second):
		return fail(fmt.Errorf("dispatcher did not open its API within 90s"))
	}
	return c, nil
}

// token creates a ServiceAccount with a Role of the given rules in ns and returns a
// token minted for it for Herald's audience with the TokenRequest API (what kubectl
// create token --audience hooks.herald.dev does): what the dispatcher takes.
func (c *cluster) token(t *testing.T, ns, name string, rules ...rbacv1.PolicyRule) string {
	t.Helper()
	c.create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})
	if len(rules) > 0 {
		c.create(t,
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Rules: rules},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}})
	}
	return c.mint(t, ns, name, auth.Audience)
}

// kubeToken mints a token of an existing ServiceAccount for the API server's own
// audience: what a kubeconfig holds.
func (c *cluster) kubeToken(t *testing.T, ns, name string) string {
	t.Helper()
	return c.mint(t, ns, name)
}

func (c *cluster) mint(t *testing.T, ns, name string, audiences ...string) string {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(c.env.Config)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// selfTokenRule lets ServiceAccount name mint tokens of itself, and of nobody else: what
// the CLI needs to send the dispatcher a token for Herald's audience.
func selfTokenRule(name string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}, ResourceNames: []string{name}}
}

// Rules of an operator who publishes and handles dead letters, as the chart's
// herald-publisher and herald-operator grant them (no update or patch).
var (
	publishRule   = rbacv1.PolicyRule{APIGroups: []string{heraldv1.GroupVersion.Group}, Resources: []string{"events"}, Verbs: []string{"create"}}
	operatorRule  = rbacv1.PolicyRule{APIGroups: []string{heraldv1.GroupVersion.Group}, Resources: []string{"webhookendpoints"}, Verbs: []string{"get", "list", "watch", "replay", "enable"}}
	viewerRule    = rbacv1.PolicyRule{APIGroups: []string{heraldv1.GroupVersion.Group}, Resources: []string{"webhookendpoints"}, Verbs: []string{"get"}}
	responsesRule = rbacv1.PolicyRule{APIGroups: []string{heraldv1.GroupVersion.Group}, Resources: []string{"webhookendpoints/responses"}, Verbs: []string{"get"}}
)

func (c *cluster) create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.client.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

// endpointWithSink creates a WebhookEndpoint delivering to sink with a short retry
// schedule, its signing Secret and a subscription to every event type.
func (c *cluster) endpointWithSink(t *testing.T, ns, name string, s *sink, threshold int32, mutate ...func(*heraldv1.WebhookEndpointSpec)) {
	t.Helper()
	spec := heraldv1.WebhookEndpointSpec{
		URL: s.URL, Timeout: "2s",
		Retry:       heraldv1.RetrySpec{Schedule: []string{"10ms"}, JitterPercent: ptr.To[int32](0)},
		AutoDisable: heraldv1.AutoDisableSpec{AfterConsecutiveFailures: ptr.To(threshold)},
	}
	for _, m := range mutate {
		m(&spec)
	}
	c.create(t,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-signing", Namespace: ns}, StringData: map[string]string{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
		&heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec},
		&heraldv1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: name + "-all", Namespace: ns}, Spec: heraldv1.WebhookSubscriptionSpec{
			EndpointRef: heraldv1.LocalObjectReference{Name: name}, EventTypes: []string{"*"},
		}},
	)
}

// sink is a receiver that fails with 500 while failing is set and records the event
// ids it accepted.
type sink struct {
	*httptest.Server
	failing  atomic.Bool
	mu       sync.Mutex
	accepted []string
	attempts map[string]int
}

func newSink(t *testing.T) *sink {
	s := &sink{attempts: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get("webhook-id")
		s.mu.Lock()
		defer s.mu.Unlock()
		s.attempts[id]++
		if s.failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "down for maintenance (%s)", id)
			return
		}
		s.accepted = append(s.accepted, id)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sink) got(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.accepted {
		if a == id {
			return true
		}
	}
	return false
}

func (s *sink) waitAccepted(t *testing.T, ids ...string) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("the receiver to accept %v", ids), func() bool {
		for _, id := range ids {
			if !s.got(id) {
				return false
			}
		}
		return true
	})
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type cliRun struct {
	err            error
	stdout, stderr string
}

// runCLI runs the herald command tree, as main does.
func runCLI(t *testing.T, args ...string) cliRun {
	t.Helper()
	cmd := NewRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(""))
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return cliRun{err: err, stdout: out.String(), stderr: errOut.String()}
}

func mustCLI(t *testing.T, args ...string) cliRun {
	t.Helper()
	r := runCLI(t, args...)
	if r.err != nil {
		t.Fatalf("herald %s: %v\n%s", strings.Join(args, " "), r.err, r.stderr)
	}
	return r
}

// publish sends an event with herald publish and returns how many endpoints it matched.
func publish(t *testing.T, server, token, ns, id, typ string) int {
	t.Helper()
	r := mustCLI(t, "publish", "--server", server, "--token", token, "-n", ns, "--id", id, "--type", typ, "--data", `{"amount": 1}`, "-o", "json")
	var res struct{ Matched int }
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("publish -o json printed %q: %v", r.stdout, err)
	}
	return res.Matched
}

// waitRouted publishes probe events until the dispatcher routes one to the endpoint
// and the receiver has it: the dispatcher's informers learn of the endpoint and of the
// subscription separately. The receiver must accept the probes, or they would end up
// as dead letters of the test.
func waitRouted(t *testing.T, server, token, ns string, s *sink) {
	t.Helper()
	if s.failing.Load() {
		t.Fatal("waitRouted needs a receiver that accepts the probes")
	}
	probe := ""
	for n := 0; probe == ""; n++ {
		if n == 100 {
			t.Fatal("the dispatcher routed no probe event to the endpoint within 20s")
		}
		id := fmt.Sprintf("evt_probe_%s_%d", ns, n)
		if publish(t, server, token, ns, id, "probe.ping") == 1 {
			probe = id
		} else {
			time.Sleep(200 * time.Millisecond)
		}
	}
	s.waitAccepted(t, probe)
}

func deadLetters(t *testing.T, args ...string) wire.DeadLetterList {
	t.Helper()
	r := mustCLI(t, append([]string{"dlq", "list", "-o", "json"}, args...)...)
	var list wire.DeadLetterList
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("dlq list -o json printed %q: %v", r.stdout, err)
	}
	return list
}

func ids(list wire.DeadLetterList) []string {
	var out []string
	for _, d := range list.Items {
		out = append(out, d.EventID)
	}
	return out
}

func TestDLQ_ListsAndReplaysThroughTheDispatcherAPI(t *testing.T) {
	isolate(t)
	c := startCluster(t)
	s := newSink(t)
	// 0: never disabled, so replays are delivered at once.
	c.endpointWithSink(t, nsDLQ, "orders", s, 0)
	operator := c.token(t, nsDLQ, "operator", publishRule, operatorRule, selfTokenRule("operator"))
	t.Setenv(envHeraldURL, c.dispatcher)
	t.Setenv(envHeraldToken, operator)
	waitRouted(t, c.dispatcher, operator, nsDLQ, s)

	s.failing.Store(true)
	publish(t, c.dispatcher, operator, nsDLQ, "evt_a", "order.created")
	publish(t, c.dispatcher, operator, nsDLQ, "evt_b", "order.paid")
	eventually(t, 30*time.Second, "two dead letters", func() bool {
		return len(deadLetters(t, "orders", "-n", nsDLQ).Items) == 2
	})

	// The table names what a person needs to decide: id, type, attempts, why, answer.
	r := mustCLI(t, "dlq", "list", "orders", "-n", nsDLQ)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "SEQ ") || !strings.Contains(lines[0], "EVENT ID") {
		t.Fatalf("table:\n%s", r.stdout)
	}
	for _, l := range lines[1:] {
		if !strings.Contains(l, "RetriesExhausted") || !strings.Contains(l, "HTTP 500") || !(strings.Contains(l, "evt_a") || strings.Contains(l, "evt_b")) {
			t.Errorf("row %q lacks the event, the reason or the last answer", l)
		}
	}
	if got := ids(deadLetters(t, "orders", "-n", nsDLQ, "--event-type", "order.paid")); len(got) != 1 || got[0] != "evt_b" {
		t.Errorf("--event-type order.paid listed %v, want [evt_b]", got)
	}
	r = mustCLI(t, "dlq", "list", "orders", "-n", nsDLQ, "--limit", "1")
	if n := strings.Count(strings.TrimSpace(r.stdout), "\n"); n != 1 || !strings.Contains(r.stderr, "More dead letters than --limit 1") {
		t.Errorf("--limit 1: %d rows, stderr %q", n, r.stderr)
	}
	r = mustCLI(t, "dlq", "list", "orders", "-n", nsDLQ, "--event-type", "nothing.here")
	if r.stdout != "" || !strings.Contains(r.stderr, "No dead letters of type nothing.here for WebhookEndpoint cli-dlq/orders") {
		t.Errorf("an empty list printed %q / %q", r.stdout, r.stderr)
	}

	// Without --token or HERALD_TOKEN, the kubeconfig's ServiceAccount mints a token for
	// Herald (its own token is for the API server).
	t.Setenv(envHeraldToken, "")
	t.Setenv("KUBECONFIG", tokenKubeconfig(t, c, nsDLQ, c.kubeToken(t, nsDLQ, "operator")))
	if got := ids(deadLetters(t, "orders")); len(got) != 2 {
		t.Errorf("with the kubeconfig's token and namespace: %v", got)
	}

	// Replay one by id once the receiver recovers: only it arrives, with its id.
	s.failing.Store(false)
	r = mustCLI(t, "dlq", "replay", "orders", "--event-id", "evt_b")
	if !strings.Contains(r.stdout, "Replayed 1 dead letter of WebhookEndpoint cli-dlq/orders") {
		t.Errorf("replay printed %q", r.stdout)
	}
	s.waitAccepted(t, "evt_b")
	if got := ids(deadLetters(t, "orders")); len(got) != 1 || got[0] != "evt_a" {
		t.Errorf("left after replaying evt_b: %v", got)
	}
	r = mustCLI(t, "dlq", "replay", "orders", "--event-type", "nothing.here")
	if !strings.Contains(r.stdout, "No dead letter of WebhookEndpoint cli-dlq/orders matched; herald dlq list orders -n cli-dlq shows what there is") {
		t.Errorf("a replay selecting nothing printed %q", r.stdout)
	}
	r = mustCLI(t, "dlq", "replay", "orders", "--event-type", "order.created", "-o", "json")
	var res ReplayResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Replayed == nil || *res.Replayed != 1 || res.Via != "api" {
		t.Errorf("replay --event-type -o json printed %q (%v)", r.stdout, err)
	}
	s.waitAccepted(t, "evt_a")
	r = mustCLI(t, "dlq", "replay", "orders", "--all")
	if !strings.Contains(r.stdout, "has no dead letters to replay") {
		t.Errorf("replaying an empty list printed %q", r.stdout)
	}
}

// tokenKubeconfig is a kubeconfig for the envtest API server whose user is a token and
// whose context namespace is ns.
func tokenKubeconfig(t *testing.T, c *cluster, ns, token string) string {
	t.Helper()
	return writeFile(t, "kubeconfig", fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: %s
    insecure-skip-tls-verify: true
contexts:
- name: envtest
  context: {cluster: envtest, user: sa, namespace: %s}
current-context: envtest
users:
- name: sa
  user:
    token: %q
`, c.env.Config.Host, ns, token))
}

func TestDLQ_ErrorsNameTheProblemAndTheFix(t *testing.T) {
	isolate(t)
	c := startCluster(t)
	s := newSink(t)
	c.endpointWithSink(t, nsDLQ, "refusals", s, 0)
	viewer := c.token(t, nsDLQ, "viewer", viewerRule)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	notDispatcher := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notDispatcher.Close)
	eventually(t, 20*time.Second, "the dispatcher to know the endpoint", func() bool {
		return runCLI(t, "dlq", "list", "refusals", "-n", nsDLQ, "--server", c.dispatcher, "--token", viewer).err == nil
	})

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a token that may read but not replay",
			[]string{"dlq", "replay", "refusals", "--all", "--server", c.dispatcher, "--token", viewer},
			"may not replay webhookendpoints.hooks.herald.dev in namespace cli-dlq; grant it (as a user who may create RoleBindings in cli-dlq):\n" +
				"  kubectl create rolebinding viewer-herald-operator -n cli-dlq --clusterrole=herald-operator --serviceaccount=cli-dlq:viewer\n" +
				"The dispatcher keeps a refusal for 10s: retry 10s after the binding is made.\n" +
				"Or use --via-annotation, which needs only the API server but patch on the WebhookEndpoint."},
		{"a kubeconfig user who may not patch, with --via-annotation",
			[]string{"dlq", "replay", "refusals", "--all", "--via-annotation", "--kubeconfig", tokenKubeconfig(t, c, nsDLQ, c.kubeToken(t, nsDLQ, "viewer"))},
			"the kubeconfig user needs patch on webhookendpoints.hooks.herald.dev in namespace \"cli-dlq\". Grant it (as a user who may create RoleBindings there):\n" +
				"  kubectl create rolebinding viewer-herald-editor -n cli-dlq --clusterrole=herald-editor --serviceaccount=cli-dlq:viewer\n" +
				"Or drop --via-annotation: the dispatcher's endpoint API replays with the verb replay alone (herald-operator)"},
		{"a token that is no token",
			[]string{"dlq", "list", "refusals", "--server", c.dispatcher, "--token", "not-a-token"},
			"the dispatcher refused the credentials while listing dead letters"},
		{"an endpoint the dispatcher does not know",
			[]string{"dlq", "list", "nope", "--server", c.dispatcher, "--token", viewer},
			`the dispatcher knows no WebhookEndpoint "nope" in namespace "cli-dlq": check the name and -n`},
		{"no dispatcher at the address",
			[]string{"dlq", "list", "refusals", "--server", closed, "--token", viewer},
			"cannot reach the dispatcher at " + closed},
		{"a server that is not the dispatcher",
			[]string{"dlq", "list", "refusals", "--server", notDispatcher.URL, "--token", viewer},
			"which is not the endpoint API's error format"},
		{"a kubeconfig user who is not a ServiceAccount",
			[]string{"dlq", "list", "refusals", "--server", c.dispatcher, "--kubeconfig", c.kubeconfig},
			`the kubeconfig's user "cli-test-admin" is not a ServiceAccount: the CLI sends the dispatcher only short-lived tokens bound to Herald's audience (hooks.herald.dev)`},
		{"a token for the API server's audience",
			[]string{"dlq", "list", "refusals", "--server", c.dispatcher, "--token", c.kubeToken(t, nsDLQ, "viewer")},
			`not for Herald's ("hooks.herald.dev"): use a token for that audience, such as ` + "`kubectl create token NAME --audience hooks.herald.dev`"},
		{"the annotation cannot select",
			[]string{"dlq", "replay", "refusals", "--event-id", "evt_x", "--via-annotation", "--kubeconfig", c.kubeconfig},
			"--via-annotation replays every dead letter of the endpoint: use it with --all"},
		{"no selection",
			[]string{"dlq", "replay", "refusals", "--token", viewer},
			"at least one of the flags in the group [event-id event-type all since until] is required"},
		{"two selections",
			[]string{"dlq", "replay", "refusals", "--all", "--event-type", "a.b", "--token", viewer},
			"if any flags in the group [event-id event-type all] are set none of the others can be"},
		{"a limit the API refuses",
			[]string{"dlq", "list", "refusals", "--limit", "0", "--token", viewer},
			"--limit 0 is out of range: give 1 to 1000"},
		{"no endpoint named",
			[]string{"dlq", "list", "--token", viewer},
			"name the WebhookEndpoint, e.g. herald dlq list billing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, append(tc.args, "-n", nsDLQ)...)
			if r.err == nil || !strings.Contains(r.err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", r.err, tc.want)
			}
		})
	}
}
