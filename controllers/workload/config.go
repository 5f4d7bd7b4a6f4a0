package workload

import (
	"time"

	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/herald-dev/herald/dispatcher/replay"
	"github.com/herald-dev/herald/internal/outbound"
	"github.com/herald-dev/herald/internal/version"
)

// Mode selects where the dispatcher keeps its queue.
type Mode string

const (
	// ModeEmbedded runs JetStream inside the single dispatcher pod, on a PersistentVolume:
	// a StatefulSet with one replica and a volumeClaimTemplate.
	ModeEmbedded Mode = "embedded"
	// ModeExternal connects the dispatchers to an external NATS cluster, so several
	// replicas share the work: a Deployment.
	ModeExternal Mode = "external"
)

// TLSMode says whether the dispatcher serves its ingest and endpoint API over TLS, and
// who issues its certificate.
type TLSMode string

const (
	// TLSOff serves plain HTTP.
	TLSOff TLSMode = "off"
	// TLSManager: the manager makes a CA and the serving certificate (Secrets
	// <name>-ca and <name>-tls) and renews both.
	TLSManager TLSMode = "manager"
	// TLSExternal: something else, cert-manager in the chart, fills the Secret
	// <name>-tls (tls.crt, tls.key, ca.crt); the manager publishes its ca.crt.
	TLSExternal TLSMode = "external"
)

// Defaults of the manager flags. The zero value of Config is not usable; BindFlags (or
// DefaultConfig, in tests) fills these in.
const (
	DefaultNamespace          = "herald-system"
	DefaultName               = "herald-dispatcher"
	DefaultImageRepository    = "ghcr.io/herald-dev/herald"
	DefaultStorageSize        = "1Gi"
	DefaultNATSCredentialsKey = "nats.creds"
	DefaultCPURequest         = "100m"
	DefaultMemoryRequest      = "128Mi"
	DefaultMemoryLimit        = "512Mi"
	DefaultMaxBodyBytes       = 1 << 20
)

// Config is the dispatcher workload the manager maintains, from the manager's flags. The
// Helm chart and config/manager set these flags; the manager itself never guesses.
type Config struct {
	// Namespace of every dispatcher object; the manager's own namespace in a normal install.
	Namespace string
	// Name of the StatefulSet or Deployment, Service, ServiceAccount and ConfigMap. The
	// chart binds the dispatcher ClusterRole to the ServiceAccount of this name.
	Name string
	// OwnerDeployment, when set, names the manager's Deployment in Namespace. Every
	// dispatcher object gets an ownerReference to it, so uninstalling the manager (helm
	// uninstall, kubectl delete -k) garbage-collects the dispatcher too.
	OwnerDeployment string

	Image            string
	ImagePullPolicy  string
	ImagePullSecrets []string

	Mode Mode
	// Replicas of the Deployment in external mode; embedded mode is always one replica.
	Replicas int32
	// StorageSize and StorageClass shape the embedded store's PersistentVolumeClaim.
	// StorageClass "" uses the cluster's default class.
	StorageSize  string
	StorageClass string

	// NATSURL is the external NATS cluster; required in external mode.
	NATSURL string
	// NATSCredentialsSecret names a Secret in Namespace whose NATSCredentialsKey holds a
	// NATS .creds file; optional.
	NATSCredentialsSecret string
	NATSCredentialsKey    string

	// Resource requests and limits of the dispatcher container; "" leaves one unset.
	CPURequest    string
	MemoryRequest string
	CPULimit      string
	MemoryLimit   string

	// NATSStreamReplicas is the replication of Herald's streams in the external cluster;
	// 0 lets the dispatcher choose (3 on a cluster, fewer if it is smaller).
	NATSStreamReplicas int
	// MaxPendingBytes and DeadLetterMaxBytes cap the delivery and dead-letter streams;
	// 0 leaves them to the NATS servers' storage.
	MaxPendingBytes    int64
	DeadLetterMaxBytes int64
	// SyncAlways makes the embedded store fsync every write before answering 202.
	SyncAlways bool
	// History bounds the delivery history (retained delivered events, the attempt log);
	// zero values are the dispatcher's defaults.
	History HistoryConfig

	// MaxBodyBytes caps one request to the ingest API.
	MaxBodyBytes int64
	// LogVerbosity is the dispatcher's --v.
	LogVerbosity int
	// OTLPEndpoint is the OTLP/HTTP collector the dispatcher exports spans to; empty
	// exports none.
	OTLPEndpoint string

	// TLS serves the dispatcher's API over TLS (see TLSMode). Either way the CA is
	// published in the ConfigMap <name>-ca (key ca.crt) for producers and the CLI.
	TLS TLSMode

	// AcceptAPIServerAudience makes the dispatcher accept producers' tokens for the API
	// server's own audiences besides Herald's (auth.Audience): for the move to projected
	// tokens with Herald's audience.
	AcceptAPIServerAudience bool

	// WatchNamespaces are the namespaces the dispatcher serves (all when empty). It is
	// not a flag of its own: the manager's --watch-namespaces, which limits the manager
	// too.
	WatchNamespaces []string

	// Egress is the operator's proxy every delivery goes through (an http://host:port
	// URL; empty sends directly), the hosts reached without it, and the
	// kubernetes.io/basic-auth Secret in Namespace whose username and password the
	// dispatcher sends to it (optional; the dispatcher reads them from its environment).
	EgressProxy       string
	EgressNoProxy     []string
	EgressProxySecret string

	// Outbound is the delivery policy. It is not a flag of its own: the manager copies its
	// --allow-plain-http/--allow-private-networks policy here, so the manager's URL checks
	// and the dispatcher's dial-time checks can never disagree.
	Outbound outbound.Policy
}

