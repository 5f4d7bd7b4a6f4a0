package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/scheme"
	"github.com/herald-dev/herald/pkg/wire"
)

// fieldManagerCLI owns the annotations the CLI sets. It is neither the manager's nor
// the dispatcher's, and no GitOps tool applies these annotations, so they never
// conflict with what a repository holds.
const fieldManagerCLI = "herald-cli"

func newEndpointCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "endpoint",
		Aliases: []string{"endpoints", "whe"},
		Short:   "Show and re-enable WebhookEndpoints, print their public keys",
	}
	cmd.AddCommand(newEndpointEnableCommand(), newEndpointStatusCommand(), newEndpointPublicKeyCommand())
	return cmd
}

type endpointEnableOptions struct {
	kube          kubeOptions
	api           apiOptions
	viaAnnotation bool
	viaAPI        bool // deprecated: the endpoint API is the default
	wait          bool
	output        string
	timeout       time.Duration
}

func newEndpointEnableCommand() *cobra.Command {
	o := &endpointEnableOptions{}
	cmd := &cobra.Command{
		Use:   "enable ENDPOINT",
		Short: "Re-enable an endpoint the dispatcher auto-disabled",
		Long: `Re-enable a WebhookEndpoint the dispatcher disabled after consecutive failures; its
held deliveries then flow again, oldest first, and its failure count starts from 0.

By default the dispatcher's endpoint API does it at once: that needs the dispatcher's
address (--server or $` + envHeraldURL + `) and a token allowed the custom verb enable on
webhookendpoints.hooks.herald.dev (the herald-operator ClusterRole has it). With
--via-annotation the command instead sets the annotation ` + heraldv1.AnnotationReenable + ` to a
new value through the API server and waits until the dispatcher reports it handled
(status.lastHandledReenable): that needs only the API server, but patch on the
WebhookEndpoint (herald-editor), the right to change it. Neither touches spec, so GitOps
tools see no drift.

Editing the endpoint's spec re-enables it too.`,
		Example: `  herald endpoint enable billing -n shop
  herald endpoint enable billing --server http://127.0.0.1:8080
  kubectl herald endpoint enable billing --via-annotation --wait=false`,
		Args: exactlyOneEndpoint,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	fs := cmd.Flags()
	o.kube.bind(fs)
	o.api.bind(fs)
	fs.BoolVar(&o.viaAnnotation, "via-annotation", false, "set the "+heraldv1.AnnotationReenable+" annotation through the API server (needs patch on the WebhookEndpoint) instead of calling the dispatcher")
	fs.BoolVar(&o.viaAPI, "via-api", false, "call the dispatcher's endpoint API (the default)")
	_ = fs.MarkDeprecated("via-api", "the dispatcher's endpoint API is the default now")
	fs.BoolVar(&o.wait, "wait", true, "with --via-annotation, wait until the dispatcher reports the annotation handled")
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "how long to wait for the API server and the dispatcher")
	cmd.MarkFlagsMutuallyExclusive("via-annotation", "via-api")
	return cmd
}

// EnableResult is what herald endpoint enable prints with -o json or yaml.
type EnableResult struct {
	Namespace string `json:"namespace"`
	Endpoint  string `json:"endpoint"`
	// Via is "annotation" or "api".
	Via string `json:"via"`
	// WasDisabled: through the API, the dispatcher's answer; through the annotation,
	// the endpoint's status when the command read it.
	WasDisabled bool `json:"wasDisabled"`
	// Annotation is the value set, through the annotation.
	Annotation string `json:"annotation,omitempty"`
	// Handled says whether the dispatcher reported the annotation handled (--wait).
	Handled *bool `json:"handled,omitempty"`
}

