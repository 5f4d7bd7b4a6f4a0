package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/herald-dev/herald/internal/version"
	heraldclient "github.com/herald-dev/herald/pkg/client"
	"github.com/herald-dev/herald/pkg/wire"
)

// Environment variables read by herald publish.
const (
	envHeraldURL   = "HERALD_URL"
	envHeraldToken = "HERALD_TOKEN"
)

const defaultIngestURL = "http://127.0.0.1:8080"

type publishOptions struct {
	kube     kubeOptions
	server   string
	token    string
	caFile   string
	id       string
	typ      string
	source   string
	data     string
	dataFile string
	output   string
	timeout  time.Duration

	sentToken string // the bearer token sent, for advice on a 401
}

func newPublishCommand() *cobra.Command {
	o := &publishOptions{}
	cmd := &cobra.Command{
		Use:   "publish --type TYPE (--data JSON | --data-file FILE)",
		Short: "Publish one event through the dispatcher's ingest API",
		Long: `Publish one event through the dispatcher's ingest API
(POST <server>/v1/namespaces/<namespace>/events).

The namespace comes from -n, else from the kubeconfig context, as with kubectl. The
credential is --token, else $HERALD_TOKEN, else a token bound to Herald's audience
(` + wire.Audience + `, 10 minutes) that the kubeconfig's ServiceAccount mints for itself
with the TokenRequest API; the kubeconfig's own credential is never sent. A
ServiceAccount token works when the ServiceAccount may create events.hooks.herald.dev
in the namespace:

  kubectl create rolebinding NAME-herald-publisher -n NS --clusterrole=herald-publisher --serviceaccount=NS:NAME
  export HERALD_TOKEN=$(kubectl create token NAME -n NS --audience ` + wire.Audience + `)

Minting from the kubeconfig needs create on serviceaccounts/token for the
ServiceAccount itself (a Role with resourceNames: [NAME]); a person whose kubeconfig
user is not a ServiceAccount passes a ServiceAccount's token as above.

--data-file sends the file's bytes as they are (they must be JSON): whitespace, key
order and escapes reach the receiver unchanged.

Without --id a fresh id is generated here and printed, so the same command can be
repeated with --id after a timeout without delivering the event twice.`,
		Example: `  herald publish --type order.created --data '{"order": "A-1001", "amount": 1500}'
  herald publish -n shop --type invoice.paid --id inv-42-paid --data-file invoice.json -o json
  jq -c .data event.json | herald publish --type order.created --data-file -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	fs := cmd.Flags()
	o.kube.bind(fs)
	fs.StringVar(&o.server, "server", "", "URL of the dispatcher's ingest API (default $"+envHeraldURL+", else "+defaultIngestURL+")")
	fs.StringVar(&o.caFile, "certificate-authority", "", "PEM file of the CA to check an https:// dispatcher's certificate with (default $"+envHeraldCAFile+", else the CA the manager publishes in ConfigMap "+publishedCANamespace+"/"+publishedCAName+", besides the system's)")
	fs.StringVar(&o.token, "token", "", "bearer token: a ServiceAccount token for audience "+wire.Audience+", or an API key (default $"+envHeraldToken+", else one the kubeconfig's ServiceAccount mints for itself)")
	fs.StringVar(&o.typ, "type", "", "event type, e.g. order.created (required)")
	fs.StringVar(&o.id, "id", "", "event id; receivers deduplicate on it, and a repeated id is not delivered again (default a new evt_ id)")
	fs.StringVar(&o.source, "source", "", "optional source of the event, e.g. a service name")
	fs.StringVar(&o.data, "data", "", "event data as JSON, e.g. '{\"amount\": 1500}'")
	fs.StringVar(&o.dataFile, "data-file", "", "file holding the event data as JSON; - reads standard input")
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for the dispatcher to store the event")
	_ = cmd.MarkFlagRequired("type")
	cmd.MarkFlagsMutuallyExclusive("data", "data-file")
	cmd.MarkFlagsOneRequired("data", "data-file")
	return cmd
}

func (o *publishOptions) run(cmd *cobra.Command) error {
	switch o.output {
	case "table", "json", "yaml":
	default:
		return fmt.Errorf("--output %q is not supported: use table, json or yaml", o.output)
	}
	data, err := o.readData(cmd.InOrStdin())
	if err != nil {
		return err
	}
	endpoint, err := ingestURL(o.server)
	if err != nil {
		return err
	}
	ns, err := o.kube.Namespace()
	if err != nil {
		return err
	}
	if o.id == "" {
		o.id = wire.NewEventID(time.Now())
	}
	c, err := o.client(cmd, endpoint)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	res, err := c.Publish(ctx, ns, wire.Event{ID: o.id, Type: o.typ, Source: o.source, Data: data})
	if err != nil {
		return o.failure(ctx, endpoint, ns, err)
	}
	return printResult(cmd.OutOrStdout(), o.output, res)
}

// readData returns the event data as given: --data, or the bytes of --data-file, checked
// to be one JSON value and otherwise untouched.
func (o *publishOptions) readData(stdin io.Reader) (json.RawMessage, error) {
	var raw []byte
	switch {
	case o.dataFile == "-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading the data from standard input: %w", err)
		}
		raw = b
	case o.dataFile != "":
		b, err := os.ReadFile(o.dataFile)
		if err != nil {
			return nil, fmt.Errorf("reading --data-file: %w", err)
		}
		raw = b
	default:
		raw = []byte(o.data)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, errors.New("the event data is empty: pass JSON with --data or --data-file, e.g. --data '{}'")
	}
	if !json.Valid(raw) {
		var v any
		err := json.Unmarshal(raw, &v)
		return nil, fmt.Errorf("the event data is not valid JSON (%v): quote it for the shell, e.g. --data '{\"amount\": 1500}'", err)
	}
	return raw, nil
}

// ingestURL returns the base URL of the ingest API from the flag, the environment or
// the default.
func ingestURL(flag string) (*url.URL, error) {
	s, from := flag, "--server"
	if s == "" {
		s, from = os.Getenv(envHeraldURL), "$"+envHeraldURL
	}
	if s == "" {
		s, from = defaultIngestURL, "the default server"
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s %q is not a URL such as http://127.0.0.1:8080 or https://herald-dispatcher.herald-system:8080", from, s)
	}
	return u, nil
}

// client returns the dispatcher's client carrying the credential, chosen in the order
// --token, $HERALD_TOKEN, a token the kubeconfig's ServiceAccount mints for Herald. A
// deprecated event type, or one whose schema does not compile, is accepted and said:
// the dispatcher's Warning headers go to standard error.
func (o *publishOptions) client(cmd *cobra.Command, server *url.URL) (*heraldclient.Client, error) {
	ctx := cmd.Context()
	base, err := dispatcherTransport(ctx, server, &o.kube, o.caFile)
	if err != nil {
		return nil, err
	}
	ns, _ := o.kube.Namespace()
	cred, err := heraldCredential(ctx, &o.kube, o.token)
	if err != nil {
		return nil, credentialError(err,
			"pass --token or set "+envHeraldToken+" to a ServiceAccount token for audience "+wire.Audience+" or an API key",
			newAccountHint(publisherClusterRole, ns))
	}
	o.sentToken = cred.token
	return heraldclient.New(server.String(), heraldclient.Options{Token: cred.token, Transport: base,
		Retry: heraldclient.Retry{Attempts: 1}, UserAgent: "herald-cli/" + version.Version,
		WarningHandler: func(w string) { fmt.Fprintln(cmd.ErrOrStderr(), "Warning:", w) }})
}

// failure turns a publish that failed into an error that says what to change. The CLI
// does not retry: the person decides, and the messages name the id to repeat with.
func (o *publishOptions) failure(ctx context.Context, endpoint *url.URL, ns string, err error) error {
	where := endpoint.Redacted()
	var refused *heraldclient.APIError
	var unexpected *heraldclient.UnexpectedAnswerError
	switch {
	case errors.As(err, &refused):
		return o.refusal(refused, endpoint, ns)
	case errors.As(err, &unexpected):
		return fmt.Errorf("%s answered 202 with %q, which is not an ingest result: is --server the dispatcher's ingest API?", where, truncateText(unexpected.Body))
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%s did not answer within --timeout %s; the event may or may not be stored: repeat with --id %s, which never delivers it twice", where, o.timeout, o.id)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Errorf("cannot reach the ingest API at %s (%v): is the dispatcher running? Point --server or %s at its ingest address: %s", where, op.Err, envHeraldURL, unreachableHint())
	}
	if advice, ok := tlsAdvice(err, where); ok {
		return fmt.Errorf("sending the event: %s (%v)", advice, err)
	}
	return fmt.Errorf("sending the event to %s: %w", where, err)
}

// refusal turns a non-202 answer into an error that says what to change.
func (o *publishOptions) refusal(e *heraldclient.APIError, endpoint *url.URL, ns string) error {
	if e.Detail.Code == "" {
		if plainToTLS(e) {
			return fmt.Errorf("the dispatcher at %s serves https: use https:// in --server or %s", endpoint.Redacted(), envHeraldURL)
		}
		return fmt.Errorf("%s answered %s with %q, which is not the ingest API's error format: is --server (or %s) the dispatcher's ingest address?",
			endpoint.Redacted(), e.Status, truncateText(e.Body), envHeraldURL)
	}
	msg := e.Detail.Message
	switch e.StatusCode {
	case http.StatusUnauthorized:
		return fmt.Errorf("the ingest API refused the credentials (%s): pass --token or set %s to a ServiceAccount token allowed to create events.hooks.herald.dev in namespace %q, or an API key of that namespace; %s",
			msg, envHeraldToken, ns, newTokenHint(o.sentToken, publisherClusterRole, ns))
	case http.StatusForbidden:
		user := ""
		if m := refusedSubject.FindStringSubmatch(msg); m != nil {
			user = m[1]
		}
		if g := grantFor(user); g.apiKey != "" {
			keyNS, _, _ := strings.Cut(g.apiKey, "/")
			return fmt.Errorf("the ingest API refused the event: %s; an API key is valid in its own namespace only: publish with -n %s, or use a key labelled %s=true in namespace %s",
				msg, keyNS, "hooks.herald.dev/api-key", ns)
		}
		// The herald-publisher ClusterRole ships with the chart (and config/rbac);
		// "kubectl create role --resource=events.hooks.herald.dev" would be refused,
		// since events are not a stored resource that discovery lists.
		return fmt.Errorf("the ingest API refused the event: %s; grant it (as a user who may create RoleBindings in %s):\n  %s\n%s",
			msg, ns, bindHint(user, publisherClusterRole, ns), cacheNote("publish again"))
	case http.StatusBadRequest:
		return fmt.Errorf("the ingest API refused the event: %s", msg)
	case http.StatusUnprocessableEntity:
		// The namespace's catalog: an undeclared type, or data that breaks its schema.
		return fmt.Errorf("the namespace's catalog refused the event (%s): %s; the declared types and their schemas: kubectl get webhookeventtypes -n %s -o yaml",
			e.Detail.Code, msg, ns)
	case http.StatusRequestEntityTooLarge:
		return fmt.Errorf("the ingest API refused the event: %s; send less data, or raise the dispatcher's --max-body-bytes", msg)
	case http.StatusNotFound:
		return fmt.Errorf("the ingest API has no such route (%s): is --server %s the dispatcher's ingest base URL, without a path?", msg, endpoint.Redacted())
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		wait := "a few"
		if e.RetryAfter > 0 {
			wait = strconv.Itoa(int(e.RetryAfter.Seconds()))
		}
		return fmt.Errorf("the dispatcher cannot take the event now (%s): retry in %s seconds with --id %s, which never delivers it twice", msg, wait, o.id)
	default:
		return fmt.Errorf("the ingest API answered %s: %s", e.Status, msg)
	}
}

func printResult(w io.Writer, format string, res wire.PublishResult) error {
	if format == "json" || format == "yaml" {
		return printObject(w, format, res)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tMATCHED\tDUPLICATE")
	fmt.Fprintf(tw, "%s\t%d\t%t\n", res.ID, res.Matched, res.Duplicate)
	return tw.Flush()
}

func truncateText(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
