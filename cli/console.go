package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/console"
	"github.com/herald-dev/herald/internal/logging"
	heraldclient "github.com/herald-dev/herald/pkg/client"
	"github.com/herald-dev/herald/pkg/wire"
)

type consoleOptions struct {
	kube     kubeOptions
	api      apiOptions
	address  string
	open     bool
	pageSize int
	// forward is the dispatcher's Service (NAMESPACE/NAME) to port-forward to when
	// neither --server nor $HERALD_URL says where the dispatcher is.
	forward string
}

// defaultForward is the Service the chart's manager makes for the dispatcher.
const defaultForward = publishedCANamespace + "/" + wire.DefaultService

func newConsoleCommand() *cobra.Command {
	o := &consoleOptions{}
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Serve a web console of deliveries on 127.0.0.1, acting as you",
		Long: `Serve a web console on 127.0.0.1 that shows, for the namespaces you may read, the
WebhookEndpoints with their state and counters, a chart of the last hour's attempts,
the subscriptions and their filter errors; an endpoint's attempts, dead letters and how
to verify its signatures; an event's deliveries by id. It updates as deliveries happen,
and re-enables endpoints, replays dead letters and resends events after a confirmation.

It acts with your identity and nothing more: the API server is read with the
kubeconfig's credentials (--kubeconfig, --context), the dispatcher's endpoint API with
a token for Herald's audience, chosen as the other commands choose it (--server or
$` + envHeraldURL + `, --token or $` + envHeraldToken + `, else one the kubeconfig's
ServiceAccount mints). With neither --server nor $` + envHeraldURL + `, it
port-forwards to the dispatcher's Service (--port-forward, as kubectl port-forward
does, as you: create on pods/portforward), and where that fails it tries
` + defaultIngestURL + `. What you may not see with kubectl or the endpoint API, it does
not show; a refusal shows the command that grants what is missing.

The address it prints carries a secret: only a browser holding it is answered. It runs
until interrupted (Ctrl-C).`,
		Example: `  herald console
  herald console -n shop --open=false
  herald console --address 127.0.0.1:8099
  herald console --port-forward hooks/herald-dispatcher   # the chart installed in namespace hooks`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	fs := cmd.Flags()
	o.kube.bind(fs)
	o.api.bind(fs)
	fs.StringVar(&o.address, "address", "127.0.0.1:0", "loopback address to serve on; port 0 picks a free one")
	fs.BoolVar(&o.open, "open", true, "open the console in a browser, where the machine has one")
	fs.IntVar(&o.pageSize, "page-size", 100, "endpoints per page unless the page asks for another size (at most 1000)")
	fs.StringVar(&o.forward, "port-forward", defaultForward, "with neither --server nor $"+envHeraldURL+": the dispatcher's Service (NAMESPACE/NAME) to reach through a port-forward the console keeps while it runs; empty: "+defaultIngestURL)
	return cmd
}

func (o *consoleOptions) run(cmd *cobra.Command) error {
	host, _, err := net.SplitHostPort(o.address)
	if err != nil {
		return fmt.Errorf("--address %q is not host:port: %w", o.address, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--address %s is not a loopback address: the console acts with your credentials, so it serves only this machine (127.0.0.1)", o.address)
	}
	if o.forward != "" {
		if fns, fname, ok := strings.Cut(o.forward, "/"); !ok || fns == "" || fname == "" {
			return fmt.Errorf("--port-forward %q is not NAMESPACE/NAME of a Service, such as %s", o.forward, defaultForward)
		}
	}
	ns, err := o.kube.Namespace()
	if err != nil {
		return err
	}
	cfg, err := o.kube.RESTConfig()
	if err != nil {
		return err
	}
	kc, err := console.NewKubeCluster(cfg, ns)
	if err != nil {
		return err
	}
	d, err := o.dispatcher(cmd.Context(), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	srv, err := console.New(console.Options{
		Cluster: consoleCluster{kc}, Deliveries: d, Actions: d,
		Prog: progName(cmd), PageSize: o.pageSize, Log: logging.New(true, 0).WithName("console"),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.address)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.address, err)
	}
	srv.SetHost(ln.Addr().String())
	fmt.Fprintf(cmd.OutOrStdout(), "Herald console for namespace %s (and the others you may read), dispatcher %s:\n  %s\nCtrl-C stops it.\n",
		ns, d.base.Redacted(), srv.URL())
	if o.open {
		openBrowser(srv.URL())
	}
	return srv.Serve(cmd.Context(), ln)
}

// openBrowser opens url where the machine has a desktop; a headless machine prints the
// address only.
func openBrowser(url string) {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return
		}
		cmd = exec.Command("xdg-open", url)
	}
	if cmd.Start() == nil {
		go func() { _ = cmd.Wait() }()
	}
}