func (o *endpointEnableOptions) run(cmd *cobra.Command, name string) error {
	if err := checkOutput(o.output); err != nil {
		return err
	}
	ns, err := o.kube.Namespace()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	res := EnableResult{Namespace: ns, Endpoint: name}
	if !o.viaAnnotation {
		api, err := o.api.client(&o.kube, ns)
		if err != nil {
			return err
		}
		resp, err := api.endpoint(name).Enable(ctx)
		if err := api.explain(ctx, err, name, "re-enabling the endpoint", wire.VerbEnable,
			"use --via-annotation, which needs only the API server but patch on the WebhookEndpoint"); err != nil {
			return err
		}
		res.Via, res.WasDisabled = "api", resp.WasDisabled
	} else {
		c, err := kubeClient(&o.kube)
		if err != nil {
			return err
		}
		ep, err := getEndpoint(ctx, c, ns, name)
		if err != nil {
			return err
		}
		res.Via, res.WasDisabled = "annotation", disabled(ep)
		if res.Annotation, err = annotate(ctx, c, ns, name, heraldv1.AnnotationReenable); err != nil {
			return fmt.Errorf("%w\nOr drop --via-annotation: the dispatcher's endpoint API re-enables with the verb enable alone (%s)", err, operatorClusterRole)
		}
		if o.wait {
			if _, err := waitHandled(ctx, c, ns, name, heraldv1.AnnotationReenable, res.Annotation,
				func(ep *heraldv1.WebhookEndpoint) string { return ep.Status.LastHandledReenable }); err != nil {
				return err
			}
			handled := true
			res.Handled = &handled
		}
	}
	if o.output != "table" {
		return printObject(cmd.OutOrStdout(), o.output, res)
	}
	out := cmd.OutOrStdout()
	how := "through the dispatcher's API"
	if res.Via == "annotation" {
		how = fmt.Sprintf("annotation %s=%s", heraldv1.AnnotationReenable, res.Annotation)
		if !o.wait {
			fmt.Fprintf(out, "Annotated WebhookEndpoint %s/%s with %s=%s; the dispatcher re-enables it when it sees the annotation (status.lastHandledReenable).\n",
				ns, name, heraldv1.AnnotationReenable, res.Annotation)
			return nil
		}
	}
	if res.WasDisabled {
		fmt.Fprintf(out, "Re-enabled WebhookEndpoint %s/%s (%s); its held deliveries flow again, oldest first.\n", ns, name, how)
	} else {
		fmt.Fprintf(out, "WebhookEndpoint %s/%s was not disabled; its consecutive failure count is reset (%s).\n", ns, name, how)
	}
	return nil
}

type endpointStatusOptions struct {
	kube          kubeOptions
	allNamespaces bool
	output        string
	timeout       time.Duration
}

func newEndpointStatusCommand() *cobra.Command {
	o := &endpointStatusOptions{}
	cmd := &cobra.Command{
		Use:   "status [ENDPOINT]",
		Short: "Show how deliveries to WebhookEndpoints are going",
		Long: `Show how deliveries to WebhookEndpoints are going, from their status on the API
server: URL, Ready (with the reason when not), Disabled, consecutive failures, the
delivery counters and the last attempt.

Without a name every endpoint of the namespace (or, with -A, of every namespace) is
listed; with a name that endpoint is described in full. -o json or yaml prints the
status objects as stored.`,
		Example: `  herald endpoint status -n shop
  herald endpoint status billing
  herald endpoint status -A -o yaml`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return fmt.Errorf("one WebhookEndpoint at a time, or none for all: got %d names (%s)", len(args), strings.Join(args, ", "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				return o.one(cmd, args[0])
			}
			return o.list(cmd)
		},
	}
	fs := cmd.Flags()
	o.kube.bind(fs)
	fs.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "list the endpoints of every namespace")
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for the API server")
	return cmd
}

// EndpointStatus is one entry of herald endpoint status -o json or yaml without a name.
type EndpointStatus struct {
	Namespace string                         `json:"namespace"`
	Name      string                         `json:"name"`
	Status    heraldv1.WebhookEndpointStatus `json:"status"`
}

// EndpointStatusList is herald endpoint status -o json or yaml without a name.
type EndpointStatusList struct {
	Items []EndpointStatus `json:"items"`
}

