package workload

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/pkg/wire"
)

// Labels and annotations on the dispatcher objects.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	LabelPartOf    = "app.kubernetes.io/part-of"
	ComponentValue = "dispatcher"

	// AnnotationConfigChecksum on the pod template is the sha256 of the rendered
	// dispatcher.yaml: a configuration change changes the template, which rolls the pods.
	AnnotationConfigChecksum = "hooks.herald.dev/config-checksum"
)

// Paths and ports inside the dispatcher pod. The Service exposes ingest and metrics;
// health stays pod-local for the kubelet.
const (
	ConfigFileName   = "dispatcher.yaml"
	configDir        = "/etc/herald"
	dataDir          = "/var/lib/herald"
	natsCredsDir     = "/etc/herald/nats"
	tlsDir           = "/etc/herald/tls"
	tlsVolume        = "tls"
	natsCredsFile    = "nats.creds"
	IngestPort       = wire.Port
	MetricsPort      = 9090
	HealthPort       = 8081
	nonRootUID       = 65532
	containerName    = "dispatcher"
	dataVolume       = "data"
	configVolume     = "config"
	tmpVolume        = "tmp"
	natsCredsVolume  = "nats-credentials"
	portNameIngest   = "http"
	portNameMetrics  = "metrics"
	portNameHealth   = "health"
	storageTemplate  = dataVolume
	defaultTermGrace = 30
)

// Rendered is the dispatcher's configuration the manager writes into dispatcher.yaml
// (the dispatcher reads it with --config): c.Dispatcher, with what the manager decides
// from the pod it builds (addresses, the store's directory, the NATS credentials file,
// the TLS files). The manager passes nothing else on the command line (a flag would win
// over the file), so the ConfigMap is the one place the dispatcher's configuration
// lives, and its checksum rolls the pods.
func (c Config) Rendered() config.Dispatcher {
	d := c.Dispatcher
	d.Serving.IngestBindAddress = fmt.Sprintf(":%d", IngestPort)
	d.Serving.MetricsBindAddress = fmt.Sprintf(":%d", MetricsPort)
	d.Serving.HealthProbeBindAddress = fmt.Sprintf(":%d", HealthPort)
	d.Serving.TLS = config.TLSFiles{}
	if c.TLS == TLSManager || c.TLS == TLSExternal {
		d.Serving.TLS = config.TLSFiles{CertFile: tlsDir + "/" + corev1.TLSCertKey, KeyFile: tlsDir + "/" + corev1.TLSPrivateKeyKey}
	}
	d.Store.CredentialsFile = ""
	switch c.Mode {
	case ModeEmbedded:
		// One server: its streams have one copy, whatever was asked for the cluster.
		d.Store.URL, d.Store.DataDir, d.Store.Replicas = "", dataDir, 0
	case ModeExternal:
		d.Store.DataDir = ""
		if c.NATSCredentialsSecret != "" {
			d.Store.CredentialsFile = natsCredsDir + "/" + natsCredsFile
		}
	}
	return d
}

// render returns dispatcher.yaml and its checksum; config.Render writes equal
// configurations as equal bytes.
func render(d config.Dispatcher) (string, string, error) {
	b, err := config.Render(d)
	if err != nil {
		return "", "", fmt.Errorf("rendering %s: %w", ConfigFileName, err)
	}
	sum := sha256.Sum256(b)
	return string(b), hex.EncodeToString(sum[:]), nil
}

// selectorLabels are immutable once a StatefulSet or Deployment exists: keep them to the
// identity of the dispatcher, never a version or a mode.
func (c Config) selectorLabels() map[string]string {
	return map[string]string{
		LabelName:      "herald",
		LabelComponent: ComponentValue,
		LabelInstance:  c.Name,
	}
}

func (c Config) labels() map[string]string {
	l := c.selectorLabels()
	l[LabelPartOf] = "herald"
	l[heraldv1.LabelManagedBy] = heraldv1.LabelManagedByValue
	return l
}

func (c Config) meta(owner *metav1ac.OwnerReferenceApplyConfiguration) *metav1ac.ObjectMetaApplyConfiguration {
	m := metav1ac.ObjectMeta().WithName(c.Name).WithNamespace(c.Namespace).WithLabels(c.labels())
	if owner != nil {
		m.WithOwnerReferences(owner)
	}
	return m
}

func (c Config) serviceAccount(owner *metav1ac.OwnerReferenceApplyConfiguration) *corev1ac.ServiceAccountApplyConfiguration {
	sa := corev1ac.ServiceAccount(c.Name, c.Namespace)
	sa.ObjectMetaApplyConfiguration = c.meta(owner)
	return sa
}

func (c Config) configMap(owner *metav1ac.OwnerReferenceApplyConfiguration, rendered string) *corev1ac.ConfigMapApplyConfiguration {
	cm := corev1ac.ConfigMap(c.Name, c.Namespace)
	cm.ObjectMetaApplyConfiguration = c.meta(owner)
	return cm.WithData(map[string]string{ConfigFileName: rendered})
}

