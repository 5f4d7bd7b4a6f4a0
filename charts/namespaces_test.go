package charts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/controllers/endpoint"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/internal/outbound"
)

// With watchNamespaces, the chart grants the manager and the dispatcher what they need
// in those namespaces through Roles there, and nothing on Secrets or the custom
// resources elsewhere; the manager and the dispatcher, run as the chart's
// ServiceAccounts with the flags the chart gives them, serve an endpoint in a watched
// namespace end to end and leave one elsewhere alone.
func TestChartWatchNamespaces_RolesThereAndNothingClusterWide(t *testing.T) {
	const release, ns = "herald-ns", "herald-ns-system"
	served, other, unserved := "served-a", "served-b", "unserved"
	ctx := context.Background()
	for _, n := range []string{ns, served, other, unserved} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil {
			t.Fatal(err)
		}
	}
	manifests := mustCommand(t, nil, helmBin, "template", release, chartDir, "--namespace", ns,
		"--set-json", `watchNamespaces=["`+served+`","`+other+`"]`)
	objs := objects(t, manifests)
	for _, kind := range []string{"Role", "RoleBinding"} {
		for _, name := range []string{release + "-manager-served", release + "-dispatcher-served"} {
			var in []string
			for _, o := range objs {
				if o.GetKind() == kind && o.GetName() == name {
					in = append(in, o.GetNamespace())
				}
			}
			if strings.Join(in, ",") != served+","+other {
				t.Errorf("%s %s rendered in %v, want in %s and %s", kind, name, in, served, other)
			}
		}
	}
	for _, o := range objs {
		if o.GetKind() == "ClusterRole" && (o.GetName() == release+"-manager" || o.GetName() == release+"-dispatcher") {
			for _, r := range rules(t, o) {
				if strings.Join(r.Resources, ",") == "secrets" || strings.Contains(strings.Join(r.Resources, ","), "webhookendpoints") {
					t.Errorf("ClusterRole %s still grants %v on %v cluster-wide", o.GetName(), r.Verbs, r.Resources)
				}
			}
		}
	}
	mustCommand(t, []byte(manifests), kubectlBin, "apply", "--server-side", "--field-manager=chart-test", "-f", "-")
	// The release's admission policy is cluster-wide: left behind, it would answer the
	// other tests' probes in place of the policy they installed (which of two refusing
	// policies answers is the API server's choice), and they wait for their own.
	t.Cleanup(func() {
		mustCommand(t, nil, kubectlBin, "delete", "validatingadmissionpolicybinding,validatingadmissionpolicy",
			release+"-secret-references", "--ignore-not-found")
	})
	deploy := find(t, objs, "Deployment", release+"-manager")
	cfg := managerConfig(t, deploy)
	if !strings.Contains(strings.Join(container(t, deploy).Args, " "), "--watch-namespaces="+served+","+other) {
		t.Fatalf("manager args %v lack --watch-namespaces", container(t, deploy).Args)
	}
	if err := k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: cfg.Name, Namespace: ns}}); err != nil {
		t.Fatal(err)
	}

	manager := "system:serviceaccount:" + ns + ":" + release + "-manager"
	dispatcher := "system:serviceaccount:" + ns + ":" + cfg.Name
	for _, a := range []struct {
		user, verb, group, resource, namespace string
		allowed                                bool
	}{
		{dispatcher, "list", "", "secrets", served, true},
		{dispatcher, "get", "", "secrets", other, true},
		{dispatcher, "watch", "hooks.herald.dev", "webhookendpoints", served, true},
		{dispatcher, "create", "authentication.k8s.io", "tokenreviews", "", true},
		{dispatcher, "list", "", "secrets", "", false},
		{dispatcher, "get", "", "secrets", unserved, false},
		{dispatcher, "list", "hooks.herald.dev", "webhookendpoints", unserved, false},
		{manager, "create", "", "secrets", served, true},
		{manager, "update", "", "configmaps", served, true},
		{manager, "list", "", "secrets", "", false},
		{manager, "get", "", "secrets", unserved, false},
		{manager, "update", "", "configmaps", unserved, false},
		{manager, "list", "hooks.herald.dev", "webhookendpoints", "", false},
	} {
		if got := allowedFor(t, a.user, ns, a.verb, a.group, a.resource, a.namespace); got != a.allowed {
			t.Errorf("%s may %s %s/%s in %q: %v, want %v", a.user, a.verb, a.group, a.resource, a.namespace, got, a.allowed)
		}
	}

	// The manager, as its ServiceAccount with the chart's --watch-namespaces, generates
	// the missing signing Secret of an endpoint it serves and says Ready; it never
	// looks at the unserved namespace's.
	var got atomic.Int32
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
	}))
	t.Cleanup(sink.Close)
	for _, n := range []string{served, unserved} {
		for _, o := range []client.Object{
			&heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: "billing", Namespace: n}, Spec: heraldv1.WebhookEndpointSpec{URL: sink.URL}},
			&heraldv1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: "all", Namespace: n}, Spec: heraldv1.WebhookSubscriptionSpec{
				EndpointRef: heraldv1.LocalObjectReference{Name: "billing"}, EventTypes: []string{"*"}}},
		} {
			if err := k8s.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	policy := outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true}
	runCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	mgr, err := ctrl.NewManager(impersonated(manager, ns), ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache: cache.Options{DefaultNamespaces: map[string]cache.Config{served: {}, other: {}}},
		// Another test of this package runs the same controller.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptrTo(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&endpoint.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("herald-manager"), Policy: policy}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(runCtx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-mgrDone:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("manager: %v", err)
			}
		case <-time.After(30 * time.Second): // caches that never synced (see below)
		}
	})
	waitFor(t, 30*time.Second, "the served endpoint Ready with its generated Secret", func() bool {
		var ep heraldv1.WebhookEndpoint
		return k8s.Get(ctx, client.ObjectKey{Namespace: served, Name: "billing"}, &ep) == nil &&
			meta.IsStatusConditionTrue(ep.Status.Conditions, heraldv1.ConditionReady)
	})

	// The dispatcher, as its ServiceAccount, serves the watched namespaces: a producer's
	// API key there works and the event is delivered.
	key := auth.NewAPIKey()
	if err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "producer-key", Namespace: served, Labels: map[string]string{auth.APIKeyLabel: "true"}},
		StringData: map[string]string{auth.APIKeyDataKey: key}}); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	dispDone := make(chan error, 1)
	storeDir := t.TempDir() // removed after the dispatcher stops (cleanups run last first)
	go func() {
		conf := config.Default()
		conf.Store.DataDir, conf.WatchNamespaces, conf.Outbound = storeDir, []string{served, other}, policy
		conf.Serving = config.Serving{IngestBindAddress: "127.0.0.1:0", HealthProbeBindAddress: "0", MetricsBindAddress: "0"}
		dispDone <- app.Run(runCtx, impersonated(dispatcher, ns), app.Options{
			Config:     conf,
			Authorizer: app.ClusterAuthorizer(app.AuthOptions{Auth: conf.Auth, Namespaces: conf.WatchNamespaces}),
			Log:        testr.New(t), Ready: ready,
		})
	}()
	t.Cleanup(func() {
		stop()
		// A manager whose caches never synced does not return (controller-runtime
		// v0.25 waits on); the failure is reported already.
		select {
		case err := <-dispDone:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("dispatcher: %v", err)
			}
		case <-time.After(30 * time.Second):
		}
	})
	var addr string
	select {
	case addr = <-ready:
	case err := <-dispDone:
		t.Fatalf("the dispatcher, with the chart's namespaced RBAC, stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the dispatcher, with the chart's namespaced RBAC, did not serve within 60s (a Forbidden list or watch keeps its caches from syncing)")
	}
	waitFor(t, 30*time.Second, "an event published in the served namespace delivered", func() bool {
		body, _ := json.Marshal(map[string]any{"type": "invoice.paid", "data": map[string]int{"amount": 1}})
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/namespaces/"+served+"/events", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return got.Load() > 0
	})
	var ep heraldv1.WebhookEndpoint
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: unserved, Name: "billing"}, &ep); err != nil || len(ep.Status.Conditions) > 0 {
		t.Errorf("the unserved namespace's endpoint was reconciled: %v %+v", err, ep.Status)
	}
}

// as is the test API server's configuration impersonating a ServiceAccount of ns.
func impersonated(user, ns string) *rest.Config {
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: user,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	return cfg
}

// allowedFor asks the API server's authorizer whether a ServiceAccount of saNS may do it.
func allowedFor(t *testing.T, user, saNS, verb, group, resource, namespace string) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   user,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + saNS, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: verb, Group: group, Resource: resource, Namespace: namespace,
		},
	}}
	if err := k8s.Create(context.Background(), sar); err != nil {
		t.Fatalf("SubjectAccessReview: %v", err)
	}
	return sar.Status.Allowed
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func ptrTo[T any](v T) *T { return &v }