func (o *endpointStatusOptions) list(cmd *cobra.Command) error {
	if err := checkOutput(o.output); err != nil {
		return err
	}
	c, err := kubeClient(&o.kube)
	if err != nil {
		return err
	}
	var opts []client.ListOption
	ns := ""
	if !o.allNamespaces {
		if ns, err = o.kube.Namespace(); err != nil {
			return err
		}
		opts = append(opts, client.InNamespace(ns))
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	var list heraldv1.WebhookEndpointList
	if err := c.List(ctx, &list, opts...); err != nil {
		return kubeError(err, ns, "", "list")
	}
	items := list.Items
	sort.Slice(items, func(i, j int) bool {
		if items[i].Namespace != items[j].Namespace {
			return items[i].Namespace < items[j].Namespace
		}
		return items[i].Name < items[j].Name
	})
	if o.output != "table" {
		out := EndpointStatusList{Items: []EndpointStatus{}}
		for _, ep := range items {
			out.Items = append(out.Items, EndpointStatus{Namespace: ep.Namespace, Name: ep.Name, Status: ep.Status})
		}
		return printObject(cmd.OutOrStdout(), o.output, out)
	}
	if len(items) == 0 {
		if o.allNamespaces {
			fmt.Fprintln(cmd.ErrOrStderr(), "No WebhookEndpoints found.")
		} else {
			fmt.Fprintf(cmd.ErrOrStderr(), "No WebhookEndpoints found in %s namespace.\n", ns)
		}
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 3, ' ', 0)
	header := "NAME\tURL\tREADY\tDISABLED\tFAILURES\tDELIVERED\tFAILED\tDEAD\tPENDING\tLAST ATTEMPT"
	if o.allNamespaces {
		header = "NAMESPACE\t" + header
	}
	fmt.Fprintln(tw, header)
	for i := range items {
		ep := &items[i]
		var counters heraldv1.DeliveryCounters
		if ep.Status.Counters != nil {
			counters = *ep.Status.Counters
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s", ep.Name, ep.Spec.URL, readyColumn(ep),
			conditionStatus(ep, heraldv1.ConditionDisabled), ep.Status.ConsecutiveFailures,
			counters.Delivered, counters.FailedAttempts, counters.DeadLettered, counters.Pending,
			lastAttemptColumn(now, ep.Status.LastAttempt))
		if o.allNamespaces {
			row = ep.Namespace + "\t" + row
		}
		fmt.Fprintln(tw, row)
	}
	return tw.Flush()
}

func (o *endpointStatusOptions) one(cmd *cobra.Command, name string) error {
	if err := checkOutput(o.output); err != nil {
		return err
	}
	if o.allNamespaces {
		return errors.New("-A lists every namespace and takes no name: drop the name, or drop -A and give -n")
	}
	_, ep, err := readEndpoint(cmd.Context(), &o.kube, o.timeout, name)
	if err != nil {
		return err
	}
	if o.output != "table" {
		return printObject(cmd.OutOrStdout(), o.output, ep.Status)
	}
	return describeEndpoint(cmd.OutOrStdout(), progName(cmd), time.Now(), ep)
}

// describeEndpoint prints one endpoint's delivery state, and what to do when it is stuck.
func describeEndpoint(w io.Writer, prog string, now time.Time, ep *heraldv1.WebhookEndpoint) error {
	st := ep.Status
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	line("Name", ep.Name)
	line("Namespace", ep.Namespace)
	line("URL", ep.Spec.URL)
	ready := meta.FindStatusCondition(st.Conditions, heraldv1.ConditionReady)
	switch {
	case ready == nil:
		line("Ready", "Unknown (no Ready condition yet: is the herald manager running?)")
	case ready.Status == metav1.ConditionTrue:
		line("Ready", "True")
	default:
		line("Ready", fmt.Sprintf("%s (%s): %s", ready.Status, ready.Reason, ready.Message))
	}
	if st.ObservedGeneration < ep.Generation {
		line("Observed", fmt.Sprintf("generation %d of %d: the manager has not looked at the latest spec yet", st.ObservedGeneration, ep.Generation))
	}
	dis := meta.FindStatusCondition(st.Conditions, heraldv1.ConditionDisabled)
	switch {
	case dis == nil:
		line("Disabled", "Unknown (the dispatcher has not reported on this endpoint yet)")
	case dis.Status == metav1.ConditionTrue:
		since := ""
		if st.DisabledAt != nil {
			since = fmt.Sprintf(" since %s (%s ago)", st.DisabledAt.UTC().Format(time.RFC3339), age(now, st.DisabledAt.Time))
		}
		line("Disabled", fmt.Sprintf("True%s, %s: %s", since, dis.Reason, dis.Message))
	default:
		line("Disabled", "False")
	}
	line("Failures", fmt.Sprintf("%d consecutive", st.ConsecutiveFailures))
	if c := st.Counters; c != nil {
		line("Counters", fmt.Sprintf("%d delivered, %d failed attempts, %d dead-lettered, %d pending", c.Delivered, c.FailedAttempts, c.DeadLettered, c.Pending))
	} else {
		line("Counters", "<none yet>")
	}
	if a := st.LastAttempt; a != nil {
		v := fmt.Sprintf("%s ago, %s", age(now, a.Time.Time), attemptOutcome(a))
		if a.LatencyMilliseconds > 0 {
			v += fmt.Sprintf(" in %dms", a.LatencyMilliseconds)
		}
		if a.EventID != "" {
			v += ", event " + a.EventID
		}
		line("Last attempt", v)
	} else {
		line("Last attempt", "<none>")
	}
	if st.LastSuccessTime != nil {
		line("Last success", fmt.Sprintf("%s (%s ago)", st.LastSuccessTime.UTC().Format(time.RFC3339), age(now, st.LastSuccessTime.Time)))
	} else {
		line("Last success", "<none>")
	}
	if ep.Spec.Ordered() {
		line("Ordering", "Ordered: one delivery at a time, in the order accepted")
		if b := st.BlockedBy; b != nil {
			v := fmt.Sprintf("event %s, failing since %s (%s ago, %d failed attempts)",
				b.EventID, b.Since.UTC().Format(time.RFC3339), age(now, b.Since.Time), b.FailedAttempts)
			if b.NextAttemptTime != nil {
				v += ", next attempt " + b.NextAttemptTime.UTC().Format(time.RFC3339)
			}
			line("Blocked by", v+"; the deliveries after it wait until it is delivered or dead-lettered")
		}
	}
	if st.PublicKey != "" {
		line("Public key", st.PublicKey+" (ed25519; receivers verify v1a signatures with it)")
	}
	if st.PreviousPublicKey != "" {
		line("Previous key", st.PreviousPublicKey+" (rotating out; deliveries are signed with both)")
	}
	if ep.Spec.Suspend {
		line("Suspended", "yes: spec.suspend holds deliveries until it is set back to false")
	}
	if dis != nil && dis.Status == metav1.ConditionTrue {
		line("Next", fmt.Sprintf("%s endpoint enable %s -n %s re-enables it; %s dlq list %s -n %s shows its dead letters",
			prog, ep.Name, ep.Namespace, prog, ep.Name, ep.Namespace))
	} else if st.Counters != nil && st.Counters.DeadLettered > 0 {
		line("Next", fmt.Sprintf("%s dlq list %s -n %s shows its dead letters", prog, ep.Name, ep.Namespace))
	}
	return tw.Flush()
}

func readyColumn(ep *heraldv1.WebhookEndpoint) string {
	c := meta.FindStatusCondition(ep.Status.Conditions, heraldv1.ConditionReady)
	switch {
	case c == nil:
		return "Unknown"
	case c.Status == metav1.ConditionTrue:
		return "True"
	default:
		return fmt.Sprintf("%s (%s)", c.Status, c.Reason)
	}
}

func conditionStatus(ep *heraldv1.WebhookEndpoint, typ string) string {
	if c := meta.FindStatusCondition(ep.Status.Conditions, typ); c != nil {
		return string(c.Status)
	}
	return "Unknown"
}

func lastAttemptColumn(now time.Time, a *heraldv1.DeliveryAttempt) string {
	if a == nil {
		return "<none>"
	}
	return fmt.Sprintf("%s, %s ago", shorten(attemptOutcome(a), 40), age(now, a.Time.Time))
}

func attemptOutcome(a *heraldv1.DeliveryAttempt) string {
	switch {
	case a.StatusCode != 0:
		return "HTTP " + strconv.Itoa(int(a.StatusCode))
	case a.Error != "":
		return "error: " + a.Error
	}
	return "no answer"
}

func disabled(ep *heraldv1.WebhookEndpoint) bool {
	return meta.IsStatusConditionTrue(ep.Status.Conditions, heraldv1.ConditionDisabled)
}

// progName is how the user invoked herald ("herald", or "kubectl herald" as a plugin),
// for commands printed as advice.
func progName(cmd *cobra.Command) string { return cmd.Root().DisplayName() }

// kubeClient is a client of the kubeconfig's cluster that knows Herald's types.
func kubeClient(kube *kubeOptions) (client.Client, error) {
	cfg, err := kube.RESTConfig()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server at %s: %w", cfg.Host, err)
	}
	return c, nil
}

