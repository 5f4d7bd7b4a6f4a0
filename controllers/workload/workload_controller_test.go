package workload_test

import (
	"os"
	"path/filepath"
	"reflect"
	"time"

	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/spf13/pflag"

	"github.com/herald-dev/herald/cmd/dispatcher"
	"github.com/herald-dev/herald/cmd/manager"
	"github.com/herald-dev/herald/controllers/workload"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/internal/testenv"
)

func embeddedConfig(ns string) workload.Config {
	c := workload.DefaultConfig()
	c.Namespace = ns
	c.Image = "registry.example/herald:1.2.3"
	c.StorageClass = "fast"
	return c
}

func key(c workload.Config) types.NamespacedName {
	return types.NamespacedName{Namespace: c.Namespace, Name: c.Name}
}

func getStatefulSet(t *testing.T, c workload.Config) *appsv1.StatefulSet {
	t.Helper()
	var sts appsv1.StatefulSet
	eventually(t, "StatefulSet exists", func() error { return k8s.Get(context.Background(), key(c), &sts) })
	return &sts
}

func TestEmbeddedMode_CreatesStatefulSetWithVolumeServiceAccountConfigMapAndService(t *testing.T) {
	ctx := context.Background()
	cfg := embeddedConfig(newNamespace(t))
	cfg.OwnerDeployment = "herald-manager"
	owner := createOwnerDeployment(t, cfg.Namespace, cfg.OwnerDeployment)
	startManager(t, cfg)

	sts := getStatefulSet(t, cfg)
	if got := *sts.Spec.Replicas; got != 1 {
		t.Errorf("replicas = %d, want 1", got)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("volumeClaimTemplates = %d, want 1", len(sts.Spec.VolumeClaimTemplates))
	}
	vct := sts.Spec.VolumeClaimTemplates[0]
	if got := vct.Spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("volume size = %s, want 1Gi", got.String())
	}
	if vct.Spec.StorageClassName == nil || *vct.Spec.StorageClassName != "fast" {
		t.Errorf("storageClassName = %v, want fast", vct.Spec.StorageClassName)
	}
	if sts.Spec.PersistentVolumeClaimRetentionPolicy == nil || sts.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Errorf("PVC retention = %+v, want Retain on delete: the volume holds undelivered events", sts.Spec.PersistentVolumeClaimRetentionPolicy)
	}

	pod := sts.Spec.Template.Spec
	if pod.ServiceAccountName != cfg.Name {
		t.Errorf("serviceAccountName = %q, want %q", pod.ServiceAccountName, cfg.Name)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("containers = %d, want 1", len(pod.Containers))
	}
	ctr := pod.Containers[0]
	if ctr.Image != cfg.Image {
		t.Errorf("image = %q, want %q", ctr.Image, cfg.Image)
	}
	assertRestricted(t, pod.SecurityContext, ctr.SecurityContext)
	assertMount(t, ctr, "data", "/var/lib/herald", false)
	assertMount(t, ctr, "config", "/etc/herald", true)
	// Everything but --config lives in the ConfigMap: a command-line flag would win over
	// the file and make the checksummed configuration decorative.
	if want := []string{"dispatcher", "--config=/etc/herald/dispatcher.yaml"}; !slices.Equal(ctr.Args, want) {
		t.Errorf("args = %v, want %v", ctr.Args, want)
	}
	if ctr.LivenessProbe == nil || ctr.LivenessProbe.HTTPGet == nil || ctr.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness probe = %+v, want GET /healthz", ctr.LivenessProbe)
	}
	if ctr.ReadinessProbe == nil || ctr.ReadinessProbe.HTTPGet == nil || ctr.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe = %+v, want GET /readyz", ctr.ReadinessProbe)
	}
	if got := ctr.Resources.Requests[corev1.ResourceMemory]; got.Cmp(resource.MustParse("128Mi")) != 0 {
		t.Errorf("memory request = %s, want 128Mi", got.String())
	}
	if got := ctr.Resources.Limits[corev1.ResourceMemory]; got.Cmp(resource.MustParse("512Mi")) != 0 {
		t.Errorf("memory limit = %s, want 512Mi", got.String())
	}

	var sa corev1.ServiceAccount
	eventually(t, "ServiceAccount exists", func() error { return k8s.Get(ctx, key(cfg), &sa) })
	assertPodAdmitted(t, cfg.Namespace, sts.Spec.Template)

	var cm corev1.ConfigMap
	eventually(t, "ConfigMap exists", func() error { return k8s.Get(ctx, key(cfg), &cm) })
	data := cm.Data[workload.ConfigFileName]
	settings := dispatcherReads(t, data)
	if settings.Store.DataDir != "/var/lib/herald" || settings.Store.URL != "" || settings.Outbound.AllowPlainHTTP || settings.Serving.IngestBindAddress != ":8080" {
		t.Errorf("dispatcher.yaml = %+v, want the embedded store at /var/lib/herald, ingest on :8080, the strict outbound policy", settings)
	}
	sum := sha256.Sum256([]byte(data))
	if got, want := sts.Spec.Template.Annotations[workload.AnnotationConfigChecksum], hex.EncodeToString(sum[:]); got != want {
		t.Errorf("config checksum annotation = %q, want sha256 of dispatcher.yaml %q", got, want)
	}

	var svc corev1.Service
	eventually(t, "Service exists", func() error { return k8s.Get(ctx, key(cfg), &svc) })
	ports := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = p.Port
	}
	if ports["http"] != 8080 || ports["metrics"] != 9090 || len(ports) != 2 {
		t.Errorf("Service ports = %v, want http 8080 and metrics 9090", ports)
	}
	for k, v := range sts.Spec.Selector.MatchLabels {
		if svc.Spec.Selector[k] != v {
			t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, sts.Spec.Selector.MatchLabels)
		}
	}

	for _, obj := range []client.Object{sts, &cm, &svc, &sa} {
		refs := obj.GetOwnerReferences()
		if len(refs) != 1 || refs[0].UID != owner.UID || refs[0].Kind != "Deployment" {
			t.Errorf("%T ownerReferences = %+v, want the manager Deployment (uid %s) so uninstalling it cleans up", obj, refs, owner.UID)
		}
		if !managedBy(obj, workload.FieldManager) {
			t.Errorf("%T is not applied by field manager %q", obj, workload.FieldManager)
		}
	}
	var deploy appsv1.Deployment
	if err := k8s.Get(ctx, key(cfg), &deploy); !apierrors.IsNotFound(err) {
		t.Errorf("embedded mode created a Deployment too (err=%v)", err)
	}
}

