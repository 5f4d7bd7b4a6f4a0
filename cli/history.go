package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	heraldclient "github.com/herald-dev/herald/pkg/client"
	"github.com/herald-dev/herald/pkg/wire"
)

// selectionOptions select what a replay by selection re-sends (herald dlq replay
// --since, herald events resend).
type selectionOptions struct {
	since, until string
	eventType    string
	eventIDs     []string
	all          bool
	wait         bool
}

func (o *selectionOptions) bindRange(fs *pflag.FlagSet) {
	fs.StringVar(&o.since, "since", "", "events accepted at or after this time: RFC 3339 (2026-11-30T10:00:00Z) or a duration before now (2h)")
	fs.StringVar(&o.until, "until", "", "events accepted before this time: RFC 3339 or a duration before now")
}

func (o *selectionOptions) request(from ...string) wire.ReplaySelectionRequest {
	return wire.ReplaySelectionRequest{Since: o.since, Until: o.until, EventType: o.eventType, EventIDs: o.eventIDs, All: o.all, From: from}
}

// ReplayProgress is what a replay by selection prints with -o json or yaml.
type ReplayProgress struct {
	Namespace string `json:"namespace"`
	Endpoint  string `json:"endpoint"`
	wire.ReplayStarted
	// Status is the endpoint's status.replay when the command stopped waiting.
	Status *heraldv1.ReplayStatus `json:"status,omitempty"`
}

// runSelection starts a replay by selection and, with wait, follows status.replay until
// it ends, printing the progress.
func runSelection(cmd *cobra.Command, kube *kubeOptions, api *apiOptions, ns, name, output string, timeout time.Duration, o *selectionOptions, from ...string) error {
	ep, err := api.client(kube, ns)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	started, err := ep.endpoint(name).Replay(ctx, o.request(from...))
	if err := ep.explain(ctx, err, name, "replaying", wire.VerbReplay, ""); err != nil {
		return err
	}
	res := ReplayProgress{Namespace: ns, Endpoint: name, ReplayStarted: started}
	out := cmd.OutOrStdout()
	if output == "table" {
		fmt.Fprintf(out, "Replay %s of WebhookEndpoint %s/%s: %d selected (%s).\n", started.ID, ns, name, started.Selected, started.Selection)
	}
	if o.wait && started.Selected > 0 {
		kc, err := kubeClient(kube)
		if err != nil {
			if output == "table" {
				fmt.Fprintf(cmd.ErrOrStderr(), "Not following the progress (%v); kubectl get whe %s -n %s -o jsonpath='{.status.replay}' shows it.\n", err, name, ns)
			}
		} else if res.Status, err = followReplay(ctx, cmd, kc, ns, name, started.ID, output == "table"); err != nil {
			return err
		}
	}
	if output != "table" {
		return printObject(out, output, res)
	}
	if res.Status == nil && started.Selected > 0 {
		fmt.Fprintf(out, "It runs in the background: kubectl get whe %s -n %s -o jsonpath='{.status.replay}' shows its progress.\n", name, ns)
	}
	return nil
}

// followReplay polls status.replay until the replay id ends, printing its progress when
// it moves.
func followReplay(ctx context.Context, cmd *cobra.Command, c client.Client, ns, name, id string, print bool) (*heraldv1.ReplayStatus, error) {
	var last *heraldv1.ReplayStatus
	for {
		ep, err := getEndpoint(ctx, c, ns, name)
		if err != nil {
			return last, err
		}
		if r := ep.Status.Replay; r != nil && r.ID == id {
			if print && (last == nil || last.Remaining != r.Remaining || last.State != r.State) {
				fmt.Fprintf(cmd.OutOrStdout(), "  %s: %d re-sent, %d remaining of %d\n", r.State, r.Resent, r.Remaining, r.Selected)
			}
			last = r.DeepCopy()
			if r.State != heraldv1.ReplayRunning {
				if r.State == heraldv1.ReplayFailed {
					return last, fmt.Errorf("replay %s failed: %s", id, r.Message)
				}
				if print && r.Message != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "  %s\n", r.Message)
				}
				return last, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("replay %s still runs after --timeout; kubectl get whe %s -n %s -o jsonpath='{.status.replay}' shows its progress", id, name, ns)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

type resendOptions struct {
	kube    kubeOptions
	api     apiOptions
	sel     selectionOptions
	from    []string
	output  string
	timeout time.Duration
}

func newEventsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Read an event's history and re-send events",
		Long: `Read what became of an event (each endpoint it went to, every attempt, from the
attempt log) and re-send events to an endpoint: dead letters and the delivered events
the dispatcher still retains (--retain-delivered-max-age, --retain-delivered-max-bytes).`,
	}
	cmd.AddCommand(newEventsGetCommand(), newEventsResendCommand())
	return cmd
}

