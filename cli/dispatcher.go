package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/yaml"

	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/ingest"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/replay"
	"github.com/herald-dev/herald/internal/outbound"
	"github.com/herald-dev/herald/internal/tracing"
)

type dispatcherOptions struct {
	log                 logOptions
	configFile          string
	healthAddr          string
	metricsAddr         string
	pprofAddr           string
	ingestAddr          string
	tls                 app.TLSFiles
	store               queue.Options
	watchNamespaces     []string
	policy              outbound.Policy
	egressProxy         string
	egressNoProxy       []string
	ackWait             time.Duration
	ingest              ingest.Limits
	maxHeld             int64
	maxHeldAge          time.Duration
	statusInterval      time.Duration
	otlpEndpoint        string
	attemptLog          bool
	operationalInterval time.Duration
	replayRate          float64
	auth                authOptions
}

func newDispatcherCommand() *cobra.Command {
	o := &dispatcherOptions{}
	cmd := &cobra.Command{
		Use:   "dispatcher",
		Short: "Run the delivery engine: ingest API, durable queue, signing, retries",
		Long: `Run the Herald dispatcher.

The dispatcher accepts events on its ingest API (POST /v1/namespaces/{ns}/events),
stores them in NATS JetStream (an embedded server with file storage under --data-dir,
or an external cluster with --nats-url), routes them to WebhookEndpoints through
WebhookSubscriptions, and delivers them signed, with retries and dead letters.

Every flag can also be set in the YAML file given with --config (keys are flag names);
a flag given on the command line wins.`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyConfigFile(cmd.Flags(), o.configFile)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDispatcher(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	o.log.bind(fs)
	fs.StringVar(&o.configFile, "config", "", "YAML file of flag values (keys are flag names)")
	fs.StringVar(&o.healthAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":9090", "address of the Prometheus metrics endpoint; 0 disables it")
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", "", "address of Go's /debug/pprof (heap and CPU profiles); empty serves none. Bind it to 127.0.0.1 and reach it with kubectl port-forward")
	fs.StringVar(&o.ingestAddr, "ingest-bind-address", ":8080", "address of the ingest API")
	fs.StringVar(&o.tls.CertFile, "tls-cert-file", "", "PEM certificate to serve the ingest and endpoint API over TLS with (read again when it changes); empty serves plain HTTP")
	fs.StringVar(&o.tls.KeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	fs.StringVar(&o.store.DataDir, "data-dir", "/var/lib/herald", "storage of the embedded JetStream server")
	fs.BoolVar(&o.store.SyncAlways, "nats-sync-always", false, "embedded server: fsync every write before the 202, surviving a power loss of the node (an external cluster sets jetstream.sync_interval: always on its servers)")
	fs.StringVar(&o.store.URL, "nats-url", "", "external NATS cluster; empty runs an embedded JetStream server")
	fs.StringVar(&o.store.CredentialsFile, "nats-credentials", "", "NATS .creds file for --nats-url")
	fs.IntVar(&o.store.Replicas, "nats-replicas", 0, "copies of Herald's streams; 0 chooses 3 on a NATS cluster (fewer if it is smaller, never fewer than the streams have) and 1 on a single server")
	fs.StringSliceVar(&o.watchNamespaces, "watch-namespaces", nil, "namespaces served (default all); Secrets are read only there")
	fs.BoolVar(&o.policy.AllowPlainHTTP, "allow-plain-http", false, "deliver to http:// URLs")
	fs.BoolVar(&o.policy.AllowPrivateNetworks, "allow-private-networks", false, "deliver to private address ranges")
	fs.BoolVar(&o.policy.AllowLoopback, "allow-loopback", false, "deliver to loopback addresses (local development only)")
	fs.StringVar(&o.egressProxy, "egress-proxy", "", "HTTP CONNECT proxy (http://host:port) every delivery goes through, so receivers can allow-list its addresses; credentials from the environment variables "+envProxyUsername+" and "+envProxyPassword+". Endpoints with spec.proxy use theirs, in-cluster Services are reached directly")
	fs.StringSliceVar(&o.egressNoProxy, "egress-no-proxy", nil, "hosts reached without --egress-proxy: names (and the names under them), IP addresses, CIDR ranges, or * for all")
	fs.DurationVar(&o.ackWait, "ack-wait", 2*time.Minute, "how long an attempt may run before its delivery is handed to another worker")
	fs.DurationVar(&o.store.DedupeWindow, "dedupe-window", 24*time.Hour, "how long an event id is remembered at ingest")
	fs.DurationVar(&o.store.DeadLetterMaxAge, "dead-letter-max-age", 14*24*time.Hour, "how long dead letters are kept")
	fs.DurationVar(&o.store.RetainDeliveredMaxAge, "retain-delivered-max-age", 72*time.Hour, "how long delivered events are kept for replay by selection (herald events resend)")
	fs.Int64Var(&o.store.RetainDeliveredMaxBytes, "retain-delivered-max-bytes", 256<<20, "bytes of delivered events kept for replay at most, the oldest going first")
	fs.BoolVar(&o.attemptLog, "attempt-log", true, "record every attempt (status, duration, response headers subset, first 4 KiB of the response body) in the store")
	fs.DurationVar(&o.operationalInterval, "operational-events-interval", time.Minute, "aggregation interval of Herald's operational events: dead letters of an endpoint after the first are sent together once per interval, and herald.endpoint.recovered at most once per interval")
	fs.Float64Var(&o.replayRate, "replay-rate", replay.DefaultRate, "re-sends per second of one replay at most: a fraction of what one endpoint delivers with its default 8 requests in flight, so live events keep flowing beside a replay; 0 for no bound but the store's (each endpoint's own limits still pace the deliveries)")
	fs.DurationVar(&o.store.AttemptLogMaxAge, "attempt-log-max-age", 7*24*time.Hour, "how long attempt records are kept")
	fs.Int64Var(&o.store.AttemptLogMaxBytes, "attempt-log-max-bytes", 128<<20, "bytes of attempt records kept at most, the oldest going first")
	fs.Int64Var(&o.store.DeadLetterMaxBytes, "dead-letter-max-bytes", 0, "bytes of dead letters kept at most, the oldest going first; 0 for no cap but the NATS servers' storage")
	fs.Int64Var(&o.store.MaxDedupeRecords, "dedupe-max-records", 250_000, "event ids remembered for deduplication at most (about 350 B of memory each); beyond, the oldest are forgotten first")
	fs.Int64Var(&o.store.MaxPendingDeliveries, "max-pending-deliveries", 1_000_000, "deliveries stored at most; ingest answers 429 beyond")
	fs.Int64Var(&o.store.MaxPendingBytes, "max-pending-bytes", 0, "bytes of deliveries stored at most; ingest answers 429 beyond; 0 for no cap but the NATS servers' storage (which answers the same)")
	fs.Int64Var(&o.ingest.MaxBodyBytes, "max-body-bytes", 1<<20, "largest ingest request body")
	fs.IntVar(&o.ingest.MaxBatchEvents, "max-batch-events", 100, "most events in one batch request")
	fs.IntVar(&o.ingest.MaxConcurrent, "ingest-max-concurrent", 128, "ingest requests served at once; beyond, 429 with Retry-After (with --max-body-bytes, the bound on memory taken by bodies)")
	fs.DurationVar(&o.ingest.BodyTimeout, "ingest-body-timeout", 10*time.Second, "how long an ingest request's body may take to arrive; then 408 and the connection is closed")
	fs.Int64Var(&o.maxHeld, "max-held-deliveries", 100_000, "deliveries a held (suspended, disabled, misconfigured) endpoint keeps; the oldest beyond are dead-lettered")
	fs.DurationVar(&o.maxHeldAge, "max-held-age", 72*time.Hour, "how long a delivery may wait in a held endpoint before it is dead-lettered")
	fs.DurationVar(&o.statusInterval, "status-interval", 5*time.Second, "the most often one endpoint's status is written")
	fs.StringVar(&o.otlpEndpoint, "otlp-endpoint", "", "OTLP/HTTP collector base URL (http://collector:4318) to export spans of ingest, store and every attempt to; empty uses OTEL_EXPORTER_OTLP_ENDPOINT, and without it exports nothing")
	o.auth.bind(fs)
	return cmd
}

// applyConfigFile sets every flag named in the file that was not given on the command
// line, so the chart's ConfigMap and ad-hoc flags compose.
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	if path == "" {
		return nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading --config: %w", err)
	}
	// Numbers are kept as written (json.Number): through float64, 1048576 would come
	// back as 1.048576e+06 and an integer flag would refuse it.
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return fmt.Errorf("parsing --config %s: %w", path, err)
	}
	var values map[string]any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&values); err != nil {
		return fmt.Errorf("parsing --config %s: %w", path, err)
	}
	for name, v := range values {
		f := fs.Lookup(name)
		if f == nil {
			return fmt.Errorf("--config %s: unknown setting %q", path, name)
		}
		if f.Changed {
			continue
		}
		var s string
		switch v := v.(type) {
		case []any:
			parts := make([]string, len(v))
			for i := range v {
				parts[i] = fmt.Sprint(v[i])
			}
			s = strings.Join(parts, ",")
		case nil:
			continue
		default:
			s = fmt.Sprint(v)
		}
		if err := fs.Set(name, s); err != nil {
			return fmt.Errorf("--config %s: %s: %w", path, name, err)
		}
	}
	return nil
}