func TestConfigChange_ChangesChecksumSoPodsRoll(t *testing.T) {
	ctx := context.Background()
	cfg := embeddedConfig(newNamespace(t))
	stop := startManager(t, cfg)
	before := getStatefulSet(t, cfg).Spec.Template.Annotations[workload.AnnotationConfigChecksum]
	if before == "" {
		t.Fatal("no config checksum annotation on the pod template")
	}
	stop()

	cfg.Dispatcher.Outbound.AllowPlainHTTP = true
	startManager(t, cfg)
	eventually(t, "checksum changes after the policy change", func() error {
		var sts appsv1.StatefulSet
		if err := k8s.Get(ctx, key(cfg), &sts); err != nil {
			return err
		}
		after := sts.Spec.Template.Annotations[workload.AnnotationConfigChecksum]
		if after == before {
			return fmt.Errorf("checksum still %s", before)
		}
		var cm corev1.ConfigMap
		if err := k8s.Get(ctx, key(cfg), &cm); err != nil {
			return err
		}
		sum := sha256.Sum256([]byte(cm.Data[workload.ConfigFileName]))
		if hex.EncodeToString(sum[:]) != after {
			return fmt.Errorf("checksum %s is not the ConfigMap's content", after)
		}
		if !dispatcherReads(t, cm.Data[workload.ConfigFileName]).Outbound.AllowPlainHTTP {
			return fmt.Errorf("dispatcher.yaml does not allow plain http:\n%s", cm.Data[workload.ConfigFileName])
		}
		return nil
	})
}

