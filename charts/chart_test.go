package charts_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/spf13/pflag"

	managercmd "github.com/herald-dev/herald/cmd/manager"
	"github.com/herald-dev/herald/controllers/workload"
)

// externalValues is the scale-out install of the README, with everything optional set.
var externalValues = []string{
	"--set", "dispatcher.mode=external",
	"--set", "dispatcher.replicas=3",
	"--set", "dispatcher.nats.url=nats://nats.nats:4222",
	"--set", "dispatcher.nats.credentialsSecret=nats-creds",
	"--set", "dispatcher.nats.streamReplicas=3",
	"--set", "manager.replicas=2",
	"--set", "outbound.allowPlainHTTP=true",
	"--set", "serviceMonitor.enabled=false",
	"--set-json", `imagePullSecrets=["regcred"]`,
}

func TestHelmLint_PassesForDefaultAndExternalValues(t *testing.T) {
	for name, values := range map[string][]string{
		"default":        nil,
		"external NATS":  externalValues,
		"ServiceMonitor": {"--set", "serviceMonitor.enabled=true"},
		"alerts and dashboard": {"--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true",
			"--set", "grafanaDashboard.enabled=true", "--set", "prometheusRule.alerts.ingestErrors.ratio=0.1"},
		"no CRDs": {"--set", "crds.enabled=false", "--set", "metrics.enabled=false"},
	} {
		t.Run(name, func(t *testing.T) {
			mustCommand(t, nil, helmBin, append([]string{"lint", "--strict", chartDir}, values...)...)
		})
	}
}

func TestHelmTemplate_EveryObjectIsAcceptedByTheAPIServer(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		check  func(t *testing.T, cfg workload.Config)
	}{
		{"default values: embedded store", nil, func(t *testing.T, cfg workload.Config) {
			if cfg.Mode != workload.ModeEmbedded || cfg.Replicas != 1 || cfg.StorageSize != "1Gi" {
				t.Errorf("dispatcher config = %+v, want embedded, 1 replica, 1Gi", cfg)
			}
		}},
		{"external NATS values", externalValues, func(t *testing.T, cfg workload.Config) {
			if cfg.Mode != workload.ModeExternal || cfg.Replicas != 3 || cfg.Dispatcher.Store.URL != "nats://nats.nats:4222" ||
				cfg.NATSCredentialsSecret != "nats-creds" || cfg.Dispatcher.Store.Replicas != 3 || !cfg.Dispatcher.Outbound.AllowPlainHTTP ||
				!reflect.DeepEqual(cfg.ImagePullSecrets, []string{"regcred"}) {
				t.Errorf("dispatcher config = %+v, want external, 3 replicas on nats://nats.nats:4222 with nats-creds, plain http, pull secret regcred", cfg)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			manifests := helmTemplate(t, tt.values...)
			objs := objects(t, manifests)
			out := serverDryRun(t, manifests)
			if got := strings.Count(out, "(server dry run)"); got != len(objs) {
				t.Errorf("API server accepted %d of %d objects:\n%s", got, len(objs), out)
			}
			if strings.Contains(out, "PodSecurity") {
				t.Errorf("manager pod template violates the restricted Pod Security profile:\n%s", out)
			}

			deploy := find(t, objs, "Deployment", "herald-manager")
			cfg := managerConfig(t, deploy)
			tt.check(t, cfg)
			assertWiring(t, objs, deploy, cfg)
		})
	}
}

// assertWiring checks what the manager is told against what the chart grants: the
// dispatcher lands in the release namespace under the name its ClusterRoleBinding binds,
// with the manager's image, owned by the manager's Deployment.
func assertWiring(t *testing.T, objs []*unstructured.Unstructured, deploy *unstructured.Unstructured, cfg workload.Config) {
	t.Helper()
	if cfg.Namespace != releaseNamespace {
		t.Errorf("--dispatcher-namespace = %q, want the release namespace %q", cfg.Namespace, releaseNamespace)
	}
	if cfg.OwnerDeployment != deploy.GetName() {
		t.Errorf("--dispatcher-owner-deployment = %q, want the manager Deployment %q", cfg.OwnerDeployment, deploy.GetName())
	}
	if img := container(t, deploy).Image; cfg.Image != img {
		t.Errorf("--dispatcher-image = %q, want the manager's image %q", cfg.Image, img)
	}
	var binding rbacv1.ClusterRoleBinding
	convert(t, find(t, objs, "ClusterRoleBinding", cfg.Name), &binding)
	if len(binding.Subjects) != 1 || binding.Subjects[0].Name != cfg.Name || binding.Subjects[0].Namespace != cfg.Namespace {
		t.Errorf("dispatcher ClusterRoleBinding subjects = %+v, want ServiceAccount %s/%s, which the manager creates", binding.Subjects, cfg.Namespace, cfg.Name)
	}
	if role := find(t, objs, "Role", "herald-manager"); role.GetNamespace() != cfg.Namespace {
		t.Errorf("the manager's Role is in %q, but the dispatcher goes to %q", role.GetNamespace(), cfg.Namespace)
	}
}