// DefaultConfig returns the configuration BindFlags would produce with no flags set.
func DefaultConfig() Config {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = DefaultNamespace
	}
	return Config{
		Namespace:          ns,
		Name:               DefaultName,
		Image:              DefaultImageRepository + ":" + defaultImageTag(),
		ImagePullPolicy:    string(corev1.PullIfNotPresent),
		Mode:               ModeEmbedded,
		Replicas:           1,
		StorageSize:        DefaultStorageSize,
		NATSCredentialsKey: DefaultNATSCredentialsKey,
		CPURequest:         DefaultCPURequest,
		MemoryRequest:      DefaultMemoryRequest,
		MemoryLimit:        DefaultMemoryLimit,
		MaxBodyBytes:       DefaultMaxBodyBytes,
		TLS:                TLSOff,
		History:            HistoryConfig{ReplayRate: replay.DefaultRate},
	}
}

func defaultImageTag() string {
	if version.Version == "" || version.Version == "dev" {
		return "latest"
	}
	return version.Version
}

// BindFlags registers the manager flags that fill the Config.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	d := DefaultConfig()
	fs.StringVar(&c.Namespace, "dispatcher-namespace", d.Namespace, "namespace of the dispatcher workload; the default is $POD_NAMESPACE when set")
	fs.StringVar(&c.Name, "dispatcher-name", d.Name, "name of the dispatcher's StatefulSet/Deployment, Service, ServiceAccount and ConfigMap")
	fs.StringVar(&c.OwnerDeployment, "dispatcher-owner-deployment", "", "the manager's own Deployment; dispatcher objects are owned by it and deleted with it")
	fs.StringVar(&c.Image, "dispatcher-image", d.Image, "image of the dispatcher (the herald image)")
	fs.StringVar(&c.ImagePullPolicy, "dispatcher-image-pull-policy", d.ImagePullPolicy, "imagePullPolicy of the dispatcher: Always, IfNotPresent or Never")
	fs.StringSliceVar(&c.ImagePullSecrets, "dispatcher-image-pull-secrets", nil, "names of image pull Secrets for the dispatcher pods")
	fs.StringVar((*string)(&c.Mode), "dispatcher-mode", string(d.Mode), "embedded (StatefulSet, in-process JetStream on a volume) or external (Deployment on an external NATS cluster)")
	fs.Int32Var(&c.Replicas, "dispatcher-replicas", d.Replicas, "dispatcher replicas; must be 1 in embedded mode")
	fs.StringVar(&c.StorageSize, "dispatcher-storage-size", d.StorageSize, "size of the embedded store's volume")
	fs.StringVar(&c.StorageClass, "dispatcher-storage-class", "", "StorageClass of the embedded store's volume (default: the cluster default)")
	fs.StringVar(&c.NATSURL, "nats-url", "", "URL of the external NATS cluster (external mode)")
	fs.StringVar(&c.NATSCredentialsSecret, "nats-credentials-secret", "", "Secret holding the NATS credentials file (external mode, optional)")
	fs.StringVar(&c.NATSCredentialsKey, "nats-credentials-key", d.NATSCredentialsKey, "key of the credentials file in --nats-credentials-secret")
	fs.StringVar(&c.CPURequest, "dispatcher-cpu-request", d.CPURequest, "CPU request of the dispatcher; empty for none")
	fs.StringVar(&c.MemoryRequest, "dispatcher-memory-request", d.MemoryRequest, "memory request of the dispatcher; empty for none")
	fs.StringVar(&c.CPULimit, "dispatcher-cpu-limit", "", "CPU limit of the dispatcher; empty for none")
	fs.StringVar(&c.MemoryLimit, "dispatcher-memory-limit", d.MemoryLimit, "memory limit of the dispatcher (also its GOMEMLIMIT); empty for none")
	fs.IntVar(&c.NATSStreamReplicas, "nats-stream-replicas", d.NATSStreamReplicas, "replicas of Herald's JetStream streams in the external cluster (1 to 5); 0 lets the dispatcher choose: 3 on a cluster, fewer if it is smaller, never fewer than the streams have")
	fs.Int64Var(&c.MaxPendingBytes, "dispatcher-max-pending-bytes", 0, "bytes of deliveries stored at most (ingest answers 429 beyond); 0 leaves it to the NATS servers' storage")
	fs.Int64Var(&c.DeadLetterMaxBytes, "dispatcher-dead-letter-max-bytes", 0, "bytes of dead letters kept at most, the oldest going first; 0 leaves it to the NATS servers' storage")
	fs.DurationVar(&c.History.RetainDeliveredMaxAge, "dispatcher-retain-delivered-max-age", 72*time.Hour, "how long delivered events are kept for replay by selection")
	fs.Int64Var(&c.History.RetainDeliveredMaxBytes, "dispatcher-retain-delivered-max-bytes", 256<<20, "bytes of delivered events kept for replay at most, the oldest going first")
	fs.BoolVar(&c.History.WithoutAttemptLog, "dispatcher-without-attempt-log", false, "do not record attempts in the attempt log")
	fs.DurationVar(&c.History.AttemptLogMaxAge, "dispatcher-attempt-log-max-age", 7*24*time.Hour, "how long attempt records are kept")
	fs.Int64Var(&c.History.AttemptLogMaxBytes, "dispatcher-attempt-log-max-bytes", 128<<20, "bytes of attempt records kept at most, the oldest going first")
	fs.Float64Var(&c.History.ReplayRate, "dispatcher-replay-rate", d.History.ReplayRate, "re-sends per second of one replay at most; 0 for no bound but the store's")
	fs.BoolVar(&c.SyncAlways, "dispatcher-sync-always", false, "embedded mode: fsync every write before the 202, so a power loss of the node loses nothing (external mode: configure the NATS servers)")
	fs.Int64Var(&c.MaxBodyBytes, "dispatcher-max-body-bytes", d.MaxBodyBytes, "largest request body the dispatcher's ingest API accepts")
	fs.IntVar(&c.LogVerbosity, "dispatcher-log-verbosity", 0, "log verbosity of the dispatcher (0 info, 1 debug, 2 trace)")
	fs.StringVar((*string)(&c.TLS), "dispatcher-tls", string(d.TLS), "serve the dispatcher's ingest and endpoint API over TLS: off; manager (the manager makes and renews a CA and the certificate); external (cert-manager fills the Secret <dispatcher-name>-tls). The CA is published in the ConfigMap <dispatcher-name>-ca")
	fs.BoolVar(&c.AcceptAPIServerAudience, "dispatcher-accept-api-server-audience", false, "the dispatcher also accepts producers' tokens for the API server's own audience (pods' default tokens), not only for Herald's (hooks.herald.dev): while producers move to projected tokens")
	fs.StringVar(&c.OTLPEndpoint, "dispatcher-otlp-endpoint", "", "OTLP/HTTP collector base URL (http://otel-collector.observability:4318) the dispatcher exports spans to; empty exports none")
	fs.StringVar(&c.EgressProxy, "dispatcher-egress-proxy", "", "HTTP CONNECT proxy (http://host:port) the dispatcher sends every delivery through, so receivers can allow-list its addresses; endpoints with spec.proxy use theirs, in-cluster Services are reached directly")
	fs.StringSliceVar(&c.EgressNoProxy, "dispatcher-egress-no-proxy", nil, "hosts the dispatcher reaches without --dispatcher-egress-proxy: names (and the names under them), IP addresses, CIDR ranges, or *")
	fs.StringVar(&c.EgressProxySecret, "dispatcher-egress-proxy-credentials-secret", "", "kubernetes.io/basic-auth Secret in the dispatcher's namespace (keys username, password) sent to --dispatcher-egress-proxy")
}

