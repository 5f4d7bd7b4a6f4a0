package servingcert_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/servingcert"
)

// A certificate issued here serves TLS that a client trusting only the CA accepts, for
// the names it was issued for, and not for others.
func TestIssue_ServesTLSTheCAVerifies(t *testing.T) {
	now := time.Now()
	ca, err := servingcert.NewCA("test CA", servingcert.CAValidity, now)
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{"herald-dispatcher.herald-system.svc", "localhost", "127.0.0.1"}
	cert, err := servingcert.Issue(ca, hosts, servingcert.ServingValidity, now)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(cert.Cert, cert.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.Cert)
	get := func(serverName string) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName}}}
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	for _, name := range []string{"127.0.0.1", "localhost", "herald-dispatcher.herald-system.svc"} {
		if err := get(name); err != nil {
			t.Errorf("as %s: %v", name, err)
		}
	}
	if err := get("elsewhere.example.com"); err == nil || !strings.Contains(err.Error(), "certificate is valid for") {
		t.Errorf("a name it was not issued for: %v", err)
	}
	other, _ := servingcert.NewCA("other", time.Hour, now)
	if !servingcert.Serves(cert, ca.Cert, hosts, now) {
		t.Error("Serves: a fresh certificate of the CA for these hosts must go on serving")
	}
	for what, ok := range map[string]bool{
		"another CA":        servingcert.Serves(cert, other.Cert, hosts, now),
		"other hosts":       servingcert.Serves(cert, ca.Cert, hosts[:2], now),
		"due for renewal":   servingcert.Serves(cert, ca.Cert, hosts, now.Add(servingcert.ServingValidity*2/3+time.Hour)),
		"a key of another":  servingcert.Serves(servingcert.Pair{Cert: cert.Cert, Key: ca.Key}, ca.Cert, hosts, now),
		"a certificate CA":  servingcert.Serves(ca, ca.Cert, hosts, now),
		"nothing at all":    servingcert.Serves(servingcert.Pair{}, ca.Cert, hosts, now),
		"an expired CA":     servingcert.Serves(cert, ca.Cert, hosts, now.Add(servingcert.CAValidity+time.Hour)),
		"a bundle of none":  servingcert.Serves(cert, nil, hosts, now),
		"renewal threshold": servingcert.Serves(cert, ca.Cert, hosts, now.Add(servingcert.ServingValidity)),
	} {
		if ok {
			t.Errorf("Serves with %s: true, want false", what)
		}
	}
}

func TestBundle_KeepsLiveCAsOnce(t *testing.T) {
	now := time.Now()
	old, _ := servingcert.NewCA("old", time.Hour, now.Add(-2*time.Hour))
	cur, _ := servingcert.NewCA("current", time.Hour, now)
	next, _ := servingcert.NewCA("next", time.Hour, now)
	b := servingcert.Bundle(now, cur.Cert, old.Cert, next.Cert, cur.Cert)
	if bytes.Count(b, []byte("BEGIN CERTIFICATE")) != 2 || !bytes.Contains(b, cur.Cert) || !bytes.Contains(b, next.Cert) {
		t.Errorf("bundle:\n%s", b)
	}
}
