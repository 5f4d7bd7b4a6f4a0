package auth_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/dispatcher/ingest"
	"github.com/herald-dev/herald/internal/testenv"
)

// One real API server (with etcd) for the package. envtest runs kube-apiserver with
// --authorization-mode=RBAC and a service-account issuer with signing keys, so
// TokenRequest, TokenReview and SubjectAccessReview all behave as in a cluster; no
// extra flags are needed.
var (
	env   *testenv.Env
	admin kubernetes.Interface
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	e, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = e.Stop() }()
	env = e
	if admin, err = kubernetes.NewForConfig(e.Config); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// countingTransport counts the reviews a real client sends to the real API server,
// optionally holding TokenReviews back so that concurrent requests overlap.
type countingTransport struct {
	next          http.RoundTripper
	tokenReviews  atomic.Int32
	accessReviews atomic.Int32
	delay         time.Duration
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	switch {
	case strings.HasSuffix(r.URL.Path, "/tokenreviews"):
		c.tokenReviews.Add(1)
		time.Sleep(c.delay)
	case strings.HasSuffix(r.URL.Path, "/subjectaccessreviews"):
		c.accessReviews.Add(1)
	}
	return c.next.RoundTrip(r)
}

func countingClient(t *testing.T, cfg *rest.Config, delay time.Duration) (kubernetes.Interface, *countingTransport) {
	t.Helper()
	ct := &countingTransport{delay: delay}
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { ct.next = rt; return ct })
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, ct
}

func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns, err := admin.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// serviceAccountToken creates a ServiceAccount and mints a token for it through the
// TokenRequest API, as kubelet does for a projected volume.
func serviceAccountToken(t *testing.T, ns, name string, audiences ...string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expiry := int64(600)
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// grantPublish gives a ServiceAccount create on events.hooks.herald.dev in ns, the
// way a platform team would, and waits until the API server's RBAC cache has it.
func grantPublish(t *testing.T, ns, saNamespace, saName string) {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "herald-publisher"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"hooks.herald.dev"}, Resources: []string{"events"}, Verbs: []string{"create"}}},
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "herald-publisher-" + saName},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: saNamespace, Name: saName}},
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	user := "system:serviceaccount:" + saNamespace + ":" + saName
	eventually(t, 10*time.Second, "RBAC grant visible", func() bool {
		sar, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: user, ResourceAttributes: &authzv1.ResourceAttributes{Namespace: ns, Verb: "create", Group: "hooks.herald.dev", Resource: "events"},
		}}, metav1.CreateOptions{})
		return err == nil && sar.Status.Allowed
	})
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not true after %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// acceptor records what gets through; the real engine lives elsewhere.
type acceptor struct {
	mu   sync.Mutex
	byNS map[string]int
}

func (a *acceptor) Accept(_ context.Context, ns string, events []ingest.Event) ([]ingest.Result, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byNS == nil {
		a.byNS = map[string]int{}
	}
	a.byNS[ns] += len(events)
	out := make([]ingest.Result, len(events))
	for i, e := range events {
		out[i] = ingest.Result{ID: e.ID, Matched: 1}
	}
	return out, nil
}

func (a *acceptor) count(ns string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.byNS[ns]
}

// publisher is the ingest API with the authorizer under test, over real HTTP.
type publisher struct {
	srv *httptest.Server
	acc *acceptor
}

