package config

import (
	"fmt"

	"github.com/spf13/pflag"
)

// BindFlags registers the flags of `herald dispatcher` on fs, each bound to its field
// of c and defaulting to its current value (call it on Default()). The names are the
// dispatcher's flags since its first release, and the keys of the flat --config files
// managers before this package wrote.
func BindFlags(fs *pflag.FlagSet, c *Dispatcher) {
	fs.StringSliceVar(&c.WatchNamespaces, "watch-namespaces", c.WatchNamespaces, "namespaces served (default all); Secrets are read only there")

	fs.StringVar(&c.Serving.IngestBindAddress, "ingest-bind-address", c.Serving.IngestBindAddress, "address of the ingest API")
	fs.StringVar(&c.Serving.MetricsBindAddress, "metrics-bind-address", c.Serving.MetricsBindAddress, "address of the Prometheus metrics endpoint; 0 disables it")
	fs.StringVar(&c.Serving.HealthProbeBindAddress, "health-probe-bind-address", c.Serving.HealthProbeBindAddress, "address of /healthz and /readyz")
	fs.StringVar(&c.Serving.PprofBindAddress, "pprof-bind-address", c.Serving.PprofBindAddress, "address of Go's /debug/pprof (heap and CPU profiles); empty serves none. Bind it to 127.0.0.1 and reach it with kubectl port-forward")
	fs.StringVar(&c.Serving.TLS.CertFile, "tls-cert-file", c.Serving.TLS.CertFile, "PEM certificate to serve the ingest and endpoint API over TLS with (read again when it changes); empty serves plain HTTP")
	fs.StringVar(&c.Serving.TLS.KeyFile, "tls-key-file", c.Serving.TLS.KeyFile, "PEM private key of --tls-cert-file")

	s := &c.Store
	fs.StringVar(&s.URL, "nats-url", s.URL, "external NATS cluster; empty runs an embedded JetStream server")
	fs.StringVar(&s.CredentialsFile, "nats-credentials", s.CredentialsFile, "NATS .creds file for --nats-url")
	fs.StringVar(&s.DataDir, "data-dir", s.DataDir, "storage of the embedded JetStream server")
	fs.BoolVar(&s.SyncAlways, "nats-sync-always", s.SyncAlways, "embedded server: fsync every write before the 202, surviving a power loss of the node (an external cluster sets jetstream.sync_interval: always on its servers)")
	fs.IntVar(&s.Replicas, "nats-replicas", s.Replicas, "copies of Herald's streams; 0 chooses 3 on a NATS cluster (fewer if it is smaller, never fewer than the streams have) and 1 on a single server")
	fs.DurationVar(&s.DedupeWindow, "dedupe-window", s.DedupeWindow, "how long an event id is remembered at ingest")
	fs.Int64Var(&s.MaxDedupeRecords, "dedupe-max-records", s.MaxDedupeRecords, "event ids remembered for deduplication at most (about 350 B of memory each); beyond, the oldest are forgotten first")
	fs.Int64Var(&s.MaxPendingDeliveries, "max-pending-deliveries", s.MaxPendingDeliveries, "deliveries stored at most; ingest answers 429 beyond")
	fs.Int64Var(&s.MaxPendingBytes, "max-pending-bytes", s.MaxPendingBytes, "bytes of deliveries stored at most; ingest answers 429 beyond; 0 for no cap but the NATS servers' storage (which answers the same)")
	fs.DurationVar(&s.DeadLetterMaxAge, "dead-letter-max-age", s.DeadLetterMaxAge, "how long dead letters are kept")
	fs.Int64Var(&s.DeadLetterMaxBytes, "dead-letter-max-bytes", s.DeadLetterMaxBytes, "bytes of dead letters kept at most, the oldest going first; 0 for no cap but the NATS servers' storage")

	h := &c.History
	fs.DurationVar(&h.RetainDeliveredMaxAge, "retain-delivered-max-age", h.RetainDeliveredMaxAge, "how long delivered events are kept for replay by selection (herald events resend)")
	fs.Int64Var(&h.RetainDeliveredMaxBytes, "retain-delivered-max-bytes", h.RetainDeliveredMaxBytes, "bytes of delivered events kept for replay at most, the oldest going first")
	fs.BoolVar(&h.AttemptLog, "attempt-log", h.AttemptLog, "record every attempt (status, duration, response headers subset, first 4 KiB of the response body) in the store")
	fs.DurationVar(&h.AttemptLogMaxAge, "attempt-log-max-age", h.AttemptLogMaxAge, "how long attempt records are kept")
	fs.Int64Var(&h.AttemptLogMaxBytes, "attempt-log-max-bytes", h.AttemptLogMaxBytes, "bytes of attempt records kept at most, the oldest going first")
	fs.Float64Var(&h.ReplayRate, "replay-rate", h.ReplayRate, "re-sends per second of one replay at most: a fraction of what one endpoint delivers with its default 8 requests in flight, so live events keep flowing beside a replay; 0 for no bound but the store's (each endpoint's own limits still pace the deliveries)")

	i := &c.Ingest
	fs.Int64Var(&i.MaxBodyBytes, "max-body-bytes", i.MaxBodyBytes, "largest ingest request body")
	fs.IntVar(&i.MaxBatchEvents, "max-batch-events", i.MaxBatchEvents, "most events in one batch request")
	fs.IntVar(&i.MaxConcurrent, "ingest-max-concurrent", i.MaxConcurrent, "ingest requests served at once; beyond, 429 with Retry-After (with --max-body-bytes, the bound on memory taken by bodies)")
	fs.DurationVar(&i.BodyTimeout, "ingest-body-timeout", i.BodyTimeout, "how long an ingest request's body may take to arrive; then 408 and the connection is closed")

	d := &c.Delivery
	fs.DurationVar(&d.AckWait, "ack-wait", d.AckWait, "how long an attempt may run before its delivery is handed to another worker")
	fs.Int64Var(&d.MaxHeld, "max-held-deliveries", d.MaxHeld, "deliveries a held (suspended, disabled, misconfigured) endpoint keeps; the oldest beyond are dead-lettered")
	fs.DurationVar(&d.MaxHeldAge, "max-held-age", d.MaxHeldAge, "how long a delivery may wait in a held endpoint before it is dead-lettered")

	o := &c.Outbound
	fs.BoolVar(&o.AllowPlainHTTP, "allow-plain-http", o.AllowPlainHTTP, "deliver to http:// URLs")
	fs.BoolVar(&o.AllowPrivateNetworks, "allow-private-networks", o.AllowPrivateNetworks, "deliver to private address ranges")
	fs.BoolVar(&o.AllowLoopback, "allow-loopback", o.AllowLoopback, "deliver to loopback addresses (local development only)")

	fs.StringVar(&c.Egress.Proxy, "egress-proxy", c.Egress.Proxy, "HTTP CONNECT proxy (http://host:port) every delivery goes through, so receivers can allow-list its addresses; its login from the environment variables "+EnvProxyUsername+" and "+EnvProxyPassword+". Endpoints with spec.proxy use theirs, in-cluster Services are reached directly")
	fs.StringSliceVar(&c.Egress.NoProxy, "egress-no-proxy", c.Egress.NoProxy, "hosts reached without --egress-proxy: names (and the names under them), IP addresses, CIDR ranges, or * for all")

	fs.DurationVar(&c.Status.Interval, "status-interval", c.Status.Interval, "the most often one endpoint's status is written")
	fs.DurationVar(&c.Status.OperationalEventsInterval, "operational-events-interval", c.Status.OperationalEventsInterval, "aggregation interval of Herald's operational events: dead letters of an endpoint after the first are sent together once per interval, and herald.endpoint.recovered at most once per interval")

	a := &c.Auth
	fs.StringSliceVar(&a.TokenAudiences, "token-audiences", a.TokenAudiences, "audiences a ServiceAccount token must carry; empty accepts the API server's own (a token that could be used against the API server itself)")
	fs.BoolVar(&a.AcceptAPIServerAudience, "accept-api-server-audience", a.AcceptAPIServerAudience, "also accept tokens for the API server's own audiences (pods' default tokens, kubeconfig tokens) while producers move to tokens for --token-audiences")
	fs.BoolVar(&a.APIKeys, "api-keys", a.APIKeys, "accept API keys from Secrets labelled hooks.herald.dev/api-key=true (each grants its own namespace)")

	fs.StringVar(&c.Tracing.OTLPEndpoint, "otlp-endpoint", c.Tracing.OTLPEndpoint, "OTLP/HTTP collector base URL (http://collector:4318) to export spans of ingest, store and every attempt to; empty uses OTEL_EXPORTER_OTLP_ENDPOINT, and without it exports nothing")

	fs.IntVar(&c.Log.Verbosity, "v", c.Log.Verbosity, "log verbosity (0 info, 1 debug, 2 trace)")
	fs.BoolVar(&c.Log.Development, "log-dev", c.Log.Development, "human-readable console logs instead of JSON")
}

