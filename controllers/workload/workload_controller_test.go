package workload_test

import (
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
	"sigs.k8s.io/yaml"

	"github.com/herald-dev/herald/cmd/dispatcher"
	"github.com/herald-dev/herald/controllers/workload"
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
	settings := parseSettings(t, data)
	if settings.DataDir != "/var/lib/herald" || settings.NATSURL != "" || settings.AllowPlainHTTP || settings.IngestBindAddress != ":8080" {
		t.Errorf("dispatcher.yaml = %+v, want the embedded store at /var/lib/herald, ingest on :8080, the strict outbound policy", settings)
	}
	assertDispatcherAccepts(t, data)
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

	cfg.Outbound.AllowPlainHTTP = true
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
		if !parseSettings(t, cm.Data[workload.ConfigFileName]).AllowPlainHTTP {
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
	cfg.NATSURL = "nats://nats.nats:4222"
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
	settings := parseSettings(t, cm.Data[workload.ConfigFileName])
	if settings.NATSURL != "nats://nats.nats:4222" || settings.NATSCredentials != "/etc/herald/nats/nats.creds" || settings.DataDir != "" {
		t.Errorf("dispatcher.yaml = %+v, want the external NATS URL and the mounted credentials, no data dir", settings)
	}
	assertDispatcherAccepts(t, cm.Data[workload.ConfigFileName])
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
		{"an OTLP endpoint the exporter could not reach is refused here, not in the pod", func(c *workload.Config) { c.OTLPEndpoint = "otel-collector:4318" },
			`--dispatcher-otlp-endpoint "otel-collector:4318" must be an http(s) URL`},
		{"external mode with credentials is valid", func(c *workload.Config) {
			c.Mode, c.Replicas, c.NATSURL, c.NATSCredentialsSecret = workload.ModeExternal, 3, "nats://nats:4222", "creds"
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

func TestSettings_OTLPEndpointReachesTheDispatcherFlag(t *testing.T) {
	c := workload.DefaultConfig()
	c.OTLPEndpoint = "http://otel-collector.observability:4318"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	data, err := yaml.Marshal(c.Settings())
	if err != nil {
		t.Fatal(err)
	}
	if s := parseSettings(t, string(data)); s.OTLPEndpoint != c.OTLPEndpoint {
		t.Fatalf("dispatcher.yaml carries otlp-endpoint %q, want %q", s.OTLPEndpoint, c.OTLPEndpoint)
	}
	assertDispatcherAccepts(t, string(data))
	if off := workload.DefaultConfig().Settings(); off.OTLPEndpoint != "" {
		t.Fatalf("tracing is on by default: %q", off.OTLPEndpoint)
	}
}

// Who may publish and which namespaces are served reach the dispatcher's flags; by
// default the dispatcher's own defaults hold (Herald's audience only, every namespace).
func TestSettings_AudienceAndNamespacesReachTheDispatcher(t *testing.T) {
	c := workload.DefaultConfig()
	c.AcceptAPIServerAudience = true
	c.WatchNamespaces = []string{"shop", "billing"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	data, err := yaml.Marshal(c.Settings())
	if err != nil {
		t.Fatal(err)
	}
	if s := parseSettings(t, string(data)); !s.AcceptAPIServerAudience || s.WatchNamespaces != "shop,billing" {
		t.Fatalf("dispatcher.yaml = %s", data)
	}
	assertDispatcherAccepts(t, string(data))
	data, _ = yaml.Marshal(workload.DefaultConfig().Settings())
	if strings.Contains(string(data), "audience") || strings.Contains(string(data), "watch-namespaces") {
		t.Fatalf("default dispatcher.yaml = %s; want the dispatcher's defaults", data)
	}
	c.WatchNamespaces = []string{"Shop"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `--watch-namespaces "Shop"`) {
		t.Fatalf("an invalid namespace: %v", err)
	}
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

func parseSettings(t *testing.T, data string) workload.Settings {
	t.Helper()
	var s workload.Settings
	if err := yaml.UnmarshalStrict([]byte(data), &s); err != nil {
		t.Fatalf("dispatcher.yaml does not parse as Settings: %v\n%s", err, data)
	}
	return s
}

// assertDispatcherAccepts feeds dispatcher.yaml to the real dispatcher command's flags,
// as its --config loader does: every key must be one of its flags and every value must
// parse, or the dispatcher would refuse to start.
func assertDispatcherAccepts(t *testing.T, data string) {
	t.Helper()
	cmd := dispatcher.NewCommand()
	var values map[string]string
	if err := yaml.UnmarshalStrict([]byte(data), &values); err != nil {
		t.Fatalf("dispatcher.yaml is not a flat map of strings: %v\n%s", err, data)
	}
	for name, v := range values {
		if cmd.Flags().Lookup(name) == nil {
			t.Errorf("dispatcher.yaml sets %q, which is not a dispatcher flag", name)
			continue
		}
		if err := cmd.Flags().Set(name, v); err != nil {
			t.Errorf("dispatcher.yaml %s=%q: %v", name, v, err)
		}
	}
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
				cfg.Mode, cfg.Replicas, cfg.NATSURL = workload.ModeExternal, 3, "nats://nats:4222"
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

// The store's settings reach the dispatcher's flags, and the defaults leave the choice
// to the dispatcher (3 copies on a cluster) instead of pinning one copy.
func TestSettings_StoreLimitsAndReplicasReachTheDispatcher(t *testing.T) {
	c := workload.DefaultConfig()
	if c.NATSStreamReplicas != 0 {
		t.Errorf("default --nats-stream-replicas = %d, want 0 (the dispatcher chooses)", c.NATSStreamReplicas)
	}
	c.Mode, c.Replicas, c.NATSURL = workload.ModeExternal, 3, "nats://nats.nats:4222"
	c.MaxPendingBytes, c.DeadLetterMaxBytes = 8<<30, 1<<30
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	data, err := yaml.Marshal(c.Settings())
	if err != nil {
		t.Fatal(err)
	}
	s := parseSettings(t, string(data))
	if s.NATSReplicas != 0 || s.MaxPendingBytes != 8<<30 || s.DeadLetterMaxBytes != 1<<30 || strings.Contains(string(data), "nats-replicas") {
		t.Errorf("dispatcher.yaml = %s; want the byte caps and no nats-replicas", data)
	}
	assertDispatcherAccepts(t, string(data))

	c.SyncAlways = true
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "sync_interval") {
		t.Errorf("--dispatcher-sync-always in external mode: %v, want an error pointing at the servers' sync_interval", err)
	}
	e := workload.DefaultConfig()
	e.SyncAlways = true
	data, _ = yaml.Marshal(e.Settings())
	if !parseSettings(t, string(data)).SyncAlways {
		t.Errorf("embedded dispatcher.yaml = %s; want nats-sync-always", data)
	}
	assertDispatcherAccepts(t, string(data))
}

// The delivery history's bounds reach the dispatcher's flags, in the form its flags
// parse; left at zero they leave the dispatcher's own defaults.
func TestSettings_HistoryBoundsReachTheDispatcher(t *testing.T) {
	c := workload.DefaultConfig()
	c.History = workload.HistoryConfig{RetainDeliveredMaxAge: 24 * time.Hour, RetainDeliveredMaxBytes: 1 << 20,
		WithoutAttemptLog: true, AttemptLogMaxAge: 36 * time.Hour, AttemptLogMaxBytes: 2 << 20, ReplayRate: 2.5}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	data, err := yaml.Marshal(c.Settings())
	if err != nil {
		t.Fatal(err)
	}
	s := parseSettings(t, string(data))
	if s.RetainDeliveredMaxAge != "24h0m0s" || s.RetainDeliveredMaxBytes != 1<<20 || s.AttemptLog || s.AttemptLogMaxAge != "36h0m0s" || s.AttemptLogMaxBytes != 2<<20 ||
		s.ReplayRate != 2.5 {
		t.Errorf("dispatcher.yaml = %s", data)
	}
	assertDispatcherAccepts(t, string(data))

	data, _ = yaml.Marshal(workload.DefaultConfig().Settings())
	if s := parseSettings(t, string(data)); !s.AttemptLog || strings.Contains(string(data), "max-age") || s.ReplayRate != 50 {
		t.Errorf("default dispatcher.yaml = %s; want the attempt log on, the dispatcher's default ages and 50 replayed a second", data)
	}
	c.History.AttemptLogMaxBytes = -1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--dispatcher-attempt-log-max-age/-bytes") {
		t.Errorf("a negative bound: %v", err)
	}
}
