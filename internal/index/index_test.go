package index_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/internal/index"
	"github.com/herald-dev/herald/internal/testenv"
)

// secretsField indexes WebhookEndpoints by the Secrets their signing references name,
// the way the manager and the dispatcher index them (they index more references; which
// ones is theirs to test).
const secretsField = "test.secretNames"

func secretNames(o client.Object) []string {
	ep := o.(*heraldv1.WebhookEndpoint)
	var names []string
	for _, ref := range []*heraldv1.SecretKeySelector{ep.Spec.SecretRef, ep.Spec.PreviousSecretRef} {
		if ref != nil {
			names = append(names, ref.Name)
		}
	}
	return names
}

var (
	k        client.Client // straight to the API server
	cached   client.Client // the manager's cache, where the index lives
	enqueued = &recorder{}
)

// recorder is a reconciler that records what the Secret watch enqueued.
type recorder struct {
	mu   sync.Mutex
	seen []reconcile.Request
}

func (r *recorder) Reconcile(_ context.Context, req reconcile.Request) (reconcile.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, req)
	return reconcile.Result{}, nil
}

func (r *recorder) has(req reconcile.Request) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.seen, req)
}

func TestMain(m *testing.M) {
	os.Exit(testenv.RunSuite(m, func(s *testenv.Suite) error {
		k, cached = s.Client, s.Manager.GetClient()
		if err := s.Manager.GetFieldIndexer().IndexField(context.Background(), &heraldv1.WebhookEndpoint{}, secretsField, secretNames); err != nil {
			return fmt.Errorf("indexing: %w", err)
		}
		// Wired as the endpoint controllers wire it: a Secret event enqueues the
		// endpoints that read that Secret.
		return ctrl.NewControllerManagedBy(s.Manager).
			Named("referrers").
			WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(index.Referrers(s.Manager.GetClient(),
				func() client.ObjectList { return &heraldv1.WebhookEndpointList{} }, secretsField))).
			Complete(enqueued)
	}))
}

func endpoint(t *testing.T, ns, name, secret, previous string) {
	t.Helper()
	ep := &heraldv1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: heraldv1.WebhookEndpointSpec{URL: "https://example.com/hook",
			SecretRef: &heraldv1.SecretKeySelector{Name: secret, Key: "secret"}},
	}
	if previous != "" {
		ep.Spec.PreviousSecretRef = &heraldv1.SecretKeySelector{Name: previous, Key: "secret"}
	}
	if err := k.Create(context.Background(), ep); err != nil {
		t.Fatalf("creating endpoint %s/%s: %v", ns, name, err)
	}
}

func names(reqs []reconcile.Request) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.Namespace+"/"+r.Name)
	}
	slices.Sort(out)
	return out
}

// TestReferrers_MapsASecretToTheEndpointsThatNameIt calls the map function on the
// manager's cache, as the Secret watch does.
func TestReferrers_MapsASecretToTheEndpointsThatNameIt(t *testing.T) {
	a := testenv.NewNamespace(t, k, "index-a-")
	b := testenv.NewNamespace(t, k, "index-b-")
	endpoint(t, a, "orders", "shared", "")
	endpoint(t, a, "billing", "billing-signing", "shared")
	endpoint(t, a, "audit", "audit-signing", "")
	endpoint(t, b, "orders", "shared", "")
	// The cache must hold all four before any answer means anything.
	testenv.Eventually(t, 10*time.Second, func() error {
		var list heraldv1.WebhookEndpointList
		if err := cached.List(context.Background(), &list, client.InNamespace(a)); err != nil {
			return err
		}
		var other heraldv1.WebhookEndpointList
		if err := cached.List(context.Background(), &other, client.InNamespace(b)); err != nil {
			return err
		}
		if n := len(list.Items) + len(other.Items); n != 4 {
			return fmt.Errorf("cache holds %d endpoints, want 4", n)
		}
		return nil
	})
	referrers := index.Referrers(cached, func() client.ObjectList { return &heraldv1.WebhookEndpointList{} }, secretsField)
	for _, c := range []struct {
		why    string
		ns     string
		secret string
		want   []string
	}{
		{"a Secret named as signing and as previous secret maps to both endpoints, only in its namespace", a, "shared", []string{a + "/billing", a + "/orders"}},
		{"the same name in the other namespace maps only to the endpoint there", b, "shared", []string{b + "/orders"}},
		{"a Secret named once maps to its one endpoint", a, "audit-signing", []string{a + "/audit"}},
		{"a Secret nobody names maps to nothing", a, "unrelated", nil},
	} {
		t.Run(c.why, func(t *testing.T) {
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: c.secret}}
			if got := names(referrers(context.Background(), secret)); !slices.Equal(got, c.want) {
				t.Fatalf("Referrers(%s/%s) = %v, want %v", c.ns, c.secret, got, c.want)
			}
		})
	}
}

// TestReferrers_ListErrorIsLoggedAndEnqueuesNothing: a map function has no error
// return, so a failed list must at least say so in the log.
func TestReferrers_ListErrorIsLoggedAndEnqueuesNothing(t *testing.T) {
	var logged []string
	ctx := logf.IntoContext(context.Background(), funcr.New(func(prefix, args string) { logged = append(logged, args) }, funcr.Options{}))
	referrers := index.Referrers(cached, func() client.ObjectList { return &heraldv1.WebhookEndpointList{} }, "no.such.index")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "s"}}
	if got := referrers(ctx, secret); got != nil {
		t.Fatalf("Referrers with an unknown index = %v, want nothing", got)
	}
	if len(logged) != 1 || !strings.Contains(logged[0], "listing referrers") || !strings.Contains(logged[0], "no.such.index") {
		t.Fatalf("log = %q, want one error naming the index", logged)
	}
}

// TestReferrers_SecretCreatedLaterEnqueuesItsEndpoint: through a real watch, a Secret a
// person creates after the endpoint reaches the endpoint's reconciler.
func TestReferrers_SecretCreatedLaterEnqueuesItsEndpoint(t *testing.T) {
	ns := testenv.NewNamespace(t, k, "index-watch-")
	endpoint(t, ns, "orders", "orders-signing", "")
	want := reconcile.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "orders"}}
	// The endpoint must be in the cache first, or the Secret's event would map to
	// nothing through no fault of Referrers.
	testenv.Eventually(t, 10*time.Second, func() error {
		return cached.Get(context.Background(), want.NamespacedName, &heraldv1.WebhookEndpoint{})
	})
	if enqueued.has(want) {
		t.Fatal("the endpoint was enqueued before its Secret existed; nothing else should enqueue it")
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-signing"},
		StringData: map[string]string{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}
	if err := k.Create(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if !enqueued.has(want) {
			return fmt.Errorf("%s not enqueued after its Secret was created", want)
		}
		return nil
	})
}
