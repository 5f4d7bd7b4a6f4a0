package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/duration"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/version"
	heraldclient "github.com/herald-dev/herald/pkg/client"
	"github.com/herald-dev/herald/pkg/wire"
)

// apiOptions select the dispatcher's endpoint API and the credential for it, the way
// herald publish selects the ingest API: --server, else $HERALD_URL, else the default;
// --token, else $HERALD_TOKEN, else a token for Herald's audience minted by the
// kubeconfig's ServiceAccount (heraldCredential).
type apiOptions struct {
	server string
	token  string
	caFile string
}

func (o *apiOptions) bind(fs *pflag.FlagSet) {
	fs.StringVar(&o.server, "server", "", "URL of the dispatcher (its ingest address, which also serves the endpoint API; default $"+envHeraldURL+", else "+defaultIngestURL+")")
	fs.StringVar(&o.caFile, "certificate-authority", "", "PEM file of the CA to check an https:// dispatcher's certificate with (default $"+envHeraldCAFile+", else the CA the manager publishes in ConfigMap "+publishedCANamespace+"/"+publishedCAName+", besides the system's)")
	fs.StringVar(&o.token, "token", "", "bearer token for audience "+wire.Audience+" of a ServiceAccount allowed get (list, read), replay or enable on webhookendpoints.hooks.herald.dev (default $"+envHeraldToken+", else one the kubeconfig's ServiceAccount mints for itself)")
}

// endpointAPI is the endpoint API of the dispatcher (pkg/client) for one namespace, with
// the advice the commands give when a call fails.
type endpointAPI struct {
	c         *heraldclient.Client
	namespace string
	token     string // the bearer token sent, for advice on a 401
}

func (o *apiOptions) client(kube *kubeOptions, ns string) (*endpointAPI, error) {
	base, err := ingestURL(o.server)
	if err != nil {
		return nil, err
	}
	rt, token, err := o.transport(kube, ns, base)
	if err != nil {
		return nil, err
	}
	c, err := newClient(base, rt, token)
	if err != nil {
		return nil, err
	}
	return &endpointAPI{c: c, namespace: ns, token: token}, nil
}

// newClient is the pkg/client of the commands: the credential and transport they chose,
// no retries (a person decides whether to repeat, and the messages say how).
func newClient(base *url.URL, rt http.RoundTripper, token string) (*heraldclient.Client, error) {
	return heraldclient.New(base.String(), heraldclient.Options{Token: token, Transport: rt, Retry: heraldclient.Retry{Attempts: 1},
		UserAgent: "herald-cli/" + version.Version})
}

// transport differs from herald publish's in what it advises: API keys are for
// producers, and the endpoint API takes only tokens checked against RBAC.
func (o *apiOptions) transport(kube *kubeOptions, ns string, server *url.URL) (http.RoundTripper, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base, err := dispatcherTransport(ctx, server, kube, o.caFile)
	if err != nil {
		return nil, "", err
	}
	cred, err := heraldCredential(ctx, kube, o.token)
	if err != nil {
		return nil, "", credentialError(err,
			"pass --token or set "+envHeraldToken+" to a token for audience "+wire.Audience+" allowed on webhookendpoints.hooks.herald.dev",
			newAccountHint(operatorClusterRole, ns))
	}
	return base, cred.token, nil
}

// endpoint is the endpoint API of the WebhookEndpoint name.
func (a *endpointAPI) endpoint(name string) *heraldclient.Endpoint {
	return a.c.Endpoint(a.namespace, name)
}

// explain turns a failed call into an error that says what to change. what names the
// action for messages ("listing dead letters"); verb is the RBAC verb it needs;
// alternative, when set, is a way that does not need the dispatcher at all; name is the
// endpoint ("" for an event's history).
func (a *endpointAPI) explain(ctx context.Context, err error, name, what, verb, alternative string) error {
	if err == nil {
		return nil
	}
	where := a.c.Server()
	var refused *heraldclient.APIError
	var unexpected *heraldclient.UnexpectedAnswerError
	var op *net.OpError
	switch {
	case errors.As(err, &refused):
		return a.refusal(refused, name, what, verb, alternative)
	case errors.As(err, &unexpected):
		return fmt.Errorf("%s answered %q, which is not the endpoint API's answer: is --server (or %s) the dispatcher's address?", where, truncateText(unexpected.Body), envHeraldURL)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("the dispatcher at %s did not answer within --timeout while %s", where, what)
	case errors.As(err, &op) && op.Op == "dial":
		msg := fmt.Sprintf("cannot reach the dispatcher at %s (%v): is it running? Point --server or %s at its address: %s", where, op.Err, envHeraldURL, unreachableHint())
		if alternative != "" {
			msg += "; or " + alternative
		}
		return errors.New(msg)
	}
	if advice, ok := tlsAdvice(err, where); ok {
		return fmt.Errorf("%s: %s (%v)", what, advice, err)
	}
	return fmt.Errorf("%s through %s: %w", what, where, err)
}