func TestManualDrift_IsReverted(t *testing.T) {
	ctx := context.Background()
	cfg := embeddedConfig(newNamespace(t))
	startManager(t, cfg)
	sts := getStatefulSet(t, cfg)

	// What `kubectl scale` and `kubectl set image` do: an update by another field manager.
	sts.Spec.Replicas = ptr.To[int32](3)
	sts.Spec.Template.Spec.Containers[0].Image = "attacker.example/herald:evil"
	if err := k8s.Update(ctx, sts, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatalf("editing the StatefulSet: %v", err)
	}
	eventually(t, "replicas and image reverted", func() error {
		var got appsv1.StatefulSet
		if err := k8s.Get(ctx, key(cfg), &got); err != nil {
			return err
		}
		if *got.Spec.Replicas != 1 || got.Spec.Template.Spec.Containers[0].Image != cfg.Image {
			return fmt.Errorf("replicas=%d image=%s", *got.Spec.Replicas, got.Spec.Template.Spec.Containers[0].Image)
		}
		return nil
	})

	var cm corev1.ConfigMap
	if err := k8s.Get(ctx, key(cfg), &cm); err != nil {
		t.Fatal(err)
	}
	want := cm.Data[workload.ConfigFileName]
	cm.Data[workload.ConfigFileName] = "outbound: {allowPrivateNetworks: true}\n"
	if err := k8s.Update(ctx, &cm, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatalf("editing the ConfigMap: %v", err)
	}
	eventually(t, "ConfigMap reverted", func() error {
		var got corev1.ConfigMap
		if err := k8s.Get(ctx, key(cfg), &got); err != nil {
			return err
		}
		if got.Data[workload.ConfigFileName] != want {
			return fmt.Errorf("dispatcher.yaml = %q", got.Data[workload.ConfigFileName])
		}
		return nil
	})

	var svc corev1.Service
	if err := k8s.Get(ctx, key(cfg), &svc); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, &svc); err != nil {
		t.Fatalf("deleting the Service: %v", err)
	}
	eventually(t, "Service recreated", func() error {
		var got corev1.Service
		if err := k8s.Get(ctx, key(cfg), &got); err != nil {
			return err
		}
		if got.UID == svc.UID {
			return fmt.Errorf("still the deleted Service")
		}
		return nil
	})
}

func TestStorageSizeChange_RecreatesStatefulSet(t *testing.T) {
	ctx := context.Background()
	cfg := embeddedConfig(newNamespace(t))
	stop := startManager(t, cfg)
	before := getStatefulSet(t, cfg)
	stop()

	// volumeClaimTemplates are immutable: an apply alone would be refused forever.
	cfg.StorageSize = "5Gi"
	startManager(t, cfg)
	eventually(t, "StatefulSet recreated with 5Gi", func() error {
		var got appsv1.StatefulSet
		if err := k8s.Get(ctx, key(cfg), &got); err != nil {
			return err
		}
		if got.UID == before.UID {
			return fmt.Errorf("still the old StatefulSet")
		}
		size := got.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]
		if size.Cmp(resource.MustParse("5Gi")) != 0 {
			return fmt.Errorf("volume size %s", size.String())
		}
		return nil
	})
}

func TestSwitchToExternalMode_CreatesDeploymentAndDeletesStatefulSet(t *testing.T) {
	ctx := context.Background()
	cfg := embeddedConfig(newNamespace(t))
	stop := startManager(t, cfg)
	getStatefulSet(t, cfg)
	stop()

	cfg.Mode = workload.ModeExternal
	cfg.Replicas = 3
	cfg.Dispatcher.Store.URL = "nats://nats.nats:4222"
	cfg.NATSCredentialsSecret = "nats-creds"
	startManager(t, cfg)

	var d appsv1.Deployment
	eventually(t, "Deployment exists", func() error { return k8s.Get(ctx, key(cfg), &d) })
	if *d.Spec.Replicas != 3 {
		t.Errorf("replicas = %d, want 3", *d.Spec.Replicas)
	}
	ctr := d.Spec.Template.Spec.Containers[0]
	assertRestricted(t, d.Spec.Template.Spec.SecurityContext, ctr.SecurityContext)
	assertPodAdmitted(t, cfg.Namespace, d.Spec.Template)
	assertMount(t, ctr, "nats-credentials", "/etc/herald/nats", true)
	var secretVolume *corev1.SecretVolumeSource
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secretVolume = v.Secret
		}
	}
	if secretVolume == nil || secretVolume.SecretName != "nats-creds" || len(secretVolume.Items) != 1 || secretVolume.Items[0].Key != "nats.creds" {
		t.Errorf("credentials volume = %+v, want Secret nats-creds key nats.creds", secretVolume)
	}

	eventually(t, "StatefulSet deleted", func() error {
		var sts appsv1.StatefulSet
		err := k8s.Get(ctx, key(cfg), &sts)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("StatefulSet still present (err=%v)", err)
	})
	var cm corev1.ConfigMap
	if err := k8s.Get(ctx, key(cfg), &cm); err != nil {
		t.Fatal(err)
	}
	settings := dispatcherReads(t, cm.Data[workload.ConfigFileName])
	if settings.Store.URL != "nats://nats.nats:4222" || settings.Store.CredentialsFile != "/etc/herald/nats/nats.creds" || settings.Store.DataDir != "" {
		t.Errorf("dispatcher.yaml = %+v, want the external NATS URL and the mounted credentials, no data dir", settings)
	}
	if d.Spec.Template.Annotations[workload.AnnotationConfigChecksum] == "" {
		t.Error("Deployment pod template has no config checksum")
	}
}

