package watch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/dispatcher/watch"
	"github.com/herald-dev/herald/internal/outbound"
	"github.com/herald-dev/herald/internal/testenv"
)

var (
	k       client.Client
	cached  client.Reader // the manager's: Secrets' metadata from its informer
	direct  client.Reader // the manager's API reader
	engine  *delivery.Engine
	table   = router.NewTable()
	secrets *watch.ReferencedSecrets
)

// The watch runs in a manager against a real API server and feeds a real engine on an
// embedded store; the tests read what the engine and the router were told.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herald-watch-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	st, err := queue.Open(context.Background(), queue.Options{Store: config.Store{DataDir: dir}, Log: logr.Discard()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer st.Close()
	engine = delivery.New(delivery.Options{Store: st, Log: logr.Discard()})
	defer engine.Stop()
	os.Exit(testenv.RunSuite(m, func(s *testenv.Suite) error {
		k = s.Client
		cached, direct = s.Manager.GetClient(), s.Manager.GetAPIReader()
		secrets = watch.NewReferencedSecrets(s.Manager.GetClient(), s.Manager.GetAPIReader())
		if err := (&watch.Endpoints{Client: s.Manager.GetClient(), Engine: engine, Secrets: secrets,
			Policy: outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true}}).SetupWithManager(s.Manager); err != nil {
			return err
		}
		return (&watch.Subscriptions{Client: s.Manager.GetClient(), Router: table}).SetupWithManager(s.Manager)
	}))
}