// refusal turns an error answer into one that says what to change.
func (a *endpointAPI) refusal(e *heraldclient.APIError, name, what, verb, alternative string) error {
	where, ns := a.c.Server(), a.namespace
	if e.Detail.Code == "" {
		if plainToTLS(e) {
			return fmt.Errorf("the dispatcher at %s serves https: use https:// in --server or %s", where, envHeraldURL)
		}
		return fmt.Errorf("%s answered %s with %q, which is not the endpoint API's error format: is --server (or %s) the dispatcher's address, and is the dispatcher recent enough to serve /v1/namespaces/{ns}/endpoints?",
			where, e.Status, truncateText(e.Body), envHeraldURL)
	}
	msg := e.Detail.Message
	switch e.StatusCode {
	case http.StatusUnauthorized:
		return fmt.Errorf("the dispatcher refused the credentials while %s (%s): pass --token or set %s to a ServiceAccount or user token with %s on webhookendpoints.hooks.herald.dev in namespace %q; %s",
			what, msg, envHeraldToken, verb, ns, newTokenHint(a.token, operatorClusterRole, ns))
	case http.StatusForbidden:
		user := ""
		if m := refusedSubject.FindStringSubmatch(msg); m != nil {
			user = m[1]
		}
		// The chart's herald-operator ClusterRole has get, replay and enable on
		// webhookendpoints, the verbs the endpoint API asks for.
		err := fmt.Sprintf("the dispatcher refused %s: %s; grant it (as a user who may create RoleBindings in %s):\n  %s\n%s",
			what, msg, ns, bindHint(user, operatorClusterRole, ns), cacheNote("retry"))
		if alternative != "" {
			err += "\nOr " + alternative + "."
		}
		return errors.New(err)
	case http.StatusNotFound:
		if e.Detail.Code == wire.CodeNotFound && name == "" {
			return fmt.Errorf("%s", msg)
		}
		if e.Detail.Code == wire.CodeNotFound {
			return fmt.Errorf("the dispatcher knows no WebhookEndpoint %q in namespace %q: check the name and -n (kubectl get whe -n %s); an endpoint created moments ago may not have reached it yet", name, ns, ns)
		}
		return fmt.Errorf("%s has no such route (%s): is --server the dispatcher's base URL, without a path?", where, msg)
	case http.StatusBadRequest, http.StatusConflict:
		return fmt.Errorf("the dispatcher refused the request: %s", msg)
	case http.StatusServiceUnavailable:
		return fmt.Errorf("the dispatcher cannot answer right now (%s): retry in a few seconds", msg)
	default:
		return fmt.Errorf("the dispatcher answered %s while %s: %s", e.Status, what, msg)
	}
}

func newDLQCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "dlq",
		Aliases: []string{"dead-letters"},
		Short:   "List and replay an endpoint's dead letters",
		Long: `List and replay the dead letters of a WebhookEndpoint: deliveries that failed every
attempt of their retry schedule, or waited too long while the endpoint was held.

Listing and replay go through the dispatcher's endpoint API (the address of herald
publish: --server or $` + envHeraldURL + `) with a token allowed get (list) or the custom verb
replay (replay) on webhookendpoints.hooks.herald.dev in the namespace: the herald-operator
ClusterRole. Replaying everything also works with only API server access for those who
may patch the endpoint (herald-editor): --via-annotation sets its
` + heraldv1.AnnotationReplayDeadLetters + ` annotation, which the dispatcher acts on.`,
	}
	cmd.AddCommand(newDLQListCommand(), newDLQReplayCommand())
	return cmd
}