func (c Config) service(owner *metav1ac.OwnerReferenceApplyConfiguration) *corev1ac.ServiceApplyConfiguration {
	svc := corev1ac.Service(c.Name, c.Namespace)
	svc.ObjectMetaApplyConfiguration = c.meta(owner)
	return svc.WithSpec(corev1ac.ServiceSpec().
		WithType(corev1.ServiceTypeClusterIP).
		WithSelector(c.selectorLabels()).
		WithPorts(
			corev1ac.ServicePort().WithName(portNameIngest).WithProtocol(corev1.ProtocolTCP).
				WithPort(IngestPort).WithTargetPort(intstr.FromString(portNameIngest)),
			corev1ac.ServicePort().WithName(portNameMetrics).WithProtocol(corev1.ProtocolTCP).
				WithPort(MetricsPort).WithTargetPort(intstr.FromString(portNameMetrics)),
		))
}

// args stay minimal: everything else is in dispatcher.yaml (see Settings).
func (c Config) args() []string {
	return []string{"dispatcher", "--config=" + configDir + "/" + ConfigFileName}
}

func (c Config) podTemplate(checksum string) *corev1ac.PodTemplateSpecApplyConfiguration {
	requests, limits := c.resources()
	res := corev1ac.ResourceRequirements()
	if requests != nil {
		res.WithRequests(requests)
	}
	if limits != nil {
		res.WithLimits(limits)
	}

	env := []*corev1ac.EnvVarApplyConfiguration{
		corev1ac.EnvVar().WithName("POD_NAMESPACE").WithValueFrom(corev1ac.EnvVarSource().
			WithFieldRef(corev1ac.ObjectFieldSelector().WithAPIVersion("v1").WithFieldPath("metadata.namespace"))),
		corev1ac.EnvVar().WithName("POD_NAME").WithValueFrom(corev1ac.EnvVarSource().
			WithFieldRef(corev1ac.ObjectFieldSelector().WithAPIVersion("v1").WithFieldPath("metadata.name"))),
	}
	if c.EgressProxySecret != "" {
		// In the environment, from the Secret: in no file, ConfigMap or command line.
		env = append(env,
			corev1ac.EnvVar().WithName(config.EnvProxyUsername).WithValueFrom(corev1ac.EnvVarSource().WithSecretKeyRef(
				corev1ac.SecretKeySelector().WithName(c.EgressProxySecret).WithKey(corev1.BasicAuthUsernameKey))),
			corev1ac.EnvVar().WithName(config.EnvProxyPassword).WithValueFrom(corev1ac.EnvVarSource().WithSecretKeyRef(
				corev1ac.SecretKeySelector().WithName(c.EgressProxySecret).WithKey(corev1.BasicAuthPasswordKey))))
	}
	if c.MemoryLimit != "" {
		// The Go runtime collects harder before the kernel OOM-kills the pod.
		env = append(env, corev1ac.EnvVar().WithName("GOMEMLIMIT").WithValueFrom(corev1ac.EnvVarSource().
			WithResourceFieldRef(corev1ac.ResourceFieldSelector().WithContainerName(containerName).
				WithResource("limits.memory").WithDivisor(resource.MustParse("1")))))
	}

	mounts := []*corev1ac.VolumeMountApplyConfiguration{
		corev1ac.VolumeMount().WithName(configVolume).WithMountPath(configDir).WithReadOnly(true),
		// readOnlyRootFilesystem: give the process a scratch directory of its own.
		corev1ac.VolumeMount().WithName(tmpVolume).WithMountPath("/tmp"),
	}
	volumes := []*corev1ac.VolumeApplyConfiguration{
		corev1ac.Volume().WithName(configVolume).WithConfigMap(corev1ac.ConfigMapVolumeSource().WithName(c.Name).WithDefaultMode(0o644)),
		corev1ac.Volume().WithName(tmpVolume).WithEmptyDir(corev1ac.EmptyDirVolumeSource().WithSizeLimit(resource.MustParse("64Mi"))),
	}
	if c.TLS == TLSManager || c.TLS == TLSExternal {
		// The whole Secret, not subPaths: the kubelet then swaps renewed files in, and
		// the dispatcher serves them without a restart.
		mounts = append(mounts, corev1ac.VolumeMount().WithName(tlsVolume).WithMountPath(tlsDir).WithReadOnly(true))
		volumes = append(volumes, corev1ac.Volume().WithName(tlsVolume).WithSecret(corev1ac.SecretVolumeSource().
			WithSecretName(c.TLSSecretName()).
			WithItems(corev1ac.KeyToPath().WithKey(corev1.TLSCertKey).WithPath(corev1.TLSCertKey),
				corev1ac.KeyToPath().WithKey(corev1.TLSPrivateKeyKey).WithPath(corev1.TLSPrivateKeyKey)).
			WithDefaultMode(0o440)))
	}
	switch c.Mode {
	case ModeEmbedded:
		// The volume itself comes from the StatefulSet's volumeClaimTemplate.
		mounts = append(mounts, corev1ac.VolumeMount().WithName(dataVolume).WithMountPath(dataDir))
	case ModeExternal:
		if c.NATSCredentialsSecret != "" {
			mounts = append(mounts, corev1ac.VolumeMount().WithName(natsCredsVolume).WithMountPath(natsCredsDir).WithReadOnly(true))
			volumes = append(volumes, corev1ac.Volume().WithName(natsCredsVolume).WithSecret(corev1ac.SecretVolumeSource().
				WithSecretName(c.NATSCredentialsSecret).
				WithItems(corev1ac.KeyToPath().WithKey(c.NATSCredentialsKey).WithPath(natsCredsFile)).
				WithDefaultMode(0o440)))
		}
	}

	probe := func(path string) *corev1ac.ProbeApplyConfiguration {
		return corev1ac.Probe().WithHTTPGet(corev1ac.HTTPGetAction().WithPath(path).WithPort(intstr.FromString(portNameHealth)).WithScheme(corev1.URISchemeHTTP))
	}
	container := corev1ac.Container().
		WithName(containerName).
		WithImage(c.Image).
		WithImagePullPolicy(corev1.PullPolicy(c.ImagePullPolicy)).
		WithArgs(c.args()...).
		WithEnv(env...).
		WithPorts(
			corev1ac.ContainerPort().WithName(portNameIngest).WithContainerPort(IngestPort).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName(portNameMetrics).WithContainerPort(MetricsPort).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName(portNameHealth).WithContainerPort(HealthPort).WithProtocol(corev1.ProtocolTCP),
		).
		WithResources(res).
		WithVolumeMounts(mounts...).
		// Recovering a large embedded store after a crash can take a while; the startup
		// probe keeps the liveness probe from killing a pod that is still replaying.
		WithStartupProbe(probe("/healthz").WithPeriodSeconds(2).WithFailureThreshold(60)).
		WithLivenessProbe(probe("/healthz").WithPeriodSeconds(10).WithFailureThreshold(3)).
		WithReadinessProbe(probe("/readyz").WithPeriodSeconds(5).WithFailureThreshold(2)).
		WithSecurityContext(corev1ac.SecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(nonRootUID).
			WithRunAsGroup(nonRootUID).
			WithReadOnlyRootFilesystem(true).
			WithAllowPrivilegeEscalation(false).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault)))

	spec := corev1ac.PodSpec().
		WithServiceAccountName(c.Name).
		WithTerminationGracePeriodSeconds(defaultTermGrace).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(nonRootUID).
			WithRunAsGroup(nonRootUID).
			// fsGroup makes the embedded store's volume writable by the non-root user.
			WithFSGroup(nonRootUID).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithContainers(container).
		WithVolumes(volumes...)
	for _, s := range c.ImagePullSecrets {
		spec.WithImagePullSecrets(corev1ac.LocalObjectReference().WithName(s))
	}

	return corev1ac.PodTemplateSpec().
		WithLabels(c.labels()).
		WithAnnotations(map[string]string{AnnotationConfigChecksum: checksum}).
		WithSpec(spec)
}