func TestConfigValidate_NamesTheFlagToFix(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*workload.Config)
		want   string // substring of the error; "" means valid
	}{
		{"defaults are valid, so a bare `herald manager` starts", func(*workload.Config) {}, ""},
		{"a typo in the mode must not silently pick one", func(c *workload.Config) { c.Mode = "bogus" }, `--dispatcher-mode must be embedded or external, not "bogus"`},
		{"external mode has nowhere to connect without a URL", func(c *workload.Config) { c.Mode = workload.ModeExternal }, "--nats-url is required"},
		{"the embedded store cannot be shared by replicas", func(c *workload.Config) { c.Replicas = 2 }, "--dispatcher-replicas must be 1 in embedded mode"},
		{"a bad quantity would only fail later at apply time", func(c *workload.Config) { c.MemoryLimit = "lots" }, "--dispatcher-memory-limit"},
		{"the name becomes a Service name", func(c *workload.Config) { c.Name = "Herald_Dispatcher" }, "--dispatcher-name"},
		{"an OTLP endpoint the exporter could not reach is refused here, not in the pod", func(c *workload.Config) { c.Dispatcher.Tracing.OTLPEndpoint = "otel-collector:4318" },
			`tracing.otlpEndpoint: "otel-collector:4318" must be an http(s) URL`},
		{"fsync every write is the embedded store's; external servers set their sync_interval", func(c *workload.Config) {
			c.Mode, c.Dispatcher.Store.URL, c.Dispatcher.Store.SyncAlways = workload.ModeExternal, "nats://nats:4222", true
		}, "store.syncAlways: applies to the embedded store; an external cluster's servers are configured with jetstream { sync_interval: always }"},
		{"a negative bound of the history means nothing", func(c *workload.Config) { c.Dispatcher.History.AttemptLogMaxBytes = -1 },
			"history.attemptLogMaxBytes: must be 0 or more"},
		{"a namespace name the API server would refuse", func(c *workload.Config) { c.Dispatcher.WatchNamespaces = []string{"Shop"} }, `watchNamespaces: "Shop"`},
		{"external mode with credentials is valid", func(c *workload.Config) {
			c.Mode, c.Replicas, c.Dispatcher.Store.URL, c.NATSCredentialsSecret = workload.ModeExternal, 3, "nats://nats:4222", "creds"
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := workload.DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// Every setting the manager passes on reaches the dispatcher as it reads
// dispatcher.yaml: the manager's flags (derived from the dispatcher's, and their names
// before that) → workload.Config → the rendered file → the dispatcher's --config loader.
// Left unset, the dispatcher's own defaults hold.
func TestRendered_TheManagersFlagsReachTheDispatcher(t *testing.T) {
	tests := []struct {
		args  []string
		check func(c config.Dispatcher) bool
	}{
		{[]string{"--dispatcher-otlp-endpoint=http://otel-collector.observability:4318"}, func(c config.Dispatcher) bool {
			return c.Tracing.OTLPEndpoint == "http://otel-collector.observability:4318"
		}},
		{[]string{"--dispatcher-accept-api-server-audience", "--watch-namespaces=shop,billing"}, func(c config.Dispatcher) bool {
			return c.Auth.AcceptAPIServerAudience && reflect.DeepEqual(c.WatchNamespaces, []string{"shop", "billing"})
		}},
		{[]string{"--dispatcher-mode=external", "--dispatcher-replicas=3", "--nats-url=nats://nats.nats:4222",
			"--dispatcher-max-pending-bytes=8589934592", "--dispatcher-dead-letter-max-bytes=1073741824"}, func(c config.Dispatcher) bool {
			// The dispatcher chooses the copies (3 on a cluster) unless told.
			return c.Store.URL == "nats://nats.nats:4222" && c.Store.Replicas == 0 && c.Store.MaxPendingBytes == 8<<30 && c.Store.DeadLetterMaxBytes == 1<<30
		}},
		{[]string{"--dispatcher-mode=external", "--nats-url=nats://nats:4222", "--nats-stream-replicas=3"}, func(c config.Dispatcher) bool {
			return c.Store.Replicas == 3
		}},
		{[]string{"--dispatcher-sync-always"}, func(c config.Dispatcher) bool { return c.Store.SyncAlways }},
		{[]string{"--dispatcher-retain-delivered-max-age=24h", "--dispatcher-retain-delivered-max-bytes=1048576", "--dispatcher-attempt-log=false",
			"--dispatcher-attempt-log-max-age=36h", "--dispatcher-attempt-log-max-bytes=2097152", "--dispatcher-replay-rate=2.5"}, func(c config.Dispatcher) bool {
			h := c.History
			return h.RetainDeliveredMaxAge == 24*time.Hour && h.RetainDeliveredMaxBytes == 1<<20 && !h.AttemptLog &&
				h.AttemptLogMaxAge == 36*time.Hour && h.AttemptLogMaxBytes == 2<<20 && h.ReplayRate == 2.5
		}},
		{[]string{"--dispatcher-replay-rate=0", "--dispatcher-without-attempt-log"}, func(c config.Dispatcher) bool {
			return c.History.ReplayRate == 0 && !c.History.AttemptLog
		}},
		{[]string{"--dispatcher-log-verbosity=2", "--dispatcher-max-body-bytes=2048", "--dispatcher-ingest-max-concurrent=64", "--dispatcher-max-held-age=1h"}, func(c config.Dispatcher) bool {
			return c.Log.Verbosity == 2 && c.Ingest.MaxBodyBytes == 2048 && c.Ingest.MaxConcurrent == 64 && c.Delivery.MaxHeldAge == time.Hour
		}},
		{[]string{"--allow-plain-http", "--dispatcher-tls=manager"}, func(c config.Dispatcher) bool {
			return c.Outbound.AllowPlainHTTP && c.Serving.TLS.CertFile == "/etc/herald/tls/tls.crt" && c.Serving.TLS.KeyFile == "/etc/herald/tls/tls.key"
		}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			// The manager's own flags: --watch-namespaces and --allow-* are the manager's,
			// which it passes on.
			var o manager.Options
			fs := pflag.NewFlagSet("manager", pflag.ContinueOnError)
			o.BindFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			c := o.Workload
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			got := dispatcherReads(t, rendered(t, c))
			if !tt.check(got) {
				t.Errorf("the dispatcher read %+v", got)
			}
		})
	}

	// Unset, everything is the dispatcher's default but what the manager decides from the
	// pod it builds.
	got := dispatcherReads(t, rendered(t, workload.DefaultConfig()))
	want := config.Default()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the default dispatcher.yaml reads as\n%+v\nwant the dispatcher's defaults\n%+v", got, want)
	}
}

func rendered(t *testing.T, c workload.Config) string {
	t.Helper()
	b, err := config.Render(c.Rendered())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func assertRestricted(t *testing.T, pod *corev1.PodSecurityContext, ctr *corev1.SecurityContext) {
	t.Helper()
	if pod == nil || pod.RunAsNonRoot == nil || !*pod.RunAsNonRoot || pod.SeccompProfile == nil || pod.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v, want runAsNonRoot and seccomp RuntimeDefault", pod)
	}
	switch {
	case ctr == nil:
		t.Fatal("container has no securityContext")
	case ctr.RunAsNonRoot == nil || !*ctr.RunAsNonRoot,
		ctr.RunAsUser == nil || *ctr.RunAsUser != 65532,
		ctr.ReadOnlyRootFilesystem == nil || !*ctr.ReadOnlyRootFilesystem,
		ctr.AllowPrivilegeEscalation == nil || *ctr.AllowPrivilegeEscalation,
		ctr.Capabilities == nil || !slices.Equal(ctr.Capabilities.Drop, []corev1.Capability{"ALL"}),
		ctr.SeccompProfile == nil || ctr.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("container securityContext is not restricted: %+v", ctr)
	}
}

// assertPodAdmitted has the API server admit (dry run) a pod made from the template in a
// namespace that enforces the restricted Pod Security profile, as the StatefulSet or
// Deployment controller would create it; there is no such controller here.
func assertPodAdmitted(t *testing.T, ns string, tmpl corev1.PodTemplateSpec) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "admission-check", Namespace: ns, Labels: tmpl.Labels}, Spec: *tmpl.Spec.DeepCopy()}
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		if m.Name == "data" { // the StatefulSet controller adds the claim of the volumeClaimTemplate
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-" + ns + "-0"},
			}})
		}
	}
	if err := k8s.Create(context.Background(), pod, client.DryRunAll); err != nil {
		t.Errorf("a dispatcher pod is refused in a namespace enforcing restricted Pod Security: %v", err)
	}
}