// Validate reports the first problem in a way that names the flag to fix, because the
// person reading it is editing chart values or a Deployment's args.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if msgs := validation.IsDNS1123Label(c.Namespace); len(msgs) > 0 {
		bad("--dispatcher-namespace %q: %s", c.Namespace, msgs[0])
	}
	// The name becomes a Service name, which is the strictest of the kinds involved.
	if msgs := validation.IsDNS1035Label(c.Name); len(msgs) > 0 {
		bad("--dispatcher-name %q: %s", c.Name, msgs[0])
	}
	if c.Image == "" {
		bad("--dispatcher-image must not be empty")
	}
	switch corev1.PullPolicy(c.ImagePullPolicy) {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		bad("--dispatcher-image-pull-policy must be Always, IfNotPresent or Never, not %q", c.ImagePullPolicy)
	}
	if h := c.History; h.RetainDeliveredMaxAge < 0 || h.RetainDeliveredMaxBytes < 0 || h.AttemptLogMaxAge < 0 || h.AttemptLogMaxBytes < 0 {
		bad("--dispatcher-retain-delivered-max-age/-bytes and --dispatcher-attempt-log-max-age/-bytes must be 0 (the dispatcher's default) or more")
	}
	if c.History.ReplayRate < 0 {
		bad("--dispatcher-replay-rate must be 0 (no bound) or more, not %g", c.History.ReplayRate)
	}
	if c.MaxPendingBytes < 0 || c.DeadLetterMaxBytes < 0 {
		bad("--dispatcher-max-pending-bytes and --dispatcher-dead-letter-max-bytes must be 0 (no cap but the servers' storage) or more")
	}
	switch c.Mode {
	case ModeEmbedded:
		if c.Replicas != 1 {
			bad("--dispatcher-replicas must be 1 in embedded mode (the embedded store lives in one pod), not %d; use --dispatcher-mode=external to scale out", c.Replicas)
		}
		if _, err := resource.ParseQuantity(c.StorageSize); err != nil || c.StorageSize == "" {
			bad("--dispatcher-storage-size %q is not a quantity such as 1Gi", c.StorageSize)
		}
	case ModeExternal:
		if c.Replicas < 1 {
			bad("--dispatcher-replicas must be at least 1, not %d", c.Replicas)
		}
		if c.NATSURL == "" {
			bad("--nats-url is required with --dispatcher-mode=external")
		}
		if c.NATSStreamReplicas < 0 || c.NATSStreamReplicas > 5 {
			bad("--nats-stream-replicas must be between 1 and 5, or 0 to let the dispatcher choose, not %d", c.NATSStreamReplicas)
		}
		if c.SyncAlways {
			bad("--dispatcher-sync-always applies to the embedded store; an external cluster's servers are configured with jetstream { sync_interval: always }")
		}
		if c.NATSCredentialsSecret != "" {
			if msgs := validation.IsDNS1123Subdomain(c.NATSCredentialsSecret); len(msgs) > 0 {
				bad("--nats-credentials-secret %q: %s", c.NATSCredentialsSecret, msgs[0])
			}
			if msgs := validation.IsConfigMapKey(c.NATSCredentialsKey); len(msgs) > 0 {
				bad("--nats-credentials-key %q: %s", c.NATSCredentialsKey, msgs[0])
			}
		}
	default:
		bad("--dispatcher-mode must be embedded or external, not %q", c.Mode)
	}
	for _, q := range []struct{ flag, value string }{
		{"--dispatcher-cpu-request", c.CPURequest},
		{"--dispatcher-memory-request", c.MemoryRequest},
		{"--dispatcher-cpu-limit", c.CPULimit},
		{"--dispatcher-memory-limit", c.MemoryLimit},
	} {
		if q.value == "" {
			continue
		}
		if _, err := resource.ParseQuantity(q.value); err != nil {
			bad("%s %q is not a quantity: %v", q.flag, q.value, err)
		}
	}
	if c.OTLPEndpoint != "" {
		if u, err := url.Parse(c.OTLPEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("--dispatcher-otlp-endpoint %q must be an http(s) URL such as http://otel-collector.observability:4318", c.OTLPEndpoint)
		}
	}
	if c.EgressProxy != "" {
		if x, err := outbound.ParseProxy(c.EgressProxy); err != nil {
			bad("--dispatcher-egress-proxy: %v", err)
		} else if x.Username != "" || x.Password != "" {
			bad("--dispatcher-egress-proxy must not carry credentials; name a Secret with --dispatcher-egress-proxy-credentials-secret")
		}
	}
	if err := outbound.CheckNoProxy(c.EgressNoProxy); err != nil {
		bad("--dispatcher-egress-no-proxy: %v", err)
	}
	if c.EgressProxySecret != "" {
		if c.EgressProxy == "" {
			bad("--dispatcher-egress-proxy-credentials-secret needs --dispatcher-egress-proxy")
		}
		if msgs := validation.IsDNS1123Subdomain(c.EgressProxySecret); len(msgs) > 0 {
			bad("--dispatcher-egress-proxy-credentials-secret %q: %s", c.EgressProxySecret, msgs[0])
		}
	}
	if c.MaxBodyBytes < 1 {
		bad("--dispatcher-max-body-bytes must be positive, not %d", c.MaxBodyBytes)
	}
	for _, s := range c.ImagePullSecrets {
		if msgs := validation.IsDNS1123Subdomain(s); len(msgs) > 0 {
			bad("--dispatcher-image-pull-secrets %q: %s", s, msgs[0])
		}
	}
	switch c.TLS {
	case TLSOff, TLSManager, TLSExternal:
	default:
		bad("--dispatcher-tls must be off, manager or external, not %q", c.TLS)
	}
	for _, ns := range c.WatchNamespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			bad("--watch-namespaces %q: %s", ns, msgs[0])
		}
	}
	if c.OwnerDeployment != "" {
		if msgs := validation.IsDNS1123Subdomain(c.OwnerDeployment); len(msgs) > 0 {
			bad("--dispatcher-owner-deployment %q: %s", c.OwnerDeployment, msgs[0])
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid dispatcher configuration: %w", err)
	}
	return nil
}

