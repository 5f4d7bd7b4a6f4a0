package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/herald-dev/herald/dispatcher/auth"
)

// The 403 advice says how long the dispatcher keeps a refusal; this pins that figure to
// what dispatcher/auth does with its defaults, so the advice cannot drift from it. The
// API server is a stand-in that authenticates every token and refuses every access
// review, counting them: a review after the refusal means the cache let go.
func TestRefusalCacheDelay_IsTheDispatchers(t *testing.T) {
	var reviews atomic.Int32
	apiServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/tokenreviews"):
			_ = json.NewEncoder(w).Encode(authnv1.TokenReview{
				TypeMeta: tokenReviewType,
				Status:   authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: "system:serviceaccount:shop:orders"}},
			})
		case strings.HasSuffix(r.URL.Path, "/subjectaccessreviews"):
			reviews.Add(1)
			_ = json.NewEncoder(w).Encode(authzv1.SubjectAccessReview{TypeMeta: accessReviewType, Status: authzv1.SubjectAccessReviewStatus{Allowed: false}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(apiServer.Close)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: apiServer.URL})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var now atomic.Int64
	now.Store(start.UnixNano())
	a, err := auth.New(auth.Options{Client: cs, Now: func() time.Time { return time.Unix(0, now.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	ask := func(at time.Duration) int32 {
		t.Helper()
		now.Store(start.Add(at).UnixNano())
		r := httptest.NewRequest(http.MethodPost, "/v1/namespaces/shop/events", nil)
		r.Header.Set("Authorization", "Bearer a-token")
		if _, err := a.Authorize(context.Background(), r, "shop"); !errors.Is(err, auth.ErrForbidden) {
			t.Fatalf("at +%s: %v, want forbidden", at, err)
		}
		return reviews.Load()
	}
	if n := ask(0); n != 1 {
		t.Fatalf("the first refusal made %d access reviews, want 1", n)
	}
	if n := ask(refusalCacheDelay - time.Millisecond); n != 1 {
		t.Fatalf("just before refusalCacheDelay (%s) the dispatcher asked the API server again: its refusals last less than the CLI says", refusalCacheDelay)
	}
	if n := ask(refusalCacheDelay + time.Millisecond); n != 2 {
		t.Fatalf("just after refusalCacheDelay (%s) the dispatcher still answered from its cache: its refusals last longer than the CLI says", refusalCacheDelay)
	}
}

var (
	tokenReviewType  = metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"}
	accessReviewType = metav1.TypeMeta{APIVersion: "authorization.k8s.io/v1", Kind: "SubjectAccessReview"}
)

func TestHints_NameWhoToGrant(t *testing.T) {
	jwt := func(claims string) string {
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"alg":"ES256"}`)) + "." + enc([]byte(claims)) + ".c2ln"
	}
	for _, tc := range []struct {
		why, got, want string
	}{
		{"an ingest 403 quotes a ServiceAccount",
			bindHint(refused(`"system:serviceaccount:shop:orders" may not create events.hooks.herald.dev in namespace "billing"`), publisherClusterRole, "billing"),
			"kubectl create rolebinding orders-herald-publisher -n billing --clusterrole=herald-publisher --serviceaccount=shop:orders"},
		{"an endpoint API 403 names a user after forbidden:",
			bindHint(refused(`forbidden: alice@example.com may not get webhookendpoints.hooks.herald.dev in namespace shop`), operatorClusterRole, "shop"),
			"kubectl create rolebinding alice-example.com-herald-operator -n shop --clusterrole=herald-operator --user=alice@example.com"},
		{"an identity without a name gives placeholders, not a made-up user",
			bindHint(refused(`"this identity" may not create events.hooks.herald.dev in namespace "shop"`), publisherClusterRole, "shop"),
			"kubectl create rolebinding <name>-herald-publisher -n shop --clusterrole=herald-publisher --serviceaccount=<namespace>:<name>"},
		{"a ServiceAccount token is renewed for its own ServiceAccount",
			newTokenHint(jwt(`{"sub":"system:serviceaccount:herald-demo:herald-demo-operator"}`), operatorClusterRole, "shop"),
			"export HERALD_TOKEN=$(kubectl create token herald-demo-operator -n herald-demo --audience hooks.herald.dev)"},
		{"any other token is replaced by a new ServiceAccount's",
			newTokenHint("not-a-jwt", operatorClusterRole, "shop"),
			"  kubectl create serviceaccount herald-operator -n shop\n  kubectl create rolebinding herald-operator -n shop --clusterrole=herald-operator --serviceaccount=shop:herald-operator\n  export HERALD_TOKEN=$(kubectl create token herald-operator -n shop --audience hooks.herald.dev)"},
	} {
		if !strings.Contains(tc.got, tc.want) {
			t.Errorf("%s:\n%s\nwant it to contain\n%s", tc.why, tc.got, tc.want)
		}
	}
}

func refused(msg string) string {
	if m := refusedSubject.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	return ""
}