func assertMount(t *testing.T, ctr corev1.Container, volume, path string, readOnly bool) {
	t.Helper()
	for _, m := range ctr.VolumeMounts {
		if m.Name == volume {
			if m.MountPath != path || m.ReadOnly != readOnly {
				t.Errorf("mount %s = %s (readOnly %v), want %s (readOnly %v)", volume, m.MountPath, m.ReadOnly, path, readOnly)
			}
			return
		}
	}
	t.Errorf("no mount of volume %q in %+v", volume, ctr.VolumeMounts)
}

// dispatcherReads is what the dispatcher makes of dispatcher.yaml: the real command
// must accept it (its --config loader, then its validation), or the dispatcher would
// refuse to start; the configuration is what that loader reads.
func dispatcherReads(t *testing.T, data string) config.Dispatcher {
	t.Helper()
	path := filepath.Join(t.TempDir(), workload.ConfigFileName)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := dispatcher.NewCommand()
	if err := cmd.ParseFlags([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	if err := cmd.PreRunE(cmd, nil); err != nil {
		t.Fatalf("the dispatcher refuses dispatcher.yaml: %v\n%s", err, data)
	}
	c := config.Default()
	fs := pflag.NewFlagSet("dispatcher", pflag.ContinueOnError)
	config.BindFlags(fs, &c)
	if err := config.Load(path, fs, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func managedBy(obj client.Object, manager string) bool {
	for _, f := range obj.GetManagedFields() {
		if f.Manager == manager && f.Operation == metav1.ManagedFieldsOperationApply {
			return true
		}
	}
	return false
}

// createOwnerDeployment stands in for the manager's own Deployment.
func createOwnerDeployment(t *testing.T, ns, name string) *appsv1.Deployment {
	t.Helper()
	labels := map[string]string{"app.kubernetes.io/name": "herald", "app.kubernetes.io/component": "manager"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "manager", Image: "registry.example/herald:1.2.3"}}},
			},
		},
	}
	if err := k8s.Create(context.Background(), d); err != nil {
		t.Fatalf("creating owner Deployment: %v", err)
	}
	return d
}

