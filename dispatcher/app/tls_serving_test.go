package app_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/internal/servingcert"
)

// With --tls-cert-file and --tls-key-file the ingest API answers over TLS only: a
// client that trusts the CA publishes and the event is delivered; plain HTTP is
// answered 400, and a client that does not trust the CA refuses the server.
func TestDispatcher_ServesTheAPIOverTLS(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca, err := servingcert.NewCA("herald test CA", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := servingcert.Issue(ca, []string{"localhost", "127.0.0.1"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	files := app.TLSFiles{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	for path, b := range map[string][]byte{files.CertFile: cert.Cert, files.KeyFile: cert.Key} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := newSink(t)
	ns := "tls-serving"
	fixture(t, c, ns, "billing", heraldv1.WebhookEndpointSpec{URL: s.URL})
	d := startDispatcherWith(t, func(o *app.Options) { o.Config.Serving.TLS = files })
	addr := strings.TrimPrefix(d.url, "http://")

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.Cert)
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	post := func(hc *http.Client, scheme, id string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodPost, scheme+"://"+addr+"/v1/namespaces/"+ns+"/events",
			bytes.NewReader([]byte(`{"id":"`+id+`","type":"invoice.paid","data":{}}`)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+apiKey(t, ns))
		return hc.Do(req)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := post(trusting, "https", "evt_tls")
		if err != nil {
			t.Fatalf("publishing over TLS: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishing over TLS: %d", resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.waitEvent(t, "evt_tls", 20*time.Second)

	// Go's server answers plain HTTP on a TLS port itself, and nothing is published.
	resp, err := post(&http.Client{Timeout: 5 * time.Second}, "http", "evt_plain")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "Client sent an HTTP request to an HTTPS server") {
		t.Errorf("plain HTTP answered %d %s", resp.StatusCode, body)
	}
	if _, err := post(http.DefaultClient, "https", "evt_untrusted"); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("a client without the CA: %v, want the certificate refused", err)
	}
}
