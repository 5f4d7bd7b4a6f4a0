package charts_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/herald-dev/herald/controllers/workload"
)

// dispatcher.tls.enabled without cert-manager: the manager issues. Installed for real,
// the manager, as the chart's ServiceAccount and under the chart's ConfigMap policy,
// makes the CA and the certificate and publishes the CA, which any authenticated user
// may read and nothing else of the namespace.
func TestChartTLS_TheManagerIssuesAndEveryoneMayReadTheCA(t *testing.T) {
	const release, ns = "herald-tls", "herald-tls-system"
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	manifests := mustCommand(t, nil, helmBin, "template", release, chartDir, "--namespace", ns, "--set", "dispatcher.tls.enabled=true")
	objs := objects(t, manifests)
	for _, o := range objs {
		if strings.HasPrefix(o.GetAPIVersion(), "cert-manager.io/") {
			t.Fatalf("%s %s rendered where the cluster serves no cert-manager API", o.GetKind(), o.GetName())
		}
	}
	mustCommand(t, []byte(manifests), kubectlBin, "apply", "--server-side", "--field-manager=chart-test", "-f", "-")
	deploy := find(t, objs, "Deployment", release+"-manager")
	t.Setenv("POD_NAMESPACE", ns)
	cfg := managerConfig(t, deploy)
	if cfg.TLS != workload.TLSManager {
		t.Fatalf("--dispatcher-tls = %q, want manager", cfg.TLS)
	}

	manager := "system:serviceaccount:" + ns + ":" + release + "-manager"
	mgr, err := ctrl.NewManager(impersonated(manager, ns), ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache:      cache.Options{ByObject: cfg.CacheByObject()},
		Controller: config.Controller{SkipNameValidation: ptrTo(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&workload.Reconciler{Client: mgr.GetClient(), Config: cfg}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
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
	var published corev1.ConfigMap
	waitFor(t, 30*time.Second, "the manager, with the chart's RBAC and policy, publishing the CA", func() bool {
		return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: cfg.CAConfigMapName()}, &published) == nil
	})
	var serving corev1.Secret
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: cfg.TLSSecretName()}, &serving); err != nil || string(serving.Data["ca.crt"]) != published.Data[workload.CAConfigMapKey] {
		t.Errorf("serving Secret: %v; its ca.crt is the published one: %v", err, string(serving.Data["ca.crt"]) == published.Data[workload.CAConfigMapKey])
	}

	for _, a := range []struct {
		verb, resource, name string
		allowed              bool
	}{
		{"get", "configmaps", cfg.CAConfigMapName(), true},
		{"get", "configmaps", cfg.Name, false},
		{"list", "configmaps", "", false},
		{"get", "secrets", cfg.TLSSecretName(), false},
	} {
		if got := mayAs(t, "someone", []string{"system:authenticated"}, a.verb, a.resource, a.name, ns); got != a.allowed {
			t.Errorf("an authenticated user may %s %s %q: %v, want %v", a.verb, a.resource, a.name, got, a.allowed)
		}
	}
}

// With cert-manager's API (auto), the chart asks cert-manager for the certificate: the
// Secret the manager mounts, for the names the manager would issue for, from a CA of
// Herald's own or the issuer given.
func TestChartTLS_CertManagerIssuesForTheManagersNames(t *testing.T) {
	for _, tt := range []struct {
		name   string
		values []string
		issuer string
	}{
		{"a CA of Herald's own", nil, "herald-dispatcher-ca"},
		{"the issuer given", []string{"--set", "dispatcher.tls.certManagerIssuerRef.kind=ClusterIssuer", "--set", "dispatcher.tls.certManagerIssuerRef.name=corp-ca"}, "corp-ca"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			manifests := helmTemplate(t, append([]string{"--set", "dispatcher.tls.enabled=true", "--api-versions", "cert-manager.io/v1"}, tt.values...)...)
			objs := objects(t, manifests)
			cfg := managerConfig(t, find(t, objs, "Deployment", "herald-manager"))
			if cfg.TLS != workload.TLSExternal {
				t.Fatalf("--dispatcher-tls = %q, want external", cfg.TLS)
			}
			var certManager []*unstructured.Unstructured
			var rest strings.Builder
			for _, o := range objs {
				if strings.HasPrefix(o.GetAPIVersion(), "cert-manager.io/") {
					certManager = append(certManager, o)
					continue
				}
				b, _ := yaml.Marshal(o.Object)
				rest.WriteString("---\n" + string(b))
			}
			// No cert-manager here: its objects are checked for what they say, the rest
			// by the API server.
			if out := serverDryRun(t, rest.String(), "--force-conflicts"); strings.Count(out, "(server dry run)") != len(objs)-len(certManager) {
				t.Errorf("API server accepted:\n%s", out)
			}
			cert := find(t, certManager, "Certificate", cfg.Name)
			spec := cert.Object["spec"].(map[string]any)
			var names []string
			for _, key := range []string{"dnsNames", "ipAddresses"} {
				for _, n := range spec[key].([]any) {
					names = append(names, n.(string))
				}
			}
			want := cfg.ServingHosts()
			slices.Sort(names)
			slices.Sort(want)
			if !slices.Equal(names, want) || spec["secretName"] != cfg.TLSSecretName() {
				t.Errorf("Certificate for %v into %v, want %v into %s", names, spec["secretName"], want, cfg.TLSSecretName())
			}
			if ref := spec["issuerRef"].(map[string]any); ref["name"] != tt.issuer {
				t.Errorf("issuerRef = %v, want %s", ref, tt.issuer)
			}
		})
	}
}

// mayAs asks the API server's authorizer whether a user may do it.
func mayAs(t *testing.T, user string, groups []string, verb, resource, name, namespace string) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user, Groups: groups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Resource: resource, Name: name, Namespace: namespace},
	}}
	if err := k8s.Create(context.Background(), sar); err != nil {
		t.Fatalf("SubjectAccessReview: %v", err)
	}
	return sar.Status.Allowed
}