// waitConfig waits until the engine's configuration of an endpoint satisfies ok.
func waitConfig(t *testing.T, key delivery.Key, what string, ok func(cfg delivery.EndpointConfig, known bool) bool) delivery.EndpointConfig {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		cfg, known := engine.Config(key)
		if ok(cfg, known) {
			return cfg
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s not within 15s (known %v, hold %q %q)", key, what, known, cfg.Hold, cfg.HoldMessage)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEndpoints_FollowTheResourceAndItsSecrets(t *testing.T) {
	ctx := context.Background()
	ns := testenv.NewNamespace(t, k, "watch-")
	key := delivery.Key{Namespace: ns, Name: "billing"}
	ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"},
		Spec: heraldv1.WebhookEndpointSpec{URL: "http://127.0.0.1:9/hooks", Timeout: "3s"}}
	if err := k.Create(ctx, ep); err != nil {
		t.Fatal(err)
	}
	// No signing Secret yet: known (events are routed and stored) but held, with the
	// resolver's reason.
	waitConfig(t, key, "held for the missing Secret", func(c delivery.EndpointConfig, known bool) bool {
		return known && c.Hold == heraldv1.ReasonSecretNotFound && c.Target == nil
	})

	// The Secret arrives: deliveries flow, with the spec's settings.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing-signing"},
		StringData: map[string]string{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}
	if err := k.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	cfg := waitConfig(t, key, "flowing", func(c delivery.EndpointConfig, _ bool) bool { return c.Hold == "" && c.Target != nil })
	if cfg.Target.Timeout() != 3*time.Second || cfg.Generation != 1 {
		t.Errorf("configuration = timeout %s, generation %d; want the spec's 3s, generation 1", cfg.Target.Timeout(), cfg.Generation)
	}

	// A value the style cannot use holds, as the manager's Ready says.
	secret.Data = map[string][]byte{"secret": []byte("not base64!")}
	secret.StringData = nil
	if err := k.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	waitConfig(t, key, "held for the unusable secret", func(c delivery.EndpointConfig, _ bool) bool {
		return c.Hold == heraldv1.ReasonInvalidSecret
	})

	// Fixed, then suspended on purpose: held with its settings kept for the resume.
	secret.Data = map[string][]byte{"secret": []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")}
	if err := k.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	waitConfig(t, key, "flowing again", func(c delivery.EndpointConfig, _ bool) bool { return c.Hold == "" })
	if err := k.Get(ctx, client.ObjectKeyFromObject(ep), ep); err != nil {
		t.Fatal(err)
	}
	ep.Spec.Suspend = true
	if err := k.Update(ctx, ep); err != nil {
		t.Fatal(err)
	}
	waitConfig(t, key, "suspended", func(c delivery.EndpointConfig, _ bool) bool {
		return c.Hold == heraldv1.ReasonSuspended && c.Target == nil && c.Generation == 2 && len(c.Schedule) == 5
	})

	// Deleted: the engine forgets it (its stored deliveries stay in the queue).
	if err := k.Delete(ctx, ep); err != nil {
		t.Fatal(err)
	}
	waitConfig(t, key, "forgotten", func(_ delivery.EndpointConfig, known bool) bool { return !known })
}

func TestSubscriptions_FeedTheRouterAndAFilterThatDoesNotCompileRoutesNothing(t *testing.T) {
	ctx := context.Background()
	ns := testenv.NewNamespace(t, k, "watch-")
	route := func() []string {
		return table.Route(nil, ns, &router.Event{ID: "e", Type: "invoice.paid", Data: json.RawMessage(`{"amount": 5000}`)}, nil)
	}
	waitRoute := func(what string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !slices.Equal(route(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: route = %v, want %v", what, route(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	sub := &heraldv1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "big"},
		Spec: heraldv1.WebhookSubscriptionSpec{EndpointRef: heraldv1.LocalObjectReference{Name: "billing"},
			EventTypes: []string{"invoice.*"}, Filter: "event.data.amount > 1000"}}
	if err := k.Create(ctx, sub); err != nil {
		t.Fatal(err)
	}
	waitRoute("a matching filter", "billing")

	sub.Spec.Filter = "event.data.amount >" // does not compile
	if err := k.Update(ctx, sub); err != nil {
		t.Fatal(err)
	}
	waitRoute("a filter that does not compile")

	sub.Spec.Filter = ""
	if err := k.Update(ctx, sub); err != nil {
		t.Fatal(err)
	}
	waitRoute("no filter", "billing")
	if err := k.Delete(ctx, sub); err != nil {
		t.Fatal(err)
	}
	waitRoute("deleted")
}

// The dispatcher holds the content of the Secrets endpoints read, and of no other: an
// unrelated Secret of the same namespace is never read, a Secret an endpoint stops
// referencing or that is deleted is forgotten, and a changed one is read again.
func TestReferencedSecrets_HoldOnlyWhatEndpointsRead(t *testing.T) {
	ctx := context.Background()
	ns := testenv.NewNamespace(t, k, "watch-")
	key := delivery.Key{Namespace: ns, Name: "billing"}
	for name, data := range map[string]map[string]string{
		"unrelated":       {"password": "never read"},
		"billing-signing": {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		"billing-token":   {"token": "t0ken"},
	} {
		if err := k.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}); err != nil {
			t.Fatal(err)
		}
	}
	ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"},
		Spec: heraldv1.WebhookEndpointSpec{URL: "http://127.0.0.1:9/hooks", Headers: []heraldv1.HeaderSpec{
			{Name: "X-Token", ValueFrom: &heraldv1.SecretKeySelector{Name: "billing-token", Key: "token"}}}}}
	if err := k.Create(ctx, ep); err != nil {
		t.Fatal(err)
	}
	waitConfig(t, key, "flowing", func(c delivery.EndpointConfig, _ bool) bool { return c.Hold == "" && c.Target != nil })
	held := func() (out []string) {
		for _, n := range []string{"unrelated", "billing-signing", "billing-token"} {
			if secrets.Holds(ns, n) {
				out = append(out, n)
			}
		}
		return out
	}
	if got := held(); !slices.Equal(got, []string{"billing-signing", "billing-token"}) {
		t.Fatalf("held %v, want the two referenced Secrets only", got)
	}

	// A changed Secret is read again: the key gone holds the endpoint.
	tok := &corev1.Secret{}
	if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "billing-token"}, tok); err != nil {
		t.Fatal(err)
	}
	tok.Data = map[string][]byte{"other": []byte("x")}
	if err := k.Update(ctx, tok); err != nil {
		t.Fatal(err)
	}
	waitConfig(t, key, "held for the missing key", func(c delivery.EndpointConfig, _ bool) bool {
		return c.Hold == heraldv1.ReasonSecretKeyMissing
	})

	// No longer referenced: forgotten.
	if err := k.Get(ctx, client.ObjectKeyFromObject(ep), ep); err != nil {
		t.Fatal(err)
	}
	ep.Spec.Headers = nil
	if err := k.Update(ctx, ep); err != nil {
		t.Fatal(err)
	}
	waitConfig(t, key, "flowing without the header", func(c delivery.EndpointConfig, _ bool) bool { return c.Hold == "" && c.Generation == 2 })
	if got := held(); !slices.Equal(got, []string{"billing-signing"}) {
		t.Fatalf("after the header went: held %v, want the signing Secret only", got)
	}

	// Deleted: held back, and its content gone from memory.
	if err := k.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing-signing"}}); err != nil {
		t.Fatal(err)
	}
	waitConfig(t, key, "held for the deleted Secret", func(c delivery.EndpointConfig, _ bool) bool {
		return c.Hold == heraldv1.ReasonSecretNotFound
	})
	if got := held(); len(got) != 0 {
		t.Fatalf("after the Secret was deleted: held %v, want nothing", got)
	}
}