// ManagerDecides are the dispatcher flags the manager sets itself when it renders the
// configuration (from the pod it builds, its own --nats-url and
// --nats-credentials-secret, its --dispatcher-tls, and its own --watch-namespaces and
// --allow-* flags, which govern it too), so it takes no --dispatcher-<name> flag for
// them.
var ManagerDecides = []string{
	"watch-namespaces",
	"ingest-bind-address", "metrics-bind-address", "health-probe-bind-address",
	"tls-cert-file", "tls-key-file",
	"nats-url", "nats-credentials", "data-dir",
	"allow-plain-http", "allow-private-networks", "allow-loopback",
}

// managerNames are the manager's names for dispatcher flags that it had before its
// flags were derived from the dispatcher's, kept so that existing installations work.
var managerNames = map[string]string{
	"v":                "dispatcher-log-verbosity",
	"nats-replicas":    "nats-stream-replicas",
	"nats-sync-always": "dispatcher-sync-always",
}

// BindManagerFlags registers on fs, for the manager, every dispatcher flag it passes
// on: --dispatcher-<name> bound to its field of c (the configuration the manager
// renders), for every flag but ManagerDecides. A field added to the configuration with
// its flag is therefore settable through the manager with no more code.
func BindManagerFlags(fs *pflag.FlagSet, c *Dispatcher) {
	all := pflag.NewFlagSet("dispatcher", pflag.ContinueOnError)
	BindFlags(all, c)
	decided := map[string]bool{}
	for _, n := range ManagerDecides {
		decided[n] = true
	}
	all.VisitAll(func(f *pflag.Flag) {
		if decided[f.Name] {
			return
		}
		mf := *f
		mf.Name = ManagerFlag(f.Name)
		mf.Shorthand = ""
		mf.Usage = "the dispatcher's --" + f.Name + ": " + f.Usage
		fs.AddFlag(&mf)
	})
	// Before --dispatcher-attempt-log there was its opposite.
	fs.Var(inverted{&c.History.AttemptLog}, "dispatcher-without-attempt-log", "do not record attempts in the attempt log")
	fs.Lookup("dispatcher-without-attempt-log").NoOptDefVal = "true"
	_ = fs.MarkDeprecated("dispatcher-without-attempt-log", "use --dispatcher-attempt-log=false")
}

// ManagerFlag is the manager's name of the dispatcher flag name.
func ManagerFlag(name string) string {
	if n, ok := managerNames[name]; ok {
		return n
	}
	return "dispatcher-" + name
}

// inverted is a boolean flag setting the opposite of its field.
type inverted struct{ b *bool }

func (v inverted) String() string {
	if v.b == nil {
		return "false"
	}
	return fmt.Sprint(!*v.b)
}

func (v inverted) Set(s string) error {
	var on bool
	if _, err := fmt.Sscanf(s, "%t", &on); err != nil {
		return fmt.Errorf("%q is not true or false", s)
	}
	*v.b = !on
	return nil
}

func (v inverted) Type() string     { return "bool" }
func (v inverted) IsBoolFlag() bool { return true }