func TestValuesSchema_RefusesBadValuesWithAClearMessage(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   string
	}{
		{"a typo in the mode must not install something else", []string{"--set", "dispatcher.mode=bogus"},
			"at '/dispatcher/mode': value must be one of 'embedded', 'external'"},
		{"external mode has nowhere to connect without a URL", []string{"--set", "dispatcher.mode=external"},
			"at '/dispatcher/nats': missing property 'url'"},
		{"an empty URL is no URL", []string{"--set", "dispatcher.mode=external", "--set", "dispatcher.nats.url="},
			"at '/dispatcher/nats/url': '' does not match pattern"},
		{"the embedded store lives in one pod", []string{"--set", "dispatcher.replicas=3"},
			"at '/dispatcher/replicas': value must be 1"},
		{"several managers without leader election would fight", []string{"--set", "manager.replicas=2", "--set", "manager.leaderElection=false"},
			"at '/manager/leaderElection': value must be true"},
		{"an OTLP endpoint must be a URL the exporter can post to", []string{"--set", "dispatcher.tracing.otlpEndpoint=otel-collector:4318"},
			"at '/dispatcher/tracing/otlpEndpoint': 'otel-collector:4318' does not match pattern"},
		{"a misplaced key is a typo, not a no-op", []string{"--set", "dispatcher.storageClass=fast"},
			"at '/dispatcher': additional properties 'storageClass' not allowed"},
		{"a ratio is a share, not a percentage", []string{"--set", "prometheusRule.alerts.ingestErrors.ratio=5"},
			"at '/prometheusRule/alerts/ingestErrors/ratio'"},
		{"an alert's window is a Prometheus duration", []string{"--set", "prometheusRule.alerts.deadLetters.window=15min"},
			"at '/prometheusRule/alerts/deadLetters/window': '15min' does not match pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := command(nil, helmBin, append([]string{"template", "herald", chartDir}, tt.values...)...)
			if err == nil {
				t.Fatalf("helm template accepted %v", tt.values)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("helm template failed with\n%v\nwant a message containing %q", err, tt.want)
			}
		})
	}
}