// readEndpoint reads one WebhookEndpoint in the kubeconfig's namespace, waiting for the
// API server at most timeout, and returns that namespace too.
func readEndpoint(ctx context.Context, kube *kubeOptions, timeout time.Duration, name string) (string, *heraldv1.WebhookEndpoint, error) {
	ns, err := kube.Namespace()
	if err != nil {
		return "", nil, err
	}
	c, err := kubeClient(kube)
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ep, err := getEndpoint(ctx, c, ns, name)
	return ns, ep, err
}

func getEndpoint(ctx context.Context, c client.Client, ns, name string) (*heraldv1.WebhookEndpoint, error) {
	var ep heraldv1.WebhookEndpoint
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &ep); err != nil {
		return nil, kubeError(err, ns, name, "get")
	}
	return &ep, nil
}

// annotate sets key to a new value (the current time, which never repeats a handled
// value) with a JSON merge patch of metadata only, as kubectl annotate --overwrite
// would, and returns the value.
func annotate(ctx context.Context, c client.Client, ns, name, key string) (string, error) {
	value := time.Now().UTC().Format(time.RFC3339Nano)
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	if err != nil {
		return "", err
	}
	ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := c.Patch(ctx, ep, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(fieldManagerCLI)); err != nil {
		return "", kubeError(err, ns, name, "patch")
	}
	return value, nil
}