// consoleCluster is the console's reader of the API server with the CLI's advice on
// its errors (kubeError: the RoleBinding to create, as herald endpoint status prints it).
type consoleCluster struct{ *console.KubeCluster }

func (c consoleCluster) Namespaces(ctx context.Context) ([]string, error) {
	out, err := c.KubeCluster.Namespaces(ctx)
	if err != nil {
		return nil, kubeError(err, "", "", "list")
	}
	return out, nil
}

func (c consoleCluster) Endpoints(ctx context.Context, ns string, p console.Page) (*heraldv1.WebhookEndpointList, error) {
	l, err := c.KubeCluster.Endpoints(ctx, ns, p)
	if err != nil {
		return nil, kubeError(err, ns, "", "list")
	}
	return l, nil
}

func (c consoleCluster) Endpoint(ctx context.Context, ns, name string) (*heraldv1.WebhookEndpoint, error) {
	ep, err := c.KubeCluster.Endpoint(ctx, ns, name)
	if err != nil {
		return nil, kubeError(err, ns, name, "get")
	}
	return ep, nil
}

func (c consoleCluster) Subscriptions(ctx context.Context, ns string, p console.Page) (*heraldv1.WebhookSubscriptionList, error) {
	l, err := c.KubeCluster.Subscriptions(ctx, ns, p)
	if err != nil {
		if apierrors.IsForbidden(err) {
			user := ""
			if m := kubeForbiddenUser.FindStringSubmatch(err.Error()); m != nil {
				user = m[1]
			}
			return nil, fmt.Errorf("the API server refused: %v; the kubeconfig user needs list on webhooksubscriptions.hooks.herald.dev in namespace %q. Grant it (as a user who may create RoleBindings there):\n  %s",
				err, ns, bindHint(user, operatorClusterRole, ns))
		}
		return nil, kubeError(err, ns, "", "list")
	}
	return l, nil
}

func (c consoleCluster) WatchEndpoints(ctx context.Context, ns, rv string) (watch.Interface, error) {
	w, err := c.KubeCluster.WatchEndpoints(ctx, ns, rv)
	if err != nil {
		return nil, kubeError(err, ns, "", "watch")
	}
	return w, nil
}

// consoleDispatcher is the console's client of the endpoint API: the CLI's, with its
// refusals and their advice, and a token minted again before it expires (the console
// runs for hours; a minted token lives heraldTokenLifetime).
type consoleDispatcher struct {
	base   *url.URL
	rt     http.RoundTripper
	kube   *kubeOptions
	tokens *tokenSource
}

var (
	_ console.Deliveries = (*consoleDispatcher)(nil)
	_ console.Actions    = (*consoleDispatcher)(nil)
)

func (o *consoleOptions) dispatcher(ctx context.Context, stderr io.Writer) (*consoleDispatcher, error) {
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	server := o.api.server
	if server == "" && os.Getenv(envHeraldURL) == "" && o.forward != "" {
		// The forward lives as long as the console (ctx), not the set-up's timeout.
		addr, err := o.portForward(tctx, ctx)
		if err != nil {
			// Someone following the CLI's advice may run kubectl port-forward themselves.
			fmt.Fprintf(stderr, "No port-forward to the dispatcher (%v); using %s: %s\n", err, defaultIngestURL, unreachableHint())
		} else {
			server = addr
		}
	}
	base, err := ingestURL(server)
	if err != nil {
		return nil, err
	}
	rt, err := dispatcherTransport(tctx, base, &o.kube, o.api.caFile)
	if err != nil {
		return nil, err
	}
	return &consoleDispatcher{base: base, rt: rt, kube: &o.kube, tokens: &tokenSource{kube: &o.kube, flag: o.api.token}}, nil
}

// portForward forwards a local port to the dispatcher's Service and returns its URL:
// https when the chart's manager publishes the dispatcher's CA (its certificate names
// 127.0.0.1), else http. setup bounds the set-up, life the forward.
func (o *consoleOptions) portForward(setup, life context.Context) (string, error) {
	ns, name, _ := strings.Cut(o.forward, "/") // checked by run
	cfg, err := o.kube.RESTConfig()
	if err != nil {
		return "", err
	}
	addr, err := portForward(setup, life, cfg, ns, name, wire.Port)
	if err != nil {
		return "", err
	}
	scheme := "http"
	if publishedCA(setup, &o.kube) != "" {
		scheme = "https"
	}
	return scheme + "://" + addr, nil
}

// tokenSource keeps the credential for the dispatcher: a given token as it is, a
// minted one until half its life is gone.
type tokenSource struct {
	kube *kubeOptions
	flag string

	mu      sync.Mutex
	cred    credential
	expires time.Time
}

