package workload

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/internal/version"
	"github.com/herald-dev/herald/pkg/wire"
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
	DefaultName               = wire.DefaultService
	DefaultImageRepository    = "ghcr.io/herald-dev/herald"
	DefaultStorageSize        = "1Gi"
	DefaultNATSCredentialsKey = "nats.creds"
	DefaultCPURequest         = "100m"
	DefaultMemoryRequest      = "128Mi"
	DefaultMemoryLimit        = "512Mi"
)

// Config is the dispatcher workload the manager maintains, from the manager's flags. The
// Helm chart and config/manager set these flags; the manager itself never guesses.
// Dispatcher is the dispatcher's own configuration, which the manager renders into the
// dispatcher's ConfigMap; the rest is the workload around it.
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

	// NATSCredentialsSecret names a Secret in Namespace whose NATSCredentialsKey holds a
	// NATS .creds file; optional (external mode).
	NATSCredentialsSecret string
	NATSCredentialsKey    string

	// Resource requests and limits of the dispatcher container; "" leaves one unset.
	CPURequest    string
	MemoryRequest string
	CPULimit      string
	MemoryLimit   string

	// TLS serves the dispatcher's API over TLS (see TLSMode). Either way the CA is
	// published in the ConfigMap <name>-ca (key ca.crt) for producers and the CLI.
	TLS TLSMode

	// Dispatcher is the dispatcher's configuration (package config), bound to the
	// manager's --dispatcher-<flag> flags; its store.url is the manager's --nats-url
	// (required in external mode), and its watchNamespaces and outbound policy are the
	// manager's own --watch-namespaces and --allow-* flags, so that the manager's URL
	// checks and the dispatcher's dial-time checks can never disagree, nor what each
	// serves. Rendered (Rendered) with what the manager decides from the pod it builds.
	Dispatcher config.Dispatcher

	// EgressProxySecret names a kubernetes.io/basic-auth Secret in Namespace whose
	// username and password the dispatcher sends to its egress proxy
	// (Dispatcher.Egress.Proxy); the pod gets them in its environment, so they are in no
	// file, ConfigMap or command line. Optional.
	EgressProxySecret string
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
		TLS:                TLSOff,
		Dispatcher:         config.Default(),
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
	// What no flag sets (the dispatcher's own settings the manager decides) starts from
	// the defaults too.
	*c = d
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
	fs.StringVar(&c.Dispatcher.Store.URL, "nats-url", "", "URL of the external NATS cluster (external mode)")
	fs.StringVar(&c.NATSCredentialsSecret, "nats-credentials-secret", "", "Secret holding the NATS credentials file (external mode, optional)")
	fs.StringVar(&c.NATSCredentialsKey, "nats-credentials-key", d.NATSCredentialsKey, "key of the credentials file in --nats-credentials-secret")
	fs.StringVar(&c.CPURequest, "dispatcher-cpu-request", d.CPURequest, "CPU request of the dispatcher; empty for none")
	fs.StringVar(&c.MemoryRequest, "dispatcher-memory-request", d.MemoryRequest, "memory request of the dispatcher; empty for none")
	fs.StringVar(&c.CPULimit, "dispatcher-cpu-limit", "", "CPU limit of the dispatcher; empty for none")
	fs.StringVar(&c.MemoryLimit, "dispatcher-memory-limit", d.MemoryLimit, "memory limit of the dispatcher (also its GOMEMLIMIT); empty for none")
	fs.StringVar((*string)(&c.TLS), "dispatcher-tls", string(d.TLS), "serve the dispatcher's ingest and endpoint API over TLS: off; manager (the manager makes and renews a CA and the certificate); external (cert-manager fills the Secret <dispatcher-name>-tls). The CA is published in the ConfigMap <dispatcher-name>-ca")
	// Every other setting of the dispatcher, as --dispatcher-<its flag>.
	config.BindManagerFlags(fs, &c.Dispatcher)
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
		if c.Dispatcher.Store.URL == "" {
			bad("--nats-url is required with --dispatcher-mode=external")
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
	if c.EgressProxySecret != "" {
		if c.Dispatcher.Egress.Proxy == "" {
			bad("--dispatcher-egress-proxy-credentials-secret needs --dispatcher-egress-proxy")
		}
		if msgs := validation.IsDNS1123Subdomain(c.EgressProxySecret); len(msgs) > 0 {
			bad("--dispatcher-egress-proxy-credentials-secret %q: %s", c.EgressProxySecret, msgs[0])
		}
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
	if c.OwnerDeployment != "" {
		if msgs := validation.IsDNS1123Subdomain(c.OwnerDeployment); len(msgs) > 0 {
			bad("--dispatcher-owner-deployment %q: %s", c.OwnerDeployment, msgs[0])
		}
	}
	// The dispatcher's own judge, on what the manager would render (the keys it names
	// are the chart's values under dispatcher.*, and the manager's --dispatcher-<flag>).
	if err := c.Rendered().Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid dispatcher workload: %w", err)
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