func (c Config) statefulSet(owner *metav1ac.OwnerReferenceApplyConfiguration, checksum string) *appsv1ac.StatefulSetApplyConfiguration {
	pvc := corev1ac.PersistentVolumeClaimSpec().
		WithAccessModes(corev1.ReadWriteOnce).
		WithResources(corev1ac.VolumeResourceRequirements().
			WithRequests(corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(c.StorageSize)}))
	if c.StorageClass != "" {
		pvc.WithStorageClassName(c.StorageClass)
	}
	sts := appsv1ac.StatefulSet(c.Name, c.Namespace)
	sts.ObjectMetaApplyConfiguration = c.meta(owner)
	return sts.WithSpec(appsv1ac.StatefulSetSpec().
		WithReplicas(1).
		WithServiceName(c.Name).
		WithSelector(metav1ac.LabelSelector().WithMatchLabels(c.selectorLabels())).
		WithTemplate(c.podTemplate(checksum)).
		// Built by hand: the constructor would add a namespace and type meta that have
		// no meaning inside a template.
		WithVolumeClaimTemplates((&corev1ac.PersistentVolumeClaimApplyConfiguration{}).
			WithName(storageTemplate).
			WithLabels(c.selectorLabels()).
			WithSpec(pvc)).
		// The volume holds accepted-but-undelivered events: never delete it implicitly.
		WithPersistentVolumeClaimRetentionPolicy(appsv1ac.StatefulSetPersistentVolumeClaimRetentionPolicy().
			WithWhenDeleted(appsv1.RetainPersistentVolumeClaimRetentionPolicyType).
			WithWhenScaled(appsv1.RetainPersistentVolumeClaimRetentionPolicyType)))
}

func (c Config) deployment(owner *metav1ac.OwnerReferenceApplyConfiguration, checksum string) *appsv1ac.DeploymentApplyConfiguration {
	d := appsv1ac.Deployment(c.Name, c.Namespace)
	d.ObjectMetaApplyConfiguration = c.meta(owner)
	return d.WithSpec(appsv1ac.DeploymentSpec().
		WithReplicas(c.Replicas).
		WithSelector(metav1ac.LabelSelector().WithMatchLabels(c.selectorLabels())).
		WithTemplate(c.podTemplate(checksum)))
}