func runDispatcher(ctx context.Context, o *dispatcherOptions) error {
	if (o.tls.CertFile == "") != (o.tls.KeyFile == "") {
		return fmt.Errorf("--tls-cert-file and --tls-key-file go together")
	}
	egress, err := egressOf(o, os.Getenv)
	if err != nil {
		return err
	}
	log := o.log.logger()
	ctrl.SetLogger(log)
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	return app.Run(ctx, cfg, app.Options{
		Store:               o.store,
		IngestAddr:          o.ingestAddr,
		TLS:                 o.tls,
		HealthAddr:          o.healthAddr,
		MetricsAddr:         o.metricsAddr,
		PprofAddr:           o.pprofAddr,
		WatchNamespaces:     o.watchNamespaces,
		Policy:              o.policy,
		Egress:              egress,
		AckWait:             o.ackWait,
		Ingest:              o.ingest,
		MaxHeld:             o.maxHeld,
		WithoutAttemptLog:   !o.attemptLog,
		ReplayRate:          replayRate(o.replayRate),
		OperationalInterval: o.operationalInterval,
		MaxHeldAge:          o.maxHeldAge,
		StatusInterval:      o.statusInterval,
		Tracing:             tracing.Options{Endpoint: o.otlpEndpoint},
		Authorizer: app.ClusterAuthorizer(app.AuthOptions{
			Audiences: o.auth.audiences, AcceptAPIServerAudience: o.auth.acceptAPIServerAudience,
			APIKeys: o.auth.apiKeys, Namespaces: o.watchNamespaces, Log: log.WithName("auth"),
		}),
		AdminAuthorizers: app.ClusterAdminAuthorizers(app.AuthOptions{
			Audiences: o.auth.audiences, AcceptAPIServerAudience: o.auth.acceptAPIServerAudience, Log: log.WithName("auth"),
		}),
		Log: log,
	})
}