func newPublisher(t *testing.T, a auth.Authorizer) *publisher {
	t.Helper()
	p := &publisher{acc: &acceptor{}}
	h, err := ingest.NewHandler(ingest.Options{Acceptor: p.acc, Authorizer: a, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	p.srv = httptest.NewServer(h)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *publisher) post(t *testing.T, ns, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.srv.URL+"/v1/namespaces/"+ns+"/events", strings.NewReader(`{"type":"order.created","data":{"n":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := p.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if token != "" && strings.Contains(string(b), token) {
		t.Errorf("the answer contains the credential: %s", b)
	}
	return resp.StatusCode, string(b)
}

func TestServiceAccountToken_PublishesOnlyWhereGranted(t *testing.T) {
	producers, teamA, teamB := newNamespace(t, "producers"), newNamespace(t, "team-a"), newNamespace(t, "team-b")
	token := serviceAccountToken(t, producers, "orders")
	grantPublish(t, teamA, producers, "orders")

	a, err := auth.New(auth.Options{Client: admin, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, a)

	if status, body := p.post(t, teamA, token); status != http.StatusAccepted {
		t.Fatalf("granted namespace: %d %s", status, body)
	}
	user := "system:serviceaccount:" + producers + ":orders"
	for _, ns := range []string{teamB, producers} { // a ServiceAccount's own namespace grants nothing either
		status, body := p.post(t, ns, token)
		want := fmt.Sprintf(`%q may not create events.hooks.herald.dev in namespace %q`, user, ns)
		if status != http.StatusForbidden || !strings.Contains(body, strings.ReplaceAll(want, `"`, `\"`)) {
			t.Errorf("namespace %s: %d %s, want 403 saying %s", ns, status, body, want)
		}
	}
	if status, body := p.post(t, teamA, "not-a-token"); status != http.StatusUnauthorized {
		t.Errorf("garbage token: %d %s, want 401", status, body)
	}
	if status, body := p.post(t, teamA, ""); status != http.StatusUnauthorized {
		t.Errorf("no token: %d %s, want 401", status, body)
	}
	if got := p.acc.count(teamA); got != 1 {
		t.Errorf("%d events reached %s, want 1", got, teamA)
	}
	if got := p.acc.count(teamB) + p.acc.count(producers); got != 0 {
		t.Errorf("%d events reached namespaces the producer may not publish into", got)
	}
}

func TestServiceAccountToken_DecisionsAreCachedAndCoalesced(t *testing.T) {
	producers, teamA, teamB := newNamespace(t, "producers"), newNamespace(t, "team-a"), newNamespace(t, "team-b")
	token := serviceAccountToken(t, producers, "orders")
	grantPublish(t, teamA, producers, "orders")

	// TokenReviews are held back so that the concurrent requests below overlap.
	client, count := countingClient(t, env.Config, 300*time.Millisecond)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	a, err := auth.New(auth.Options{Client: client, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, a)
	reviews := func() (int32, int32) { return count.tokenReviews.Load(), count.accessReviews.Load() }

	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if status, body := p.post(t, teamA, token); status != http.StatusAccepted {
				t.Errorf("%d %s", status, body)
			}
		})
	}
	wg.Wait()
	if tr, sar := reviews(); tr != 1 || sar != 1 {
		t.Fatalf("10 concurrent requests made %d TokenReviews and %d SubjectAccessReviews, want 1 and 1", tr, sar)
	}
	p.post(t, teamA, token)
	if tr, sar := reviews(); tr != 1 || sar != 1 {
		t.Errorf("a cached decision made new reviews: %d, %d", tr, sar)
	}

	// Refusals are cached too, per namespace.
	for range 2 {
		if status, _ := p.post(t, teamB, token); status != http.StatusForbidden {
			t.Errorf("team-b: %d, want 403", status)
		}
	}
	if tr, sar := reviews(); tr != 2 || sar != 2 {
		t.Errorf("two refusals made %d TokenReviews and %d SubjectAccessReviews in total, want 2 and 2", tr, sar)
	}
	for range 2 {
		p.post(t, teamA, "garbage")
	}
	if tr, sar := reviews(); tr != 3 || sar != 2 {
		t.Errorf("an invalid token twice: %d TokenReviews and %d SubjectAccessReviews in total, want 3 and 2", tr, sar)
	}

	// After 11s a refusal is reviewed again, an allowance is still reused...
	clock.Add(int64(11 * time.Second))
	p.post(t, teamB, token)
	p.post(t, teamA, token)
	if tr, _ := reviews(); tr != 4 {
		t.Errorf("after 11s: %d TokenReviews in total, want 4 (refusal expired, allowance not)", tr)
	}
	// ...and after a minute it is reviewed again too.
	clock.Add(int64(50 * time.Second))
	p.post(t, teamA, token)
	if tr, _ := reviews(); tr != 5 {
		t.Errorf("after 61s: %d TokenReviews in total, want 5", tr)
	}
}