func TestChartCRDs_EqualGeneratedCRDsApartFromTheChartAnnotations(t *testing.T) {
	rendered := objects(t, helmTemplate(t))
	bases, err := filepath.Glob(filepath.Join(repoRoot, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(bases) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (err=%v)", err)
	}
	for _, base := range bases {
		want := readObjects(t, filepath.Join("config", "crd", "bases", filepath.Base(base)))[0]
		got := find(t, rendered, "CustomResourceDefinition", want.GetName()).DeepCopy()
		ann := got.GetAnnotations()
		if ann["helm.sh/resource-policy"] != "keep" || ann["argocd.argoproj.io/sync-wave"] != "-1" {
			t.Errorf("%s annotations = %v, want helm.sh/resource-policy=keep and argocd.argoproj.io/sync-wave=-1", want.GetName(), ann)
		}
		// Only what the chart adds; the Go markers already set the sync wave.
		for _, added := range []string{"helm.sh/resource-policy", "argocd.argoproj.io/sync-wave"} {
			if _, fromMarker := want.GetAnnotations()[added]; !fromMarker {
				delete(ann, added)
			}
		}
		got.SetAnnotations(ann)
		if !reflect.DeepEqual(got.Object, want.Object) {
			t.Errorf("chart CRD %s differs from %s; run `make manifests`", want.GetName(), base)
		}
	}

	for _, o := range objects(t, helmTemplate(t, "--set", "crds.enabled=false")) {
		if o.GetKind() == "CustomResourceDefinition" {
			t.Errorf("crds.enabled=false still renders CRD %s", o.GetName())
		}
	}
}

func TestChartRBAC_EqualsConfigRBAC(t *testing.T) {
	rendered := objects(t, helmTemplate(t))
	generated := readObjects(t, "config/rbac/role.yaml")
	tests := []struct {
		what       string
		kind, name string // in the chart
		from       []*unstructured.Unstructured
		fromName   string
	}{
		{"manager ClusterRole (controller-gen)", "ClusterRole", "herald-manager", generated, "herald-manager"},
		{"manager Role for the dispatcher workload (controller-gen)", "Role", "herald-manager", generated, "herald-manager"},
		{"dispatcher ClusterRole", "ClusterRole", "herald-dispatcher", readObjects(t, "config/rbac/dispatcher_role.yaml"), "herald-dispatcher"},
		{"leader election Role", "Role", "herald-leader-election", readObjects(t, "config/rbac/leader_election_role.yaml"), "herald-leader-election"},
		{"publisher ClusterRole", "ClusterRole", "herald-publisher", readObjects(t, "config/rbac/publisher_role.yaml"), "herald-publisher"},
		{"operator ClusterRole", "ClusterRole", "herald-operator", readObjects(t, "config/rbac/operator_role.yaml"), "herald-operator"},
		{"editor ClusterRole", "ClusterRole", "herald-editor", readObjects(t, "config/rbac/editor_role.yaml"), "herald-editor"},
		{"response reader ClusterRole", "ClusterRole", "herald-response-reader", readObjects(t, "config/rbac/response_reader_role.yaml"), "herald-response-reader"},
	}
	for _, tt := range tests {
		t.Run(tt.what, func(t *testing.T) {
			got := rules(t, find(t, rendered, tt.kind, tt.name))
			want := rules(t, find(t, tt.from, tt.kind, tt.fromName))
			if len(want) == 0 {
				t.Fatalf("config defines no rules for %s %s", tt.kind, tt.fromName)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("chart %s %s rules differ from config/rbac:\nchart:  %+v\nconfig: %+v", tt.kind, tt.name, got, want)
			}
		})
	}
}

// TestChartRBAC_IsEnoughAndNoMore installs the chart for real and runs the workload
// reconciler as the chart's manager ServiceAccount, with the flags the chart gives it:
// least privilege must still be enough privilege. Then it asks the API server what each
// ServiceAccount may and may not do.
func TestChartRBAC_IsEnoughAndNoMore(t *testing.T) {
	const ns = "rbac-check"
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	manifests := mustCommand(t, nil, helmBin, "template", "herald", chartDir, "--namespace", ns)
	mustCommand(t, []byte(manifests), kubectlBin, "apply", "--server-side", "--field-manager=chart-test", "-f", "-")

	cfg := managerConfig(t, find(t, objects(t, manifests), "Deployment", "herald-manager"))
	asManager := rest.CopyConfig(env.Config)
	asManager.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":herald-manager",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	mgr, err := ctrl.NewManager(asManager, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{ByObject: cfg.CacheByObject()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&workload.Reconciler{Client: mgr.GetClient(), Config: cfg}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("manager: %v", err)
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		var sts appsv1.StatefulSet
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: cfg.Name}, &sts)
		if err == nil {
			if refs := sts.OwnerReferences; len(refs) != 1 || refs[0].Name != "herald-manager" {
				t.Errorf("StatefulSet ownerReferences = %+v, want the chart's manager Deployment", refs)
			}
			break
		}
		if !apierrors.IsNotFound(err) || time.Now().After(deadline) {
			t.Fatalf("the manager, with the chart's RBAC, did not create StatefulSet %s/%s: %v (see the manager log for a Forbidden error)", ns, cfg.Name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The API server's own authorizer answers for what the chart grants and withholds.
	manager := "system:serviceaccount:" + ns + ":herald-manager"
	dispatcher := "system:serviceaccount:" + ns + ":" + cfg.Name
	access := []struct {
		user, verb, group, resource, subresource, namespace string
		allowed                                             bool
	}{
		{dispatcher, "watch", "hooks.herald.dev", "webhookendpoints", "", "", true},
		{dispatcher, "list", "hooks.herald.dev", "webhooksubscriptions", "", "", true},
		{dispatcher, "patch", "hooks.herald.dev", "webhookendpoints", "status", "shop", true},
		{dispatcher, "watch", "", "secrets", "", "", true},
		{dispatcher, "create", "", "events", "", "shop", true},
		{dispatcher, "create", "events.k8s.io", "events", "", "shop", true},
		{dispatcher, "create", "authentication.k8s.io", "tokenreviews", "", "", true},
		{dispatcher, "create", "authorization.k8s.io", "subjectaccessreviews", "", "", true},
		// GitOps owns spec: the dispatcher writes status only.
		{dispatcher, "patch", "hooks.herald.dev", "webhookendpoints", "", "shop", false},
		{dispatcher, "update", "", "secrets", "", "shop", false},
		{manager, "patch", "apps", "statefulsets", "", ns, true},
		{manager, "create", "coordination.k8s.io", "leases", "", ns, true},
		// The workload grant is the release namespace's alone.
		{manager, "create", "apps", "statefulsets", "", "default", false},
		{manager, "list", "", "configmaps", "", "", false},
	}
	for _, a := range access {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   a.user,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Namespace: a.namespace,
			},
		}}
		if err := k8s.Create(ctx, sar); err != nil {
			t.Fatalf("SubjectAccessReview: %v", err)
		}
		if sar.Status.Allowed != a.allowed {
			t.Errorf("%s may %s %s/%s %s in namespace %q: %v, want %v", a.user, a.verb, a.group, a.resource, a.subresource, a.namespace, sar.Status.Allowed, a.allowed)
		}
	}
}