func newEventsResendCommand() *cobra.Command {
	o := &resendOptions{}
	cmd := &cobra.Command{
		Use:   "resend ENDPOINT (--since T | --until T | --event-type TYPE | --event-id ID... | --all)",
		Short: "Send an endpoint's events again: delivered ones still retained, and dead letters",
		Long: `Send an endpoint's events again, selected by the time they were accepted (--since,
--until), their type or their ids, from the delivered events the dispatcher retains and
from the dead letters (--from). Each goes with its original event id, on the endpoint's
current configuration, once per resend. The dispatcher does it in the background, with
its progress on the endpoint's status.replay (selected, re-sent, remaining) and a
ReplayCompleted Event at the end; the command follows it unless --wait=false.`,
		Example: `  herald events resend billing --since 2h
  herald events resend billing --since 2026-11-30T10:00:00Z --until 2026-11-30T12:00:00Z --event-type invoice.paid
  herald events resend billing --event-id evt_01J8Z3 --from delivered`,
		Args: exactlyOneEndpoint,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			ns, err := o.kube.Namespace()
			if err != nil {
				return err
			}
			return runSelection(cmd, &o.kube, &o.api, ns, args[0], o.output, o.timeout, &o.sel, o.from...)
		},
	}
	fs := cmd.Flags()
	o.kube.bind(fs)
	o.api.bind(fs)
	o.sel.bindRange(fs)
	fs.StringVar(&o.sel.eventType, "event-type", "", "only events of this type (exact)")
	fs.StringSliceVar(&o.sel.eventIDs, "event-id", nil, "only these event ids; repeat or separate with commas")
	fs.BoolVar(&o.sel.all, "all", false, "every event retained and every dead letter of the endpoint")
	fs.StringSliceVar(&o.from, "from", []string{"delivered", "dead-letters"}, "where to take events from: delivered, dead-letters, or both")
	fs.BoolVar(&o.sel.wait, "wait", true, "follow the progress on the endpoint's status until the resend is done")
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "how long to wait for the dispatcher and the resend")
	cmd.MarkFlagsOneRequired("since", "until", "event-type", "event-id", "all")
	cmd.MarkFlagsMutuallyExclusive("all", "since")
	cmd.MarkFlagsMutuallyExclusive("all", "until")
	cmd.MarkFlagsMutuallyExclusive("all", "event-type")
	cmd.MarkFlagsMutuallyExclusive("all", "event-id")
	return cmd
}

type eventsGetOptions struct {
	kube    kubeOptions
	api     apiOptions
	output  string
	timeout time.Duration
}