type dlqListOptions struct {
	list      listOptions
	eventType string
}

// listOptions are what the commands listing through the endpoint API share: where
// (kubeconfig, dispatcher), how many, how printed, how long to wait.
type listOptions struct {
	kube    kubeOptions
	api     apiOptions
	limit   int
	output  string
	timeout time.Duration
}

func (o *listOptions) bind(fs *pflag.FlagSet) {
	o.kube.bind(fs)
	o.api.bind(fs)
	fs.IntVar(&o.limit, "limit", 100, "at most this many (1 to 1000)")
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for the dispatcher")
}

// start checks the flags and returns the namespace and the endpoint API's client.
func (o *listOptions) start() (ns string, api *endpointAPI, err error) {
	if err := checkOutput(o.output); err != nil {
		return "", nil, err
	}
	if o.limit < 1 || o.limit > 1000 {
		return "", nil, fmt.Errorf("--limit %d is out of range: give 1 to 1000", o.limit)
	}
	if ns, err = o.kube.Namespace(); err != nil {
		return "", nil, err
	}
	if api, err = o.api.client(&o.kube, ns); err != nil {
		return "", nil, err
	}
	return ns, api, nil
}

func newDLQListCommand() *cobra.Command {
	o := &dlqListOptions{}
	cmd := &cobra.Command{
		Use:   "list ENDPOINT",
		Short: "List an endpoint's dead letters, oldest first",
		Long: `List an endpoint's dead letters, oldest first, with the event id and type, the
attempts made, why delivery stopped and the last answer. Payloads are not shown: they
may hold personal data, and the event id finds the event at its producer.`,
		Example: `  herald dlq list billing -n shop
  herald dlq list billing --event-type invoice.paid --limit 20 -o json`,
		Args: exactlyOneEndpoint,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	fs := cmd.Flags()
	o.list.bind(fs)
	fs.StringVar(&o.eventType, "event-type", "", "only dead letters of this event type (exact)")
	return cmd
}

func (o *dlqListOptions) run(cmd *cobra.Command, name string) error {
	ns, api, err := o.list.start()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.list.timeout)
	defer cancel()
	list, err := api.endpoint(name).DeadLetters(ctx, heraldclient.DeadLetterQuery{Limit: o.list.limit, EventType: o.eventType})
	if err := api.explain(ctx, err, name, "listing dead letters", wire.VerbRead, ""); err != nil {
		return err
	}
	if o.list.output != "table" {
		return printObject(cmd.OutOrStdout(), o.list.output, list)
	}
	if len(list.Items) == 0 {
		what := "dead letters"
		if o.eventType != "" {
			what += " of type " + o.eventType
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "No %s for WebhookEndpoint %s/%s.\n", what, ns, name)
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tEVENT ID\tTYPE\tATTEMPTS\tREASON\tLAST ANSWER\tAGE\tREPLAYS")
	for _, d := range list.Items {
		last := d.Error
		if d.StatusCode != 0 {
			last = "HTTP " + strconv.Itoa(d.StatusCode)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%d\n", d.Sequence, d.EventID, d.EventType, d.Attempts, d.Reason,
			orNone(shorten(last, 60)), age(now, d.DeadAt), d.Replays)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if list.More {
		fmt.Fprintf(cmd.ErrOrStderr(), "More dead letters than --limit %d: raise --limit or narrow with --event-type.\n", o.list.limit)
	}
	return nil
}

type dlqReplayOptions struct {
	kube          kubeOptions
	api           apiOptions
	eventIDs      []string
	eventType     string
	all           bool
	viaAnnotation bool
	wait          bool
	output        string
	timeout       time.Duration
	// sel: --since and --until make it a replay by selection, in the background.
	sel selectionOptions
}

func newDLQReplayCommand() *cobra.Command {
	o := &dlqReplayOptions{}
	cmd := &cobra.Command{
		Use:   "replay ENDPOINT (--event-id ID... | --event-type TYPE | --since T | --until T | --all)",
		Short: "Deliver an endpoint's dead letters again",
		Long: `Deliver an endpoint's dead letters again, with their original event ids (receivers
deduplicate on them), on the endpoint's current configuration. A replayed dead letter
leaves the list; if it fails again it comes back with one more replay counted.

By default the dispatcher's endpoint API does it and answers how many were replayed.
With --via-annotation (only with --all) the command instead sets the annotation
` + heraldv1.AnnotationReplayDeadLetters + ` to a new value through the API server, which needs
patch on the WebhookEndpoint (herald-editor) instead of the verb replay, and waits until
the dispatcher reports it handled
(status.lastHandledReplay). A disabled endpoint holds replayed deliveries too:
re-enable it (herald endpoint enable) to have them sent.

With --since or --until (alone or with --event-type or --event-id) the dead letters of
the events accepted in that time range are replayed in the background, as herald events
resend --from dead-letters does: the progress is on status.replay, and the command
follows it unless --wait=false.`,
		Example: `  herald dlq replay billing --since 2h
  herald dlq replay billing --event-id evt_01J8Z3 --event-id evt_01J8Z4
  herald dlq replay billing --event-type invoice.paid
  herald dlq replay billing --all
  herald dlq replay billing --all --via-annotation`,
		Args: exactlyOneEndpoint,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	fs := cmd.Flags()
	o.kube.bind(fs)
	o.api.bind(fs)
	fs.StringSliceVar(&o.eventIDs, "event-id", nil, "replay the dead letters of these event ids; repeat or separate with commas")
	fs.StringVar(&o.eventType, "event-type", "", "replay the dead letters of this event type (exact)")
	fs.BoolVar(&o.all, "all", false, "replay every dead letter of the endpoint")
	fs.BoolVar(&o.viaAnnotation, "via-annotation", false, "set the "+heraldv1.AnnotationReplayDeadLetters+" annotation through the API server instead of calling the dispatcher (with --all only)")
	fs.BoolVar(&o.wait, "wait", true, "with --via-annotation, wait until the dispatcher reports the annotation handled; with --since or --until, follow the replay's progress until it is done")
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "how long to wait for the dispatcher")
	o.sel.bindRange(fs)
	cmd.MarkFlagsOneRequired("event-id", "event-type", "all", "since", "until")
	cmd.MarkFlagsMutuallyExclusive("event-id", "event-type", "all")
	cmd.MarkFlagsMutuallyExclusive("all", "since")
	cmd.MarkFlagsMutuallyExclusive("all", "until")
	return cmd
}

// ReplayResult is what herald dlq replay prints with -o json or yaml.
type ReplayResult struct {
	Namespace string `json:"namespace"`
	Endpoint  string `json:"endpoint"`
	// Via is "api" or "annotation".
	Via string `json:"via"`
	// Replayed is the count the dispatcher's API reported.
	Replayed *int `json:"replayed,omitempty"`
	// Annotation is the value set, with --via-annotation.
	Annotation string `json:"annotation,omitempty"`
	// Handled says whether the dispatcher reported the annotation handled (--wait).
	Handled *bool `json:"handled,omitempty"`
}

func (o *dlqReplayOptions) run(cmd *cobra.Command, name string) error {
	if err := checkOutput(o.output); err != nil {
		return err
	}
	if o.viaAnnotation && !o.all {
		return errors.New("--via-annotation replays every dead letter of the endpoint: use it with --all, or drop --via-annotation to select by --event-id or --event-type through the dispatcher")
	}
	ns, err := o.kube.Namespace()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	if o.viaAnnotation {
		return o.viaAnnotationRun(ctx, cmd, ns, name)
	}
	if o.sel.since != "" || o.sel.until != "" {
		o.sel.eventType, o.sel.eventIDs, o.sel.wait = o.eventType, o.eventIDs, o.wait
		return runSelection(cmd, &o.kube, &o.api, ns, name, o.output, o.timeout, &o.sel, "dead-letters")
	}
	api, err := o.api.client(&o.kube, ns)
	if err != nil {
		return err
	}
	req := wire.ReplayRequest{EventIDs: o.eventIDs, EventType: o.eventType, All: o.all}
	alt := ""
	if o.all {
		alt = "use --via-annotation, which needs only the API server but patch on the WebhookEndpoint"
	}
	resp, err := api.endpoint(name).ReplayDeadLetters(ctx, req)
	if err := api.explain(ctx, err, name, "replaying dead letters", wire.VerbReplay, alt); err != nil {
		return err
	}
	res := ReplayResult{Namespace: ns, Endpoint: name, Via: "api", Replayed: &resp.Replayed}
	if o.output != "table" {
		return printObject(cmd.OutOrStdout(), o.output, res)
	}
	out := cmd.OutOrStdout()
	switch {
	case resp.Replayed == 0 && o.all:
		fmt.Fprintf(out, "WebhookEndpoint %s/%s has no dead letters to replay.\n", ns, name)
	case resp.Replayed == 0:
		fmt.Fprintf(out, "No dead letter of WebhookEndpoint %s/%s matched; %s dlq list %s -n %s shows what there is.\n", ns, name, progName(cmd), name, ns)
	default:
		fmt.Fprintf(out, "Replayed %s of WebhookEndpoint %s/%s; they are delivered with their original event ids.\n",
			plural(resp.Replayed, "dead letter", "dead letters"), ns, name)
		o.heldNote(ctx, cmd, ns, name)
	}
	return nil
}

// heldNote warns when the endpoint holds what was just replayed. It reads through the
// kubeconfig when there is one; without one it says nothing, as the replay itself is
// done.
func (o *dlqReplayOptions) heldNote(ctx context.Context, cmd *cobra.Command, ns, name string) {
	c, err := kubeClient(&o.kube)
	if err != nil {
		return
	}
	ep, err := getEndpoint(ctx, c, ns, name)
	if err != nil {
		return
	}
	if disabled(ep) {
		fmt.Fprintf(cmd.ErrOrStderr(), "WebhookEndpoint %s/%s is disabled, so the replayed deliveries are held: %s endpoint enable %s -n %s sends them.\n", ns, name, progName(cmd), name, ns)
	}
}

func (o *dlqReplayOptions) viaAnnotationRun(ctx context.Context, cmd *cobra.Command, ns, name string) error {
	c, err := kubeClient(&o.kube)
	if err != nil {
		return err
	}
	token, err := annotate(ctx, c, ns, name, heraldv1.AnnotationReplayDeadLetters)
	if err != nil {
		return fmt.Errorf("%w\nOr drop --via-annotation: the dispatcher's endpoint API replays with the verb replay alone (%s)", err, operatorClusterRole)
	}
	res := ReplayResult{Namespace: ns, Endpoint: name, Via: "annotation", Annotation: token}
	if o.wait {
		ep, err := waitHandled(ctx, c, ns, name, heraldv1.AnnotationReplayDeadLetters, token,
			func(ep *heraldv1.WebhookEndpoint) string { return ep.Status.LastHandledReplay })
		if err != nil {
			return err
		}
		handled := true
		res.Handled = &handled
		if o.output == "table" && disabled(ep) {
			fmt.Fprintf(cmd.ErrOrStderr(), "WebhookEndpoint %s/%s is disabled, so the replayed deliveries are held: %s endpoint enable %s -n %s sends them.\n", ns, name, progName(cmd), name, ns)
		}
	}
	if o.output != "table" {
		return printObject(cmd.OutOrStdout(), o.output, res)
	}
	if o.wait {
		fmt.Fprintf(cmd.OutOrStdout(), "Annotated WebhookEndpoint %s/%s with %s=%s; the dispatcher replayed its dead letters (kubectl get events shows how many).\n",
			ns, name, heraldv1.AnnotationReplayDeadLetters, token)
	} else {
		fmt.Fprintf(cmd.OutOrStdout(), "Annotated WebhookEndpoint %s/%s with %s=%s; the dispatcher replays its dead letters when it sees it (status.lastHandledReplay).\n",
			ns, name, heraldv1.AnnotationReplayDeadLetters, token)
	}
	return nil
}

func exactlyOneEndpoint(cmd *cobra.Command, args []string) error {
	switch len(args) {
	case 1:
		return nil
	case 0:
		return fmt.Errorf("name the WebhookEndpoint, e.g. %s billing (kubectl get whe lists them)", cmd.CommandPath())
	default:
		return fmt.Errorf("one WebhookEndpoint at a time: got %d names (%s)", len(args), strings.Join(args, ", "))
	}
}

func checkOutput(format string) error {
	switch format {
	case "table", "json", "yaml":
		return nil
	}
	return fmt.Errorf("--output %q is not supported: use table, json or yaml", format)
}

// age is kubectl's way of showing how long ago something happened.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