func TestKustomizeDefault_AppliesWithServerSideDryRun(t *testing.T) {
	manifests := mustCommand(t, nil, kubectlBin, "kustomize", "config/default")
	objs := objects(t, manifests)
	out := serverDryRun(t, manifests)
	if got := strings.Count(out, "(server dry run)"); got != len(objs) {
		t.Errorf("API server accepted %d of %d objects:\n%s", got, len(objs), out)
	}
	if strings.Contains(out, "PodSecurity") {
		t.Errorf("manager pod template violates the restricted Pod Security profile:\n%s", out)
	}
	for _, kind := range []string{"Namespace", "CustomResourceDefinition", "ClusterRole", "Role", "ServiceAccount", "Deployment"} {
		if !hasKind(objs, kind) {
			t.Errorf("config/default renders no %s", kind)
		}
	}
	deploy := find(t, objs, "Deployment", "herald-manager")
	// config/default relies on $POD_NAMESPACE for the dispatcher's namespace.
	t.Setenv("POD_NAMESPACE", deploy.GetNamespace())
	cfg := managerConfig(t, deploy)
	assertWiring(t, objs, deploy, cfg)
}

func TestSamples_ApplyWithServerSideDryRun(t *testing.T) {
	const ns = "samples"
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	manifests := mustCommand(t, nil, kubectlBin, "kustomize", "config/samples")
	objs := objects(t, manifests)
	out := serverDryRun(t, manifests, "--namespace", ns)
	if got := strings.Count(out, "(server dry run)"); got != len(objs) {
		t.Errorf("API server accepted %d of %d objects:\n%s", got, len(objs), out)
	}

	styles := map[string]string{}
	for _, o := range objs {
		if o.GetKind() == "WebhookEndpoint" {
			style, _, _ := unstructured.NestedString(o.Object, "spec", "signature", "style")
			styles[style] = o.GetName()
		}
	}
	for _, style := range []string{"StandardWebhooks", "TimestampedPrefixedHex", "BodyPrefixedHex", "TimestampedHex"} {
		endpoint, ok := styles[style]
		if !ok {
			t.Errorf("no sample WebhookEndpoint with signature style %s", style)
			continue
		}
		subscribed := false
		for _, o := range objs {
			ref, _, _ := unstructured.NestedString(o.Object, "spec", "endpointRef", "name")
			subscribed = subscribed || (o.GetKind() == "WebhookSubscription" && ref == endpoint)
		}
		if !subscribed {
			t.Errorf("sample endpoint %s (%s) has no WebhookSubscription", endpoint, style)
		}
	}
}

// managerConfig parses the manager container's args with the flags of `herald manager`:
// the real command must know every flag, and they must make a valid workload.Config.
func managerConfig(t *testing.T, deploy *unstructured.Unstructured) workload.Config {
	t.Helper()
	args := container(t, deploy).Args
	if len(args) == 0 || args[0] != "manager" {
		t.Fatalf("manager args = %v, want the manager subcommand first", args)
	}
	var o managercmd.Options
	fs := pflag.NewFlagSet("manager", pflag.ContinueOnError)
	o.BindFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		t.Fatalf("`herald manager` refuses the args %v: %v", args[1:], err)
	}
	if err := o.Workload.Validate(); err != nil {
		t.Fatalf("the manager would refuse to start: %v", err)
	}
	return o.Workload
}

func container(t *testing.T, deploy *unstructured.Unstructured) corev1.Container {
	t.Helper()
	var d appsv1.Deployment
	convert(t, deploy, &d)
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "manager" {
			return c
		}
	}
	t.Fatalf("Deployment %s has no manager container", deploy.GetName())
	return corev1.Container{}
}

func rules(t *testing.T, role *unstructured.Unstructured) []rbacv1.PolicyRule {
	t.Helper()
	var r rbacv1.ClusterRole // Role has the same rules field
	convert(t, role, &r)
	return r.Rules
}

func convert(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		t.Fatalf("converting %s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

func hasKind(objs []*unstructured.Unstructured, kind string) bool {
	for _, o := range objs {
		if o.GetKind() == kind {
			return true
		}
	}
	return false
}
