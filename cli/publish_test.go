package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/ingest"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/router"
)

// dispatcherIngest is the dispatcher's own route (app.NewPipeline: ingest, accept with
// its dedupe, the real store) behind the real ingest handler. Namespace "shop" has two
// held endpoints that every event is routed to, so what the CLI sent stays in the store
// to be read back. Token "producer" may publish into "shop" only; token "stranger" is
// valid nowhere.
type dispatcherIngest struct {
	t    *testing.T
	p    *app.Pipeline
	mu   sync.Mutex
	seen []queue.Delivery
}

func ingestServer(t *testing.T) (*httptest.Server, *dispatcherIngest) {
	t.Helper()
	authz := auth.AuthorizerFunc(func(_ context.Context, r *http.Request, ns string) (auth.Identity, error) {
		tok, ok := auth.BearerToken(r)
		switch {
		case !ok:
			return auth.Identity{}, auth.ErrNoCredentials
		case tok != "producer":
			return auth.Identity{}, auth.ErrUnauthenticated
		case ns != "shop":
			return auth.Identity{Name: "system:serviceaccount:shop:producer"}, auth.ErrForbidden
		}
		return auth.Identity{Name: "system:serviceaccount:shop:producer", Method: auth.MethodToken}, nil
	})
	conf := config.Default()
	conf.Store.DataDir, conf.Ingest.MaxBodyBytes = t.TempDir(), 4096
	p, err := app.NewPipeline(context.Background(), app.PipelineOptions{Config: conf, Authorizer: authz, WithoutOutcome: true, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	for _, ep := range []string{"billing", "audit"} {
		p.Engine.Upsert(delivery.Key{Namespace: "shop", Name: ep, UID: "uid-" + ep}, delivery.EndpointConfig{Hold: heraldv1.ReasonSuspended})
		p.Router.Set("shop", router.Subscription{Name: "to-" + ep, Endpoint: ep, Patterns: []string{"*"}})
	}
	srv := httptest.NewServer(p.Ingest)
	t.Cleanup(srv.Close)
	return srv, &dispatcherIngest{t: t, p: p}
}

// received reads what the store holds for namespace "shop" (one endpoint's copy of
// each event), in the order it was accepted.
func (d *dispatcherIngest) received(ns string) []queue.Delivery {
	d.t.Helper()
	if ns != "shop" {
		d.t.Fatalf("only shop has endpoints here, not %q", ns)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	held, err := d.p.Store.FetchHeld(context.Background(), queue.Endpoint{Namespace: ns, Name: "billing", UID: "uid-billing"}, 100, queue.ConsumerOptions{AckWait: time.Minute})
	if err != nil {
		d.t.Fatal(err)
	}
	for _, p := range held {
		d.seen = append(d.seen, p.Delivery)
		if err := p.Delivered(); err != nil {
			d.t.Fatal(err)
		}
	}
	return append([]queue.Delivery(nil), d.seen...)
}

// kubeconfigFile writes a kubeconfig whose current context has namespace ns and whose
// user authenticates with token ("" for a client-certificate user).
func kubeconfigFile(t *testing.T, ns, token string) string {
	t.Helper()
	user := fmt.Sprintf("    token: %q", token)
	if token == "" {
		user = "    client-certificate-data: ZHVtbXk=\n    client-key-data: ZHVtbXk="
	}
	return writeFile(t, "kubeconfig", fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:6443
contexts:
- name: local
  context:
    cluster: local
    user: dev
    namespace: %s
- name: other
  context:
    cluster: local
    user: dev
    namespace: elsewhere
current-context: local
users:
- name: dev
  user:
%s
`, ns, user))
}

type publishRun struct {
	err            error
	stdout, stderr string
}

func runPublish(t *testing.T, stdin string, args ...string) publishRun {
	t.Helper()
	cmd := newPublishCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return publishRun{err: err, stdout: out.String(), stderr: errOut.String()}
}

// isolate keeps the developer's own environment out of the test.
func isolate(t *testing.T) {
	t.Setenv(envHeraldURL, "")
	t.Setenv(envHeraldToken, "")
	t.Setenv("KUBECONFIG", writeFile(t, "empty-kubeconfig", ""))
	t.Setenv("HOME", t.TempDir())
}

func TestPublish_SendsTheEventAndPrintsTheResult(t *testing.T) {
	isolate(t)
	srv, acc := ingestServer(t)

	r := runPublish(t, "", "--server", srv.URL, "--token", "producer", "-n", "shop",
		"--type", "order.created", "--id", "ord-1001", "--source", "checkout", "--data", `{"amount": 1500}`, "-o", "json")
	if r.err != nil {
		t.Fatalf("publish: %v\n%s", r.err, r.stderr)
	}
	var res ingest.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("-o json printed %q: %v", r.stdout, err)
	}
	if res != (ingest.Result{ID: "ord-1001", Matched: 2}) {
		t.Fatalf("result %+v", res)
	}
	got := acc.received("shop")
	if len(got) != 1 || got[0].EventType != "order.created" || got[0].EventSource != "checkout" || string(got[0].Data) != `{"amount": 1500}` {
		t.Fatalf("the dispatcher received %+v", got)
	}

	// The same id again is a duplicate, shown in the table.
	r = runPublish(t, "", "--server", srv.URL, "--token", "producer", "-n", "shop",
		"--type", "order.created", "--id", "ord-1001", "--data", `{"amount": 1500}`)
	if r.err != nil || !strings.Contains(r.stdout, "ord-1001") || !strings.Contains(r.stdout, "true") {
		t.Fatalf("repeat: err %v, table %q", r.err, r.stdout)
	}
	if strings.Fields(strings.Split(r.stdout, "\n")[0])[0] != "ID" {
		t.Fatalf("table has no header: %q", r.stdout)
	}
}

// The ingest API delivers data byte for byte, so the CLI must send the file as it is:
// a receiver that hashes or signs the data, or a person comparing it with what they
// sent, sees the same bytes. Whitespace, key order and characters encoding/json would
// escape (<, >, &) are the usual casualties of a re-encoding.
func TestPublish_DataFileIsSentByteForByte(t *testing.T) {
	isolate(t)
	srv, acc := ingestServer(t)
	data := "{\n  \"z\": 1,\n  \"a\": [1,   2],\n  \"note\": \"<b>&amp;</b> caf\u00e9 \\u00e9\"\n}"
	file := writeFile(t, "invoice.json", data+"\n")
	r := runPublish(t, "", "--server", srv.URL, "--token", "producer", "-n", "shop", "--type", "invoice.paid", "--data-file", file)
	if r.err != nil {
		t.Fatalf("publish --data-file: %v", r.err)
	}
	got := acc.received("shop")
	if len(got) != 1 {
		t.Fatalf("the dispatcher received %d events, want 1", len(got))
	}
	if string(got[0].Data) != data {
		t.Fatalf("the dispatcher received data\n%s\nwant the file's bytes\n%s", got[0].Data, data)
	}
}

func TestPublish_DefaultsFromEnvironmentAndKubeconfig(t *testing.T) {
	isolate(t)
	srv, acc := ingestServer(t)

	// Server and token from the environment, namespace from the kubeconfig context,
	// data from stdin, and an id generated here.
	t.Setenv(envHeraldURL, srv.URL)
	t.Setenv(envHeraldToken, "producer")
	t.Setenv("KUBECONFIG", kubeconfigFile(t, "shop", ""))
	r := runPublish(t, `{"plan": "pro"}`+"\n", "--type", "subscription.started", "--data-file", "-", "-o", "yaml")
	if r.err != nil {
		t.Fatalf("publish: %v", r.err)
	}
	got := acc.received("shop")
	if len(got) != 1 || !strings.HasPrefix(got[0].EventID, "evt_") || !strings.Contains(r.stdout, "id: "+got[0].EventID) {
		t.Fatalf("received %+v, printed %q", got, r.stdout)
	}

	// --context picks another context and with it another namespace.
	t.Setenv("KUBECONFIG", kubeconfigFile(t, "shop", "producer"))
	r = runPublish(t, "", "--context", "other", "--type", "a.b", "--data", "1")
	if r.err == nil || !strings.Contains(r.err.Error(), `may not create events.hooks.herald.dev in namespace "elsewhere"`) {
		t.Fatalf("publish into the other context's namespace: %v", r.err)
	}
	if n := len(acc.received("shop")); n != 1 {
		t.Fatalf("shop received %d events, want 1", n)
	}
}

func TestPublish_ErrorsNameTheProblemAndTheFix(t *testing.T) {
	isolate(t)
	srv, _ := ingestServer(t)
	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	notIngest := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notIngest.Close)

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{
			name: "a bad token",
			args: []string{"--server", srv.URL, "--token", "nope", "-n", "shop"},
			want: "the ingest API refused the credentials (the bearer token is invalid, expired or revoked): pass --token or set HERALD_TOKEN to a ServiceAccount token allowed to create events.hooks.herald.dev in namespace \"shop\"",
		},
		{
			name: "no credentials anywhere",
			args: []string{"--server", srv.URL, "-n", "shop"},
			want: "no credentials for the dispatcher: pass --token or set HERALD_TOKEN",
		},
		{
			name: "an API server that does not answer who the kubeconfig's user is",
			args: []string{"--server", srv.URL},
			env:  map[string]string{"KUBECONFIG": kubeconfigFile(t, "shop", "producer")},
			want: "asking the API server at https://127.0.0.1:6443 who the kubeconfig's user is (SelfSubjectReview)",
		},
		{
			name: "a namespace the token may not publish into",
			args: []string{"--server", srv.URL, "--token", "producer", "-n", "billing"},
			want: "grant it (as a user who may create RoleBindings in billing):\n" +
				"  kubectl create rolebinding producer-herald-publisher -n billing --clusterrole=herald-publisher --serviceaccount=shop:producer\n" +
				"The dispatcher keeps a refusal for 10s: publish again 10s after the binding is made.",
		},
		{
			name: "a dispatcher that is not running",
			args: []string{"--server", closed, "--token", "producer", "-n", "shop"},
			want: "cannot reach the ingest API at " + closed,
		},
		{
			name: "a server that is not the ingest API",
			args: []string{"--server", notIngest.URL, "--token", "producer", "-n", "shop"},
			want: "which is not the ingest API's error format: is --server (or HERALD_URL) the dispatcher's ingest address?",
		},
		{
			name: "HERALD_URL that is not a URL",
			env:  map[string]string{envHeraldURL: "127.0.0.1:8080"},
			args: []string{"--token", "producer"},
			want: `$HERALD_URL "127.0.0.1:8080" is not a URL`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append(tc.args, "--type", "order.created", "--data", `{"amount": 1}`)
			r := runPublish(t, "", args...)
			if r.err == nil || !strings.Contains(r.err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", r.err, tc.want)
			}
		})
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"data that is not JSON", []string{"--type", "a.b", "--data", "{amount: 1}"}, "the event data is not valid JSON"},
		{"no data", []string{"--type", "a.b"}, "at least one of the flags in the group [data data-file] is required"},
		{"an event type the API refuses", []string{"--type", "order created", "--data", "{}"}, `the ingest API refused the event: type "order created" may only contain`},
		{"data over the size limit", []string{"--type", "a.b", "--data", `"` + strings.Repeat("x", 5000) + `"`}, "raise the dispatcher's --max-body-bytes"},
		{"an output format that does not exist", []string{"--type", "a.b", "--data", "{}", "-o", "xml"}, "--output \"xml\" is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runPublish(t, "", append([]string{"--server", srv.URL, "--token", "producer", "-n", "shop"}, tc.args...)...)
			if r.err == nil || !strings.Contains(r.err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", r.err, tc.want)
			}
		})
	}
}
