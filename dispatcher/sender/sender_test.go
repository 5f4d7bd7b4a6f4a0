package sender_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/sender"
	"github.com/herald-dev/herald/dispatcher/signer"
	"github.com/herald-dev/herald/internal/outbound"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func delivery() *sender.Message {
	return &sender.Message{EventID: "evt_1", EventType: "a.b",
		CreatedAt: time.Unix(1700000000, 0), Data: []byte(`{"k":1}`), DeliveryID: "dlv_1", Attempt: 1}
}

func testSigner(t *testing.T) *signer.Signer {
	t.Helper()
	sg, err := signer.New(heraldv1.SignatureStandardWebhooks, "", []byte(secret), nil)
	if err != nil {
		t.Fatal(err)
	}
	return sg
}

func TestSender_OutboundPolicyIsEnforcedAtDialTime(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("a request reached a loopback receiver that the policy forbids")
	}))
	defer srv.Close()
	// A host name resolving to loopback passes the static URL check (it is not a
	// literal address) and must be refused when dialled. The machine's own name
	// usually resolves to loopback through /etc/hosts.
	url := ""
	if host, err := os.Hostname(); err == nil {
		if addrs, err := net.LookupHost(host); err == nil && len(addrs) > 0 && net.ParseIP(addrs[0]).IsLoopback() {
			url = strings.Replace(srv.URL, "127.0.0.1", host, 1)
		}
	}
	t.Run("a name resolving to loopback is refused at dial time", func(t *testing.T) {
		if url == "" {
			t.Skip("this machine's host name does not resolve to loopback")
		}
		target := sender.New(sender.Config{URL: url, Signer: testSigner(t), Policy: outbound.Policy{AllowPlainHTTP: true}, Timeout: 2 * time.Second})
		out := target.Send(context.Background(), delivery())
		if out.OK() || !strings.Contains(out.Err.Error(), "outbound policy") {
			t.Fatalf("outcome = %+v, want refused by the outbound policy", out)
		}
	})
}

func TestSender_TLSWithCABundleAndClientCertificate(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	defer srv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	loop := outbound.Policy{AllowLoopback: true}

	// Without the CA bundle the receiver's certificate is not trusted.
	untrusted := sender.New(sender.Config{URL: srv.URL, Signer: testSigner(t), Policy: loop})
	if out := untrusted.Send(context.Background(), delivery()); out.OK() || !strings.Contains(out.Err.Error(), "certificate") {
		t.Fatalf("without caBundle: %+v, want a certificate error", out)
	}
	// With it, and a client certificate for mutual TLS, the delivery succeeds. The
	// test server's own key pair serves as the client certificate.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("test CA does not parse")
	}
	tlsCfg := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{srv.TLS.Certificates[0]}}
	trusted := sender.New(sender.Config{URL: srv.URL, Signer: testSigner(t), Policy: loop, TLS: tlsCfg})
	if out := trusted.Send(context.Background(), delivery()); !out.OK() || out.StatusCode != http.StatusNoContent {
		t.Fatalf("with caBundle and client cert: %+v", out)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		v    string
		want time.Duration
	}{
		{"120", 2 * time.Minute},
		{"0", 0},
		{"-5", 0},
		{"Mon, 23 Nov 2026 10:01:00 GMT", time.Minute},
		{"Mon, 23 Nov 2026 09:00:00 GMT", 0}, // in the past
		{"soon", 0},
		{"", 0},
	} {
		if got := sender.ParseRetryAfter(c.v, now); got != c.want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", c.v, got, c.want)
		}
	}
}