// waitHandled polls the endpoint until handled(ep) reports value, which the dispatcher
// writes to status once it has acted on the annotation.
func waitHandled(ctx context.Context, c client.Client, ns, name, key, value string, handled func(*heraldv1.WebhookEndpoint) string) (*heraldv1.WebhookEndpoint, error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ep, err := getEndpoint(ctx, c, ns, name)
		if err == nil {
			if last = handled(ep); last == value {
				return ep, nil
			}
		} else if ctx.Err() == nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			if last == "" {
				last = "empty"
			} else {
				last = strconv.Quote(last)
			}
			return nil, fmt.Errorf("WebhookEndpoint %s/%s carries %s=%s, but no dispatcher reported it handled within --timeout (its last handled value is %s): "+
				"is the dispatcher running and serving namespace %s? It acts on the annotation when it does; --wait=false does not wait",
				ns, name, key, value, last, ns)
		case <-tick.C:
		}
	}
}

// kubeError turns an API server error into one that says what to change.
func kubeError(err error, ns, name, verb string) error {
	var op *net.OpError
	switch {
	case meta.IsNoMatchError(err) || (apierrors.IsNotFound(err) && name == ""):
		return fmt.Errorf("the API server does not serve WebhookEndpoints (%s): install Herald's CRDs (kubectl apply --server-side -f config/crd/bases, or helm install herald charts/herald), or pick the right --context", err)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("WebhookEndpoint %q not found in namespace %q: check the name and -n (kubectl get whe -n %s)", name, ns, ns)
	case apierrors.IsForbidden(err):
		user := ""
		if m := kubeForbiddenUser.FindStringSubmatch(err.Error()); m != nil {
			user = m[1]
		}
		if ns == "" {
			// Every namespace needs a ClusterRoleBinding, which is rarely what is meant.
			return fmt.Errorf("the API server refused: %v; the kubeconfig user may not %s webhookendpoints.hooks.herald.dev in every namespace: drop -A to use the context's namespace, or give -n", err, verb)
		}
		// Reading is the operator's; writing, even an annotation, the editor's.
		role := operatorClusterRole
		if verb == "patch" || verb == "update" {
			role = editorClusterRole
		}
		return fmt.Errorf("the API server refused: %v; the kubeconfig user needs %s on webhookendpoints.hooks.herald.dev in namespace %q. Grant it (as a user who may create RoleBindings there):\n  %s",
			err, verb, ns, bindHint(user, role, ns))
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the API server refused the kubeconfig's credentials (%v): log in again, or pick another --context", err)
	case errors.As(err, &op):
		return fmt.Errorf("cannot reach the API server (%v): is the cluster up, and are --kubeconfig and --context right?", err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("the API server did not answer within --timeout: %w", err)
	}
	return err
}

// printObject prints v as JSON or YAML.
func printObject(w io.Writer, format string, v any) error {
	switch format {
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "yaml":
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		// encoding/json leaves DEL and C1 characters as they are, and the YAML reader
		// refuses them ("control characters are not allowed"): a receiver's body with one
		// would break -o yaml. Escaped, they are the same JSON value.
		var escaped bytes.Buffer
		if _, err := printable(&escaped).Write(b); err != nil {
			return err
		}
		if b, err = yaml.JSONToYAML(escaped.Bytes()); err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("--output %q is not supported: use table, json or yaml", format)
}
