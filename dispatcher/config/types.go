package config

import (
	"fmt"
	"time"

	"github.com/herald-dev/herald/internal/outbound"
)

// The file's type: what Render writes and Load recognises.
const (
	APIVersion = "config.herald.dev/v1alpha1"
	Kind       = "DispatcherConfiguration"
)

// Dispatcher is the configuration of `herald dispatcher`: its flags bind to it, its
// --config file holds it, the manager renders it into the dispatcher's ConfigMap, and
// each package of the dispatcher receives the section it needs. Default returns it with
// every default; Validate judges it.
type Dispatcher struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`

	// WatchNamespaces are the namespaces served (all when empty); Secrets are read only
	// there.
	WatchNamespaces []string `json:"watchNamespaces,omitempty"`
	// Serving is where the dispatcher listens.
	Serving Serving `json:"serving"`
	// Store is the JetStream store (package queue).
	Store Store `json:"store"`
	// History bounds the delivery history kept in the store (package queue) and paces
	// replays from it (package replay).
	History History `json:"history"`
	// Ingest bounds the ingest API's requests (package ingest).
	Ingest Ingest `json:"ingest"`
	// Delivery bounds the engine's attempts and holds (package delivery).
	Delivery Delivery `json:"delivery"`
	// Outbound is where deliveries may go (internal/outbound), the same policy as the
	// manager's URL checks.
	Outbound outbound.Policy `json:"outbound"`
	// Egress sends deliveries through the operator's proxy (internal/outbound).
	Egress Egress `json:"egress,omitzero"`
	// Status paces the dispatcher's writes of endpoint status and Herald's operational
	// events (package outcome).
	Status Status `json:"status"`
	// Auth is who may publish and use the endpoint API (package auth).
	Auth Auth `json:"auth"`
	// Tracing exports spans (internal/tracing).
	Tracing Tracing `json:"tracing"`
	// Log is how the dispatcher logs.
	Log Log `json:"log"`
}

// Serving is where the dispatcher listens. An address "0" turns its server off.
type Serving struct {
	// IngestBindAddress serves the ingest and endpoint API.
	IngestBindAddress string `json:"ingestBindAddress"`
	// MetricsBindAddress serves Prometheus metrics.
	MetricsBindAddress string `json:"metricsBindAddress"`
	// HealthProbeBindAddress serves /healthz and /readyz.
	HealthProbeBindAddress string `json:"healthProbeBindAddress"`
	// PprofBindAddress serves Go's /debug/pprof; empty serves none.
	PprofBindAddress string `json:"pprofBindAddress,omitempty"`
	// TLS serves the ingest and endpoint API over TLS; without files, plain HTTP.
	TLS TLSFiles `json:"tls,omitzero"`
}

// TLSFiles are the PEM files the ingest and endpoint API are served with. They are read
// again when they change (a mounted Secret the manager or cert-manager renews), so a
// renewed certificate is served without a restart.
type TLSFiles struct {
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
}

// Enabled reports whether the API is served over TLS.
func (f TLSFiles) Enabled() bool { return f.CertFile != "" }

// Store is the JetStream store the deliveries live in: an embedded server with file
// storage (URL empty) or an external NATS cluster.
type Store struct {
	// URL of an external NATS cluster; empty runs an embedded JetStream server.
	URL string `json:"url,omitempty"`
	// CredentialsFile is a NATS .creds file for URL.
	CredentialsFile string `json:"credentialsFile,omitempty"`
	// DataDir holds the embedded server's file storage. Always written, even empty (an
	// external store): its default is not empty, and a file is read over the defaults.
	DataDir string `json:"dataDir"`
	// SyncAlways makes the embedded server fsync every write before the 202, so a power
	// loss of the node loses nothing (a crash of the process never does: writes reach
	// the OS first). An external cluster is configured on its servers instead
	// (jetstream { sync_interval: always }).
	SyncAlways bool `json:"syncAlways,omitempty"`
	// Replicas of each stream and bucket, 1 to 5; 0 chooses: 3 on a NATS cluster (fewer
	// if it is smaller, never fewer than an existing stream has), 1 on a single server.
	Replicas int `json:"replicas,omitempty"`
	// DedupeWindow is how long an event id is remembered at ingest (0: 24h).
	DedupeWindow time.Duration `json:"dedupeWindow"`
	// MaxDedupeRecords bounds the ids remembered (0: 250,000, about 12 MiB); beyond, the
	// oldest are forgotten first, so under sustained load the window gets shorter
	// instead of memory growing.
	MaxDedupeRecords int64 `json:"maxDedupeRecords"`
	// MaxPendingDeliveries bounds the deliveries stored (0: 1,000,000); ingest answers
	// 429 beyond. The store's write probe holds one place for an instant every second,
	// so at the bound a request may be refused one delivery early.
	MaxPendingDeliveries int64 `json:"maxPendingDeliveries"`
	// MaxPendingBytes bounds the bytes of deliveries stored; ingest answers 429 beyond.
	// 0 leaves it to the NATS servers' storage (which answers the same).
	MaxPendingBytes int64 `json:"maxPendingBytes"`
	// DeadLetterMaxAge is how long dead letters are kept (0: 14 days).
	DeadLetterMaxAge time.Duration `json:"deadLetterMaxAge"`
	// DeadLetterMaxBytes bounds the bytes of dead letters, the oldest going first; 0
	// leaves it to the servers' storage.
	DeadLetterMaxBytes int64 `json:"deadLetterMaxBytes"`
}

// History bounds the delivery history, kept in the store: delivered events retained
// for replay by selection (herald events resend) and the attempt log (herald events
// get, herald attempts list); and paces replays.
type History struct {
	// RetainDeliveredMaxAge and RetainDeliveredMaxBytes bound the retention of delivered
	// events (0: 72h and 256 MiB, which fit the chart's 1 GiB volume beside the queue);
	// beyond either the oldest go first.
	RetainDeliveredMaxAge   time.Duration `json:"retainDeliveredMaxAge"`
	RetainDeliveredMaxBytes int64         `json:"retainDeliveredMaxBytes"`
	// AttemptLog records every attempt: status, duration, a subset of the response
	// headers, the first 4 KiB of the response body.
	AttemptLog bool `json:"attemptLog"`
	// AttemptLogMaxAge and AttemptLogMaxBytes bound the attempt log (0: 7 days and
	// 128 MiB); beyond either the oldest records go first.
	AttemptLogMaxAge   time.Duration `json:"attemptLogMaxAge"`
	AttemptLogMaxBytes int64         `json:"attemptLogMaxBytes"`
	// ReplayRate bounds the re-sends per second of one replay; 0 for no bound but the
	// store's (each endpoint's own limits still pace the deliveries).
	ReplayRate float64 `json:"replayRate"`
}

// Ingest bounds the ingest API's requests.
type Ingest struct {
	// MaxBodyBytes is the largest request body read, for one event or a whole batch
	// (0: 1 MiB, the size subscription filters are judged against); larger bodies get
	// 413 without being read further.
	MaxBodyBytes int64 `json:"maxBodyBytes"`
	// MaxBatchEvents is the most events one batch may hold (0: 100).
	MaxBatchEvents int `json:"maxBatchEvents"`
	// MaxConcurrent is how many requests are served at once (0: 128); beyond it a
	// request is answered 429 at once. With MaxBodyBytes it bounds the memory bodies
	// can take.
	MaxConcurrent int `json:"maxConcurrent"`
	// BodyTimeout is how long a request's body may take to arrive once its headers are
	// in (0: 10s); then 408 and the connection is closed.
	BodyTimeout time.Duration `json:"bodyTimeout"`
}

// Delivery bounds the engine's attempts and what a held endpoint keeps.
type Delivery struct {
	// AckWait is how long an attempt may run before its delivery is handed to another
	// worker (0: 2 minutes; it must exceed the longest attempt).
	AckWait time.Duration `json:"ackWait"`
	// MaxHeld bounds the deliveries of one held (suspended, disabled, misconfigured)
	// endpoint (0: 100,000); the oldest beyond are dead-lettered.
	MaxHeld int64 `json:"maxHeld"`
	// MaxHeldAge is how long a delivery may wait in a held endpoint before it is
	// dead-lettered (0: 72h).
	MaxHeldAge time.Duration `json:"maxHeldAge"`
}

// Egress sends deliveries through the operator's HTTP CONNECT proxy, so receivers can
// allow-list its addresses; endpoints with spec.proxy use theirs, and in-cluster
// Services are reached directly. The proxy's login is no setting: the dispatcher reads
// it from its environment (EnvProxyUsername, EnvProxyPassword), which the manager fills
// from a Secret, so that it is in no file, ConfigMap or command line.
type Egress struct {
	// Proxy is the proxy's URL, http://host:port (no credentials); empty sends directly.
	Proxy string `json:"proxy,omitempty"`
	// NoProxy lists the hosts reached without the proxy: names (and the names under
	// them), IP addresses, CIDR ranges, or * for all.
	NoProxy []string `json:"noProxy,omitempty"`
}

// The environment variables holding the login of Egress.Proxy.
const (
	EnvProxyUsername = "HERALD_EGRESS_PROXY_USERNAME"
	EnvProxyPassword = "HERALD_EGRESS_PROXY_PASSWORD"
)

// Outbound returns the egress deliveries take, with the proxy's login (read from the
// environment by the caller). Validate has judged the proxy.
func (e Egress) Outbound(username, password string) (outbound.Egress, error) {
	if e.Proxy == "" {
		return outbound.Egress{}, nil
	}
	x, err := outbound.ParseProxy(e.Proxy)
	if err != nil {
		return outbound.Egress{}, fmt.Errorf("egress.proxy: %w", err)
	}
	x.Operator = true
	x.Username, x.Password = username, password
	return outbound.Egress{Proxy: x, NoProxy: e.NoProxy}, nil
}

// Status paces what the dispatcher tells Kubernetes and receivers about endpoints.
type Status struct {
	// Interval is the most often one endpoint's status is written (0: 5s).
	Interval time.Duration `json:"interval"`
	// OperationalEventsInterval aggregates Herald's operational events (0: one minute):
	// dead letters of an endpoint after the first are sent together once per interval,
	// and herald.endpoint.recovered at most once per interval.
	OperationalEventsInterval time.Duration `json:"operationalEventsInterval"`
}

// Auth is who may publish and use the endpoint API.
type Auth struct {
	// TokenAudiences are the audiences a ServiceAccount token must carry; empty accepts
	// the API server's own (a token that could be used against the API server itself).
	TokenAudiences []string `json:"tokenAudiences"`
	// AcceptAPIServerAudience also accepts tokens for the API server's own audiences
	// (pods' default tokens), while producers move to tokens for TokenAudiences.
	AcceptAPIServerAudience bool `json:"acceptAPIServerAudience"`
	// APIKeys accepts API keys from Secrets labelled hooks.herald.dev/api-key=true,
	// each valid in its own namespace.
	APIKeys bool `json:"apiKeys"`
}

// Tracing exports spans of ingest, the store and every attempt.
type Tracing struct {
	// OTLPEndpoint is an OTLP/HTTP collector's base URL (http://collector:4318); empty
	// uses OTEL_EXPORTER_OTLP_ENDPOINT, and without it exports nothing.
	OTLPEndpoint string `json:"otlpEndpoint,omitempty"`
}

// Log is how the dispatcher logs: JSON lines, or the console form for people.
type Log struct {
	// Verbosity is 0 (info), 1 (debug) or 2 (trace).
	Verbosity int `json:"verbosity"`
	// Development writes human-readable console lines instead of JSON.
	Development bool `json:"development,omitempty"`
}