// The environment variables holding the credentials of --egress-proxy: the manager sets
// them from a Secret, so that they are in no file and no command line.
const (
	envProxyUsername = "HERALD_EGRESS_PROXY_USERNAME"
	envProxyPassword = "HERALD_EGRESS_PROXY_PASSWORD"
)

// egressOf reads --egress-proxy and --egress-no-proxy, judged before anything is sent:
// the outbound policy refuses a proxy at a metadata address even from the operator.
func egressOf(o *dispatcherOptions, getenv func(string) string) (outbound.Egress, error) {
	if o.egressProxy == "" {
		return outbound.Egress{}, nil
	}
	x, err := outbound.ParseProxy(o.egressProxy)
	if err != nil {
		return outbound.Egress{}, fmt.Errorf("--egress-proxy: %w", err)
	}
	if x.Username != "" || x.Password != "" {
		return outbound.Egress{}, fmt.Errorf("--egress-proxy must not carry credentials; set %s and %s", envProxyUsername, envProxyPassword)
	}
	x.Operator = true
	x.Username, x.Password = getenv(envProxyUsername), getenv(envProxyPassword)
	if err := o.policy.CheckProxy(x); err != nil {
		return outbound.Egress{}, fmt.Errorf("--egress-proxy: %w", err)
	}
	if err := outbound.CheckNoProxy(o.egressNoProxy); err != nil {
		return outbound.Egress{}, fmt.Errorf("--egress-no-proxy: %w", err)
	}
	return outbound.Egress{Proxy: x, NoProxy: o.egressNoProxy}, nil
}

// replayRate turns the flag's 0 (no bound) into the dispatcher's (negative; its 0 is the
// default).
func replayRate(flag float64) float64 {
	if flag == 0 {
		return -1
	}
	return flag
}