// resources returns the container resources; Validate has checked the quantities.
func (c Config) resources() (requests, limits corev1.ResourceList) {
	add := func(l corev1.ResourceList, name corev1.ResourceName, v string) corev1.ResourceList {
		if v == "" {
			return l
		}
		if l == nil {
			l = corev1.ResourceList{}
		}
		l[name] = resource.MustParse(v)
		return l
	}
	requests = add(add(nil, corev1.ResourceCPU, c.CPURequest), corev1.ResourceMemory, c.MemoryRequest)
	limits = add(add(nil, corev1.ResourceCPU, c.CPULimit), corev1.ResourceMemory, c.MemoryLimit)
	return requests, limits
}

// HistoryConfig bounds the dispatcher's delivery history, kept in its store.
type HistoryConfig struct {
	RetainDeliveredMaxAge   time.Duration
	RetainDeliveredMaxBytes int64
	WithoutAttemptLog       bool
	AttemptLogMaxAge        time.Duration
	AttemptLogMaxBytes      int64
	// ReplayRate bounds the re-sends per second of one replay (0: no bound).
	ReplayRate float64
}

// TLSSecretName is the Secret holding the dispatcher's serving certificate (tls.crt,
// tls.key) and its CA (ca.crt).
func (c Config) TLSSecretName() string { return c.Name + "-tls" }

// CASecretName is the Secret of the CA the manager makes (TLSManager).
func (c Config) CASecretName() string { return c.Name + "-ca" }

// CAConfigMapName is the ConfigMap publishing the CA (key CAConfigMapKey): what producers
// and the herald CLI trust the dispatcher with.
func (c Config) CAConfigMapName() string { return c.Name + "-ca" }

// CAConfigMapKey holds the PEM bundle of the dispatcher's CA (and, while a CA is
// replaced, the one before it).
const CAConfigMapKey = "ca.crt"

// ServingHosts are the names the serving certificate is for: the Service in every form
// a client in the cluster may use, and localhost for kubectl port-forward.
func (c Config) ServingHosts() []string {
	svc := c.Name + "." + c.Namespace
	return []string{svc + ".svc", svc + ".svc.cluster.local", svc, c.Name, "localhost", "127.0.0.1", "::1"}
}
