package cli

import (
	"context"
	"crypto/tls"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/herald-dev/herald/internal/servingcert"
)

// tlsIngest serves the ingest test server's handler over TLS with a certificate of a
// CA of its own, for 127.0.0.1; it returns the server and the CA file.
func tlsIngest(t *testing.T) (*httptest.Server, string, *dispatcherIngest) {
	t.Helper()
	plain, acc := ingestServer(t)
	ca, err := servingcert.NewCA("test dispatcher CA", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := servingcert.Issue(ca, []string{"localhost", "127.0.0.1"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(cert.Cert, cert.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(plain.Config.Handler)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.Cert, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, caFile, acc
}

// An https:// dispatcher is trusted through --certificate-authority or $HERALD_CA_FILE,
// and refused otherwise with the command that fetches its CA; http:// to it is told to
// use https://.
func TestPublish_VerifiesTheDispatchersCertificate(t *testing.T) {
	isolate(t)
	srv, caFile, acc := tlsIngest(t)
	base := []string{"--server", srv.URL, "--token", "producer", "-n", "shop", "--type", "a.b", "--data", "{}"}

	if r := runPublish(t, "", append(base, "--certificate-authority", caFile)...); r.err != nil {
		t.Fatalf("with --certificate-authority: %v", r.err)
	}
	t.Setenv(envHeraldCAFile, caFile)
	if r := runPublish(t, "", base...); r.err != nil {
		t.Fatalf("with %s: %v", envHeraldCAFile, r.err)
	}
	if n := len(acc.received("shop")); n != 2 {
		t.Fatalf("received %d events, want 2", n)
	}

	t.Setenv(envHeraldCAFile, "")
	r := runPublish(t, "", base...)
	want := "presented a certificate the CLI does not trust: pass --certificate-authority or set HERALD_CA_FILE to the dispatcher's CA, e.g.\n  kubectl get configmap herald-dispatcher-ca -n herald-system"
	if r.err == nil || !strings.Contains(r.err.Error(), want) {
		t.Fatalf("without the CA: %v\nwant it to contain %q", r.err, want)
	}
	r = runPublish(t, "", append([]string{"--server", strings.Replace(srv.URL, "https://", "http://", 1)}, base[2:]...)...)
	if r.err == nil || !strings.Contains(r.err.Error(), "serves https: use https:// in --server or HERALD_URL") {
		t.Fatalf("http:// to a TLS dispatcher: %v", r.err)
	}
	if n := len(acc.received("shop")); n != 2 {
		t.Fatalf("received %d events after the refusals, want 2", n)
	}
}

// Without a CA file the CLI trusts the CA the manager publishes, when the kubeconfig's
// user may read it (the chart lets every authenticated user).
func TestPublish_TrustsThePublishedCA(t *testing.T) {
	isolate(t)
	c := startCluster(t)
	srv, caFile, acc := tlsIngest(t)
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: publishedCANamespace}}); err != nil {
		t.Fatal(err)
	}
	c.create(t,
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: publishedCAName, Namespace: publishedCANamespace}, Data: map[string]string{publishedCAKey: string(pem)}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "ca-reader", Namespace: publishedCANamespace},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{publishedCAName}, Verbs: []string{"get"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "ca-reader", Namespace: publishedCANamespace},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "ca-reader"},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "system:authenticated"}}},
	)
	c.token(t, nsDLQ, "ca-reader")
	t.Setenv("KUBECONFIG", tokenKubeconfig(t, c, nsDLQ, c.kubeToken(t, nsDLQ, "ca-reader")))
	eventually(t, 10*time.Second, "the published CA trusted", func() bool {
		return runPublish(t, "", "--server", srv.URL, "--token", "producer", "-n", "shop", "--type", "a.b", "--data", "{}").err == nil
	})
	if n := len(acc.received("shop")); n != 1 {
		t.Fatalf("received %d events, want 1", n)
	}
}