// TestAppliedObjects_DoNotDrift: what the reconciler applies is what the API server
// keeps, field for field (testenv.Drift, the comparison Argo CD makes), so the
// reconciler's own next apply changes nothing and no pod rolls for a default.
func TestAppliedObjects_DoNotDrift(t *testing.T) {
	for _, mode := range []workload.Mode{workload.ModeEmbedded, workload.ModeExternal} {
		t.Run(string(mode), func(t *testing.T) {
			ctx := context.Background()
			cfg := embeddedConfig(newNamespace(t))
			cfg.OwnerDeployment = "herald-manager"
			if mode == workload.ModeExternal {
				cfg.Mode, cfg.Replicas, cfg.Dispatcher.Store.URL = workload.ModeExternal, 3, "nats://nats:4222"
			}
			createOwnerDeployment(t, cfg.Namespace, cfg.OwnerDeployment)
			startManager(t, cfg)
			desired, err := (&workload.Reconciler{Client: k8s, APIReader: k8s, Config: cfg}).Desired(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range desired {
				want, err := runtime.DefaultUnstructuredConverter.ToUnstructured(d)
				if err != nil {
					t.Fatal(err)
				}
				u := &unstructured.Unstructured{Object: want}
				live := &unstructured.Unstructured{}
				live.SetGroupVersionKind(u.GroupVersionKind())
				eventually(t, u.GetKind()+" exists", func() error {
					return k8s.Get(ctx, types.NamespacedName{Namespace: u.GetNamespace(), Name: u.GetName()}, live)
				})
				for _, diff := range testenv.Drift(want, live.Object) {
					t.Errorf("%s %s drifts: %s", u.GetKind(), u.GetName(), diff)
				}
			}
		})
	}
}