func TestServiceAccountToken_AudienceMustMatch(t *testing.T) {
	producers, teamA := newNamespace(t, "producers"), newNamespace(t, "team-a")
	forHerald := serviceAccountToken(t, producers, "for-herald", auth.Audience)
	forAPIServer := serviceAccountToken(t, producers, "for-apiserver")
	grantPublish(t, teamA, producers, "for-herald")
	grantPublish(t, teamA, producers, "for-apiserver")

	a, err := auth.New(auth.Options{Client: admin, Audiences: []string{auth.Audience}})
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, a)
	if status, body := p.post(t, teamA, forHerald); status != http.StatusAccepted {
		t.Errorf("token for Herald's audience: %d %s", status, body)
	}
	// Refused, saying which audience the token has and how to get one for Herald.
	status, body := p.post(t, teamA, forAPIServer)
	t.Logf("a token for the API server's audience: %d %s", status, body)
	if status != http.StatusUnauthorized || !strings.Contains(body, "minted for audience") ||
		!strings.Contains(body, "kubectl create token NAME --audience hooks.herald.dev") {
		t.Errorf("token for the API server's audience: %d %s, want 401 naming the audiences", status, body)
	}
}

// While producers move to tokens for Herald's audience, the API server's is accepted
// too when asked for, and Herald's still works.
func TestServiceAccountToken_APIServerAudienceAcceptedWhenAsked(t *testing.T) {
	producers, teamA := newNamespace(t, "producers"), newNamespace(t, "team-a")
	forHerald := serviceAccountToken(t, producers, "for-herald", auth.Audience)
	forAPIServer := serviceAccountToken(t, producers, "for-apiserver")
	forOther := serviceAccountToken(t, producers, "for-vault", "vault")
	for _, sa := range []string{"for-herald", "for-apiserver", "for-vault"} {
		grantPublish(t, teamA, producers, sa)
	}
	a, err := auth.New(auth.Options{Client: admin, Audiences: []string{auth.Audience}, AcceptAPIServerAudience: true})
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, a)
	for name, token := range map[string]string{"Herald's": forHerald, "the API server's": forAPIServer} {
		if status, body := p.post(t, teamA, token); status != http.StatusAccepted {
			t.Errorf("token for %s audience: %d %s", name, status, body)
		}
	}
	if status, body := p.post(t, teamA, forOther); status != http.StatusUnauthorized || !strings.Contains(body, "vault") {
		t.Errorf("token for another service's audience: %d %s, want 401 naming it", status, body)
	}
}

