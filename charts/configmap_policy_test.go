package charts_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/controllers/endpoint"
	"github.com/herald-dev/herald/internal/outbound"
)

func TestConfigMapPolicy_ChartEqualsConfig(t *testing.T) {
	rendered := objects(t, helmTemplate(t))
	fromConfig := readObjects(t, "config/policy/manager_configmaps_policy.yaml")
	for _, kind := range []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		got, want := find(t, rendered, kind, "herald-manager-configmaps"), find(t, fromConfig, kind, "herald-manager-configmaps")
		if !reflect.DeepEqual(got.Object["spec"], want.Object["spec"]) {
			t.Errorf("chart %s differs from config/policy:\nchart:  %v\nconfig: %v", kind, got.Object["spec"], want.Object["spec"])
		}
	}
	for _, o := range objects(t, helmTemplate(t, "--set", "manager.configMapPolicy=false")) {
		if strings.HasPrefix(o.GetKind(), "ValidatingAdmissionPolicy") && o.GetName() == "herald-manager-configmaps" {
			t.Errorf("manager.configMapPolicy=false still renders %s", o.GetKind())
		}
	}
}

// The manager's ServiceAccount may write any ConfigMap as far as RBAC goes; the chart's
// ValidatingAdmissionPolicy, enforced by the API server, leaves it only the ConfigMaps
// Herald owns. Everything else it tries is refused with a message naming the rule, and
// the endpoint controller, run as that ServiceAccount, still publishes and removes an
// ed25519 endpoint's public-key ConfigMap.
func TestConfigMapPolicy_TheManagerWritesOnlyHeraldsConfigMaps(t *testing.T) {
	const release, ns, tenant = "herald-cm", "herald-cm-system", "tenant-cm"
	ctx := context.Background()
	for _, n := range []string{ns, tenant} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil {
			t.Fatal(err)
		}
	}
	manifests := mustCommand(t, nil, helmBin, "template", release, chartDir, "--namespace", ns)
	mustCommand(t, []byte(manifests), kubectlBin, "apply", "--server-side", "--field-manager=chart-test", "-f", "-")
	// Its cluster-wide admission policies (the Secret-reference one among them) would
	// judge the other tests' objects too, refusing under this release's name.
	t.Cleanup(func() {
		if out, err := command([]byte(manifests), kubectlBin, "delete", "--ignore-not-found", "--wait=false", "-f", "-"); err != nil {
			t.Errorf("removing release %s: %v\n%s", release, err, out)
		}
	})
	manager := "system:serviceaccount:" + ns + ":" + release + "-manager"
	asManager, err := client.New(impersonated(manager, ns), client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	theirs := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "team-config", Namespace: tenant}, Data: map[string]string{"k": "v"}}
	if err := k8s.Create(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	herald := map[string]string{heraldv1.LabelManagedBy: heraldv1.LabelManagedByValue}

	// The API server loads a new policy within moments: wait until it refuses.
	const notOurs = "Herald's manager writes only ConfigMaps labelled app.kubernetes.io/managed-by=herald; tenant-cm/"
	waitFor(t, 30*time.Second, "the policy in force", func() bool {
		err := asManager.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: tenant}}, client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), notOurs)
	})

	refused := []struct {
		what  string
		write func() error
		want  string
	}{
		{"creating an unlabelled ConfigMap", func() error {
			return asManager.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "new", Namespace: tenant}})
		}, notOurs + "new is not one"},
		{"taking over another's ConfigMap by labelling it", func() error {
			cm := theirs.DeepCopy()
			cm.Labels, cm.Data = herald, map[string]string{"k": "changed"}
			return asManager.Update(ctx, cm)
		}, notOurs + "team-config is not one"},
		{"deleting another's ConfigMap", func() error { return asManager.Delete(ctx, theirs.DeepCopy()) }, notOurs + "team-config is not one"},
		{"creating a labelled ConfigMap no endpoint controls", func() error {
			return asManager.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "billing-public-key", Namespace: tenant, Labels: herald}})
		}, "Herald's manager writes only <endpoint>-public-key ConfigMaps controlled by their WebhookEndpoint, and the dispatcher's own; tenant-cm/billing-public-key is neither"},
		{"creating a labelled ConfigMap in its own namespace", func() error {
			return asManager.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy", Namespace: ns, Labels: herald}})
		}, "herald-cm-system/kube-proxy is neither"},
	}
	for _, r := range refused {
		err := r.write()
		if !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) || err == nil || !strings.Contains(err.Error(), r.want) {
			t.Errorf("%s: %v, want refused with %q", r.what, err, r.want)
		}
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(theirs), theirs); err != nil || theirs.Data["k"] != "v" || len(theirs.Labels) != 0 {
		t.Errorf("the tenant's ConfigMap after the refusals: %v %+v", err, theirs)
	}

	// What the manager does write passes: an ed25519 endpoint's public key, published and
	// removed by the endpoint controller running as the manager's ServiceAccount.
	runCtx, stop := context.WithCancel(ctx)
	mgr, err := ctrl.NewManager(impersonated(manager, ns), ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: config.Controller{SkipNameValidation: ptrTo(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&endpoint.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("herald-manager"), Policy: outbound.Policy{}}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(runCtx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("manager: %v", err)
			}
		case <-time.After(30 * time.Second):
		}
	})
	ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: tenant}, Spec: heraldv1.WebhookEndpointSpec{
		URL: "https://orders.example.com/hooks", Signature: heraldv1.SignatureSpec{Style: heraldv1.SignatureStandardWebhooksEd25519}}}
	if err := k8s.Create(ctx, ep); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: tenant, Name: ep.PublicKeyConfigMapName()}
	waitFor(t, 30*time.Second, "the public-key ConfigMap published", func() bool {
		var cm corev1.ConfigMap
		return k8s.Get(ctx, key, &cm) == nil && cm.Data[heraldv1.PublicKeyConfigMapKey] != ""
	})
	// Signing with HMAC from a new Secret: the ConfigMap goes.
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(ep), ep); err != nil {
		t.Fatal(err)
	}
	ep.Spec.Signature.Style = heraldv1.SignatureStandardWebhooks
	ep.Spec.SecretRef = &heraldv1.SecretKeySelector{Name: "orders-hmac", Key: "secret"}
	if err := k8s.Update(ctx, ep); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the public-key ConfigMap removed", func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, key, &corev1.ConfigMap{}))
	})
}