func newEventsGetCommand() *cobra.Command {
	o := &eventsGetOptions{}
	cmd := &cobra.Command{
		Use:   "get EVENT_ID",
		Short: "Show an event's deliveries per endpoint and every attempt",
		Long: `Show what became of an event: each endpoint it was routed to, whether it was
delivered, dead-lettered or is being retried, and every attempt from the attempt log
(time, attempt number, duration, status code or error, a subset of the response headers
and the start of the response body). Needs what herald dlq list needs.`,
		Example: `  herald events get evt_01J8Z3 -n shop
  herald events get evt_01J8Z3 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	fs := cmd.Flags()
	o.kube.bind(fs)
	o.api.bind(fs)
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for the dispatcher")
	return cmd
}

func (o *eventsGetOptions) run(cmd *cobra.Command, id string) error {
	if err := checkOutput(o.output); err != nil {
		return err
	}
	ns, err := o.kube.Namespace()
	if err != nil {
		return err
	}
	api, err := o.api.client(&o.kube, ns)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	h, err := api.c.EventHistory(ctx, ns, id)
	if err := api.explain(ctx, err, "", "reading an event's history", wire.VerbRead, ""); err != nil {
		return err
	}
	if o.output != "table" {
		return printObject(cmd.OutOrStdout(), o.output, h)
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "Event %s (%s)", h.EventID, orNone(h.EventType))
	if h.AcceptedAt != nil {
		fmt.Fprintf(out, ", accepted %s", h.AcceptedAt.Format(time.RFC3339))
	}
	fmt.Fprintln(out)
	for _, d := range h.Deliveries {
		fmt.Fprintf(out, "\nWebhookEndpoint %s/%s: %s (delivery %s)\n", ns, d.Endpoint, d.State, d.DeliveryID)
		printAttempts(out, d.Attempts, false)
	}
	withheldNote(cmd.ErrOrStderr(), h.BodiesWithheld, ns)
	return nil
}

// withheldNote says, after a table, that the response bodies were left out and who may
// let the caller see them.
func withheldNote(w io.Writer, withheld, ns string) {
	if withheld == "" {
		return
	}
	user := ""
	if m := refusedSubject.FindStringSubmatch(withheld); m != nil {
		user = m[1]
	}
	fmt.Fprintf(w, "The dispatcher left out the response bodies (%s). To read them (as a user who may create RoleBindings in %s):\n  %s\n%s\n",
		withheld, ns, bindHint(user, responseReaderClusterRole, ns), cacheNote("read again"))
}

func printAttempts(w io.Writer, items []wire.Attempt, withEvent bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	if withEvent {
		fmt.Fprint(tw, "EVENT ID\t")
	}
	fmt.Fprintln(tw, "ATTEMPT\tTIME\tDURATION\tANSWER\tREQUEST ID\tBODY")
	for _, a := range items {
		answer := "HTTP " + strconv.Itoa(a.StatusCode)
		if a.StatusCode == 0 {
			answer = a.Error
		}
		n := strconv.Itoa(a.Attempt)
		if a.Replay > 0 {
			n += fmt.Sprintf(" (replay %d)", a.Replay)
		}
		if withEvent {
			fmt.Fprintf(tw, "%s\t", a.EventID)
		}
		reqID := a.Headers["X-Request-Id"]
		if reqID == "" {
			reqID = a.Headers["X-Correlation-Id"]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n, a.Time.UTC().Format(time.RFC3339), fmt.Sprintf("%.1fms", a.DurationMillis),
			shorten(answer, 60), orNone(reqID), orNone(shorten(a.Body, 60)))
	}
	_ = tw.Flush()
}

type attemptsListOptions struct {
	list    listOptions
	failed  bool
	since   string
	eventID string
}

func newAttemptsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "attempts",
		Short: "Read an endpoint's attempt log",
		Long: `Read the attempt log: one record per HTTP attempt (time, attempt number, duration,
status code or error, a subset of the response headers), kept in the dispatcher's store
for --attempt-log-max-age and --attempt-log-max-bytes. Nothing Herald sent is kept: no
payload, no signature.

The first 4 KiB of the receiver's response body is kept only when the endpoint asks for
it (spec.attemptLog.responseBody: OnFailure or Always), with the endpoint's own secret
values redacted, and shown only to those who may get webhookendpoints/responses (the
herald-response-reader ClusterRole); others get the records without it, and are told so.`,
	}
	cmd.AddCommand(newAttemptsListCommand())
	return cmd
}

func newAttemptsListCommand() *cobra.Command {
	o := &attemptsListOptions{}
	cmd := &cobra.Command{
		Use:   "list ENDPOINT",
		Short: "List an endpoint's attempts, oldest first",
		Example: `  herald attempts list billing --failed --since 1h
  herald attempts list billing --event-id evt_01J8Z3 -o json`,
		Args: exactlyOneEndpoint,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	fs := cmd.Flags()
	o.list.bind(fs)
	fs.BoolVar(&o.failed, "failed", false, "only failed attempts")
	fs.StringVar(&o.since, "since", "", "only attempts at or after this time: RFC 3339 or a duration before now (1h)")
	fs.StringVar(&o.eventID, "event-id", "", "only the attempts of this event")
	return cmd
}

func (o *attemptsListOptions) run(cmd *cobra.Command, name string) error {
	ns, api, err := o.list.start()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.list.timeout)
	defer cancel()
	list, err := api.endpoint(name).Attempts(ctx, heraldclient.AttemptQuery{Limit: o.list.limit, EventID: o.eventID, Since: o.since, Failed: o.failed})
	if err := api.explain(ctx, err, name, "reading the attempt log", wire.VerbRead, ""); err != nil {
		return err
	}
	if o.list.output != "table" {
		return printObject(cmd.OutOrStdout(), o.list.output, list)
	}
	if len(list.Items) == 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "No attempts of WebhookEndpoint %s/%s match.\n", ns, name)
		return nil
	}
	printAttempts(cmd.OutOrStdout(), list.Items, true)
	withheldNote(cmd.ErrOrStderr(), list.BodiesWithheld, ns)
	if list.More {
		fmt.Fprintf(cmd.ErrOrStderr(), "More attempts than --limit %d: raise --limit or narrow with --since, --failed or --event-id.\n", o.list.limit)
	}
	return nil
}
