package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/herald-dev/herald/dispatcher/auth"
	"github.com/herald-dev/herald/internal/testenv"
)

// What the CLI sends the dispatcher when the kubeconfig is all it has: a token the
// kubeconfig's ServiceAccount mints for itself, for Herald's audience only and for ten
// minutes; never the kubeconfig's own token, which the API server would take. Without
// the right to mint, the CLI prints the Role that grants it, and those commands work;
// a user who is not a ServiceAccount is told to pass a ServiceAccount's token.
func TestHeraldCredential_AShortLivedTokenForHeraldNeverTheKubeconfigs(t *testing.T) {
	isolate(t)
	c := startCluster(t)
	ns := nsDLQ
	c.token(t, ns, "minter", publishRule, selfTokenRule("minter"))
	c.token(t, ns, "cannot-mint", publishRule)
	kubeconfigOf := func(sa string) (string, string) {
		tok := c.kubeToken(t, ns, sa)
		return tokenKubeconfig(t, c, ns, tok), tok
	}

	// A receiver standing in for the dispatcher, to see what arrives.
	var mu sync.Mutex
	var sent []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := auth.BearerToken(r)
		mu.Lock()
		sent = append(sent, tok)
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"id":"evt_1","matched":0,"duplicate":false}`))
	}))
	t.Cleanup(srv.Close)

	kc, own := kubeconfigOf("minter")
	t.Setenv("KUBECONFIG", kc)
	if r := runPublish(t, "", "--server", srv.URL, "--type", "a.b", "--data", "1"); r.err != nil {
		t.Fatalf("publish with the kubeconfig's ServiceAccount: %v", r.err)
	}
	mu.Lock()
	got := append([]string(nil), sent...)
	mu.Unlock()
	if len(got) != 1 || got[0] == "" || got[0] == own {
		t.Fatalf("sent %d tokens; the kubeconfig's own: %v", len(got), len(got) == 1 && got[0] == own)
	}
	review := func(audiences ...string) authnv1.TokenReviewStatus {
		tr, err := kubernetes.NewForConfigOrDie(c.env.Config).AuthenticationV1().TokenReviews().Create(context.Background(),
			&authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: got[0], Audiences: audiences}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status
	}
	if st := review(auth.Audience); !st.Authenticated || st.User.Username != "system:serviceaccount:"+ns+":minter" {
		t.Errorf("the token sent, reviewed for Herald's audience: %+v", st)
	}
	if st := review(); st.Authenticated {
		t.Errorf("the token sent works against the API server itself: %+v", st)
	}
	if life := tokenLifetime(t, got[0]); life > heraldTokenLifetime {
		t.Errorf("the token sent lives %ds, want at most %d", life, heraldTokenLifetime)
	}

	// Without the right to mint: the printed commands grant it, and then it works.
	kc, _ = kubeconfigOf("cannot-mint")
	t.Setenv("KUBECONFIG", kc)
	r := runPublish(t, "", "--server", srv.URL, "--type", "a.b", "--data", "1")
	want := "ServiceAccount cli-dlq/cannot-mint may not mint a token of its own for Herald's audience (create on serviceaccounts/token, resourceNames [cannot-mint]); grant it, as a user who may create Roles in cli-dlq:\n" +
		"  kubectl create role cannot-mint-herald-token -n cli-dlq --verb=create --resource=serviceaccounts/token --resource-name=cannot-mint\n" +
		"  kubectl create rolebinding cannot-mint-herald-token -n cli-dlq --role=cannot-mint-herald-token --serviceaccount=cli-dlq:cannot-mint"
	if r.err == nil || !strings.Contains(r.err.Error(), want) {
		t.Fatalf("error %v\nwant it to contain %q", r.err, want)
	}
	assets, err := testenv.Assets()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(selfTokenGrantHint(ns, "cannot-mint"), "\n") {
		args := strings.Fields(strings.TrimSpace(line))[1:]
		cmd := exec.Command(filepath.Join(assets, "kubectl"), args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
	}
	eventually(t, 10*time.Second, "the printed grant to take effect", func() bool {
		return runPublish(t, "", "--server", srv.URL, "--type", "a.b", "--data", "1").err == nil
	})

	// A person (here a client certificate) is told to pass a ServiceAccount's token.
	t.Setenv("KUBECONFIG", c.kubeconfig)
	r = runPublish(t, "", "--server", srv.URL, "-n", ns, "--type", "a.b", "--data", "1")
	want = `no credentials for the dispatcher: the kubeconfig's user "cli-test-admin" is not a ServiceAccount`
	if r.err == nil || !strings.Contains(r.err.Error(), want) || !strings.Contains(r.err.Error(), "kubectl create token herald-publisher -n cli-dlq --audience hooks.herald.dev") {
		t.Fatalf("error %v\nwant it to contain %q and the kubectl create token command", r.err, want)
	}
}

// tokenLifetime is exp - iat of a JWT, read without verifying it.
func tokenLifetime(t *testing.T, token string) int64 {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct{ Exp, Iat int64 }
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims.Exp - claims.Iat
}
