package client_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/admin"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/receiverdocs"
	"github.com/herald-dev/herald/dispatcher/resolve"
	"github.com/herald-dev/herald/dispatcher/router"
	"github.com/herald-dev/herald/internal/outbound"
)

// The examples and tests talk to a dispatcher made of Herald's own handlers: the route
// of app.NewPipeline (ingest, dedupe, the JetStream store, the engine, the outcome) and
// the endpoint API (dispatcher/admin), behind a local HTTP server. Only Kubernetes is
// left out: endpoints are configured the way the watch configures them (resolve, then
// the engine and the router), and tokens are checked by a stand-in for TokenReview.
//
// Namespace "shop" has the WebhookEndpoint "billing", subscribed to invoice.*, whose
// receiver answers 204 and keeps what it gets, and "ledger", subscribed to ledger.*,
// whose receiver answers 500, so its deliveries become dead letters after one retry.
// Token "producer" (in tokenFile) may publish into shop; token "operator" may use the
// endpoint API there.
var (
	// server is the dispatcher's URL.
	server string
	// tokenFile holds the producer's token, as a projected ServiceAccount token would.
	tokenFile string
	// billing is what billing's receiver got.
	billing = &receiver{}
	// handler is the dispatcher's HTTP API, for tests that put something in front of it.
	handler http.Handler
)

const (
	producerToken = "producer"
	operatorToken = "operator"
)

func TestMain(m *testing.M) {
	stop, err := startDispatcher()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the dispatcher:", err)
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

// receiver keeps the bodies a WebhookEndpoint received.
type receiver struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.bodies = append(r.bodies, b)
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) received() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...)
}

// tokens stands in for TokenReview and SubjectAccessReview: want is the one token that
// may act.
func tokens(want string) auth.Authorizer {
	return auth.AuthorizerFunc(func(_ context.Context, r *http.Request, ns string) (auth.Identity, error) {
		tok, ok := auth.BearerToken(r)
		switch {
		case !ok:
			return auth.Identity{}, auth.ErrNoCredentials
		case tok != want:
			return auth.Identity{}, auth.ErrUnauthenticated
		case ns != "shop":
			return auth.Identity{Name: "system:serviceaccount:shop:" + want}, auth.ErrForbidden
		}
		return auth.Identity{Name: "system:serviceaccount:shop:" + want, Method: auth.MethodToken}, nil
	})
}

func startDispatcher() (stop func(), err error) {
	dir, err := os.MkdirTemp("", "herald-client-")
	if err != nil {
		return nil, err
	}
	tokenFile = filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(producerToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	conf := config.Default()
	conf.Store.DataDir = filepath.Join(dir, "store")
	p, err := app.NewPipeline(ctx, app.PipelineOptions{Config: conf, Authorizer: tokens(producerToken), Log: logr.Discard()})
	if err != nil {
		cancel()
		return nil, err
	}
	go func() { _ = p.Tracker.Watch(ctx) }()

	good := httptest.NewServer(billing)
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	objects := map[string]*heraldv1.WebhookEndpoint{}
	var subs []heraldv1.WebhookSubscription
	for _, ep := range []struct{ name, url, types string }{{"billing", good.URL, "invoice.*"}, {"ledger", bad.URL, "ledger.*"}} {
		obj := &heraldv1.WebhookEndpoint{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: ep.name, UID: types.UID("uid-" + ep.name), Generation: 1},
			Spec:       heraldv1.WebhookEndpointSpec{URL: ep.url, Retry: heraldv1.RetrySpec{Schedule: []string{"10ms"}}},
		}
		secret := &corev1.Secret{Data: map[string][]byte{heraldv1.DefaultSecretKey: []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")}}
		res, err := resolve.Endpoint(ctx, obj, func(context.Context, string, string) (*corev1.Secret, error) { return secret, nil },
			outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true})
		if err != nil || !res.Ready() {
			cancel()
			return nil, fmt.Errorf("endpoint %s: %v %s %s", ep.name, err, res.Reason, res.Message)
		}
		p.Engine.Upsert(delivery.Key{Namespace: "shop", Name: ep.name, UID: string(obj.UID)}, delivery.Resolved(res, 1))
		p.Router.Set("shop", router.Subscription{Name: "to-" + ep.name, Endpoint: ep.name, Patterns: []string{ep.types}})
		objects[ep.name] = obj
		subs = append(subs, heraldv1.WebhookSubscription{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "to-" + ep.name},
			Spec:       heraldv1.WebhookSubscriptionSpec{EndpointRef: heraldv1.LocalObjectReference{Name: ep.name}, EventTypes: []string{ep.types}},
		})
	}

	mux := http.NewServeMux()
	mux.Handle("/", p.Ingest)
	admin.NewHandler(admin.Options{
		Store: p.Store, Lifecycle: p.Tracker, Replayer: p.Replayer, Lookup: p.Engine.Lookup, Now: p.Now,
		Access: admin.Access{Read: tokens(operatorToken), Replay: tokens(operatorToken), Enable: tokens(operatorToken)},
		Docs: func(_ context.Context, k delivery.Key) ([]byte, error) {
			return receiverdocs.Build(receiverdocs.Input{Endpoint: objects[k.Name], Subscriptions: subs})
		},
		Log: logr.Discard(),
	}).Register(mux)
	handler = mux
	srv := httptest.NewServer(mux)
	server = srv.URL
	return func() {
		srv.Close()
		cancel()
		p.Close()
		good.Close()
		bad.Close()
		_ = os.RemoveAll(dir)
	}, nil
}