func TestServiceAccountToken_APIServerUnreachableIs503AndNotCached(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connections are refused
	client, count := countingClient(t, &rest.Config{Host: "http://" + addr}, 0)
	a, err := auth.New(auth.Options{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, a)
	for range 2 {
		status, body := p.post(t, "team-a", "some-token-value")
		if status != http.StatusServiceUnavailable || !strings.Contains(body, `"unavailable"`) || strings.Contains(body, addr) {
			t.Errorf("%d %s, want 503 unavailable without internals", status, body)
		}
	}
	if n := count.tokenReviews.Load(); n != 2 {
		t.Errorf("%d TokenReview attempts for 2 requests; a failure to ask must not be cached", n)
	}
}

func createKeySecret(t *testing.T, ns, name, key string, labelled bool) {
	t.Helper()
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		StringData: map[string]string{auth.APIKeyDataKey: key},
	}
	if labelled {
		s.Labels = map[string]string{auth.APIKeyLabel: "true"}
	}
	if _, err := admin.CoreV1().Secrets(ns).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func startKeys(t *testing.T, o auth.APIKeyOptions) *auth.APIKeys {
	t.Helper()
	keys, err := auth.NewAPIKeys(admin, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- keys.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("APIKeys.Start: %v", err)
		}
	})
	if err := keys.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestAPIKey_GrantsItsOwnNamespaceOnlyAndRevocationIsPrompt(t *testing.T) {
	teamA, teamB := newNamespace(t, "team-a"), newNamespace(t, "team-b")
	key, other, unlabelled, short := auth.NewAPIKey(), auth.NewAPIKey(), auth.NewAPIKey(), "hak_0123456789"
	createKeySecret(t, teamA, "ci", key, true)
	createKeySecret(t, teamA, "billing", other, true)
	createKeySecret(t, teamB, "not-a-key", unlabelled, false)
	createKeySecret(t, teamB, "placeholder", short, true)

	client, count := countingClient(t, env.Config, 0)
	a, err := auth.New(auth.Options{Client: client, APIKeys: startKeys(t, auth.APIKeyOptions{Log: testr.New(t)})})
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, a)

	if status, body := p.post(t, teamA, key); status != http.StatusAccepted {
		t.Fatalf("key in its namespace: %d %s", status, body)
	}
	status, body := p.post(t, teamB, key)
	if want := fmt.Sprintf(`\"apikey:%s/ci\" may not create events.hooks.herald.dev in namespace \"%s\"`, teamA, teamB); status != http.StatusForbidden || !strings.Contains(body, want) {
		t.Errorf("key of %s used on %s: %d %s, want 403 containing %s", teamA, teamB, status, body, want)
	}
	for name, k := range map[string]string{"unlabelled Secret": unlabelled, "too short": short, "unknown": auth.NewAPIKey()} {
		if status, body := p.post(t, teamB, k); status != http.StatusUnauthorized {
			t.Errorf("%s key: %d %s, want 401", name, status, body)
		}
	}
	if n := count.tokenReviews.Load(); n != 0 {
		t.Errorf("%d TokenReviews made; API keys must never be sent to the API server", n)
	}

	// Deleting the Secret revokes the key; unlabelling it does too.
	ctx := context.Background()
	if err := admin.CoreV1().Secrets(teamA).Delete(ctx, "ci", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 5*time.Second, "deleted key refused", func() bool {
		status, _ := p.post(t, teamA, key)
		return status == http.StatusUnauthorized
	})
	t.Logf("deleted key refused after %v", took)
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, auth.APIKeyLabel)
	if _, err := admin.CoreV1().Secrets(teamA).Patch(ctx, "billing", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "unlabelled key refused", func() bool {
		status, _ := p.post(t, teamA, other)
		return status == http.StatusUnauthorized
	})
	if got := p.acc.count(teamB); got != 0 {
		t.Errorf("%d events reached %s, where no key was valid", got, teamB)
	}
}

func TestAPIKey_OnlyWatchedNamespacesCount(t *testing.T) {
	watched, unwatched := newNamespace(t, "watched"), newNamespace(t, "unwatched")
	inWatched, inUnwatched := auth.NewAPIKey(), auth.NewAPIKey()
	createKeySecret(t, watched, "k", inWatched, true)
	createKeySecret(t, unwatched, "k", inUnwatched, true)
	a, err := auth.New(auth.Options{APIKeys: startKeys(t, auth.APIKeyOptions{Namespaces: []string{watched}})})
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, a)
	if status, body := p.post(t, watched, inWatched); status != http.StatusAccepted {
		t.Errorf("key in a watched namespace: %d %s", status, body)
	}
	if status, body := p.post(t, unwatched, inUnwatched); status != http.StatusUnauthorized {
		t.Errorf("key in an unwatched namespace: %d %s, want 401", status, body)
	}
}

func TestAPIKey_BeforeKeysAreLoadedProducersAreToldToRetry(t *testing.T) {
	keys, err := auth.NewAPIKeys(admin, auth.APIKeyOptions{}) // never started
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Options{APIKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, a)
	if status, body := p.post(t, "team-a", auth.NewAPIKey()); status != http.StatusServiceUnavailable {
		t.Errorf("%d %s, want 503 while keys are not loaded: the key may well be valid", status, body)
	}
}

func TestNewAPIKey_IsPrefixedRandomAndLongEnough(t *testing.T) {
	a, b := auth.NewAPIKey(), auth.NewAPIKey()
	if a == b || !strings.HasPrefix(a, auth.APIKeyPrefix) || len(a) != len(auth.APIKeyPrefix)+52 || strings.ToLower(a) != a {
		t.Errorf("NewAPIKey() = %q, %q; want distinct, %s + 52 lowercase base32 characters", a, b, auth.APIKeyPrefix)
	}
}