func (t *tokenSource) get(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cred.token != "" && (!t.cred.minted || time.Now().Before(t.expires)) {
		return t.cred.token, nil
	}
	cred, err := heraldCredential(ctx, t.kube, t.flag)
	if err != nil {
		return "", err
	}
	t.cred, t.expires = cred, time.Now().Add(heraldTokenLifetime*time.Second/2)
	return cred.token, nil
}

func (d *consoleDispatcher) api(ctx context.Context, ns string) (*endpointAPI, error) {
	token, err := d.tokens.get(ctx)
	if err != nil {
		return nil, credentialError(err,
			"start the console with --token or "+envHeraldToken+" set to a token for audience "+wire.Audience+" allowed on webhookendpoints.hooks.herald.dev",
			newAccountHint(operatorClusterRole, ns))
	}
	c, err := newClient(d.base, d.rt, token)
	if err != nil {
		return nil, err
	}
	return &endpointAPI{c: c, namespace: ns, token: token}, nil
}

// withheld turns the dispatcher's note on withheld response bodies into the CLI's,
// which names the grant.
func withheld(note, ns string) string {
	if note == "" {
		return ""
	}
	var b bytes.Buffer
	withheldNote(&b, note, ns)
	return b.String()
}

func (d *consoleDispatcher) DeadLetters(ctx context.Context, ns, name string, limit int) (*wire.DeadLetterList, error) {
	api, err := d.api(ctx, ns)
	if err != nil {
		return nil, err
	}
	l, err := api.endpoint(name).DeadLetters(ctx, heraldclient.DeadLetterQuery{Limit: limit})
	if err != nil {
		return nil, api.explain(ctx, err, name, "listing dead letters", wire.VerbRead, "")
	}
	return &l, nil
}

func (d *consoleDispatcher) Attempts(ctx context.Context, ns, name, since string, limit int) (*wire.AttemptList, error) {
	api, err := d.api(ctx, ns)
	if err != nil {
		return nil, err
	}
	l, err := api.endpoint(name).Attempts(ctx, heraldclient.AttemptQuery{Limit: limit, Since: since})
	if err != nil {
		return nil, api.explain(ctx, err, name, "reading the attempt log", wire.VerbRead, "")
	}
	l.BodiesWithheld = withheld(l.BodiesWithheld, ns)
	return &l, nil
}

func (d *consoleDispatcher) Event(ctx context.Context, ns, id string) (*wire.EventHistory, error) {
	api, err := d.api(ctx, ns)
	if err != nil {
		return nil, err
	}
	h, err := api.c.EventHistory(ctx, ns, id)
	if err != nil {
		return nil, api.explain(ctx, err, "", "reading an event's history", wire.VerbRead, "")
	}
	h.BodiesWithheld = withheld(h.BodiesWithheld, ns)
	return &h, nil
}

// Summary counts the attempts of the endpoint name, or of the whole namespace when name
// is "".
func (d *consoleDispatcher) Summary(ctx context.Context, ns, name string, minutes int) (*wire.AttemptSummary, error) {
	api, err := d.api(ctx, ns)
	if err != nil {
		return nil, err
	}
	var s wire.AttemptSummary
	if name != "" {
		s, err = api.endpoint(name).AttemptSummary(ctx, minutes)
	} else {
		s, err = api.c.AttemptSummary(ctx, ns, minutes)
	}
	if err != nil {
		return nil, api.explain(ctx, err, name, "reading the attempt summary", wire.VerbRead, "")
	}
	return &s, nil
}

func (d *consoleDispatcher) Enable(ctx context.Context, ns, name string) (*wire.EnableResponse, error) {
	api, err := d.api(ctx, ns)
	if err != nil {
		return nil, err
	}
	r, err := api.endpoint(name).Enable(ctx)
	if err != nil {
		return nil, api.explain(ctx, err, name, "re-enabling the endpoint", wire.VerbEnable, "")
	}
	return &r, nil
}

func (d *consoleDispatcher) ReplayDeadLetters(ctx context.Context, ns, name string, req wire.ReplayRequest) (*wire.ReplayResponse, error) {
	api, err := d.api(ctx, ns)
	if err != nil {
		return nil, err
	}
	r, err := api.endpoint(name).ReplayDeadLetters(ctx, req)
	if err != nil {
		return nil, api.explain(ctx, err, name, "replaying dead letters", wire.VerbReplay, "")
	}
	return &r, nil
}

func (d *consoleDispatcher) Replay(ctx context.Context, ns, name string, req wire.ReplaySelectionRequest) (*wire.ReplayStarted, error) {
	api, err := d.api(ctx, ns)
	if err != nil {
		return nil, err
	}
	r, err := api.endpoint(name).Replay(ctx, req)
	if err != nil {
		return nil, api.explain(ctx, err, name, "replaying", wire.VerbReplay, "")
	}
	return &r, nil
}
