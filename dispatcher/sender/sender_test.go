package sender_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
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

// resolver is the test's DNS: receiver.test resolves to loopback, whatever the machine's
// /etc/hosts says.
type resolver map[string]netip.Addr

func (r resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := r[host]; ok {
		return []netip.Addr{a}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestSender_OutboundPolicyIsEnforcedAtDialTime(t *testing.T) {
	var received atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	// A host name passes the static check (it is not an address) and must be refused
	// when it is dialled and turns out to be loopback. The name resolves through the
	// policy's own resolver, so this runs the same on every machine.
	dns := resolver{"receiver.test": netip.MustParseAddr("127.0.0.1")}
	byName := strings.Replace(srv.URL, "127.0.0.1", "receiver.test", 1)
	send := func(p outbound.Policy) sender.Outcome {
		t.Helper()
		target := sender.New(sender.Config{URL: byName, Signer: testSigner(t), Policy: p, Timeout: 5 * time.Second})
		defer target.Close()
		return target.Send(context.Background(), delivery())
	}
	// The error becomes the endpoint's lastAttempt.error: it names the host as written,
	// never the address inside the cluster the name resolved to.
	if out := send(outbound.Policy{AllowPlainHTTP: true, Resolver: dns}); out.OK() ||
		!strings.Contains(out.Err.Error(), `outbound policy: host "receiver.test" resolves to a loopback address`) ||
		strings.Contains(out.Err.Error(), "127.0.0.1") {
		t.Fatalf("a name resolving to loopback: outcome %+v, want refused by the outbound policy as loopback, naming receiver.test only", out)
	}
	// The same name with loopback allowed is delivered: the refusal above came from the
	// policy, not from a name that does not resolve. It is the only request the receiver
	// has seen.
	if out := send(outbound.Policy{AllowPlainHTTP: true, AllowLoopback: true, Resolver: dns}); !out.OK() {
		t.Fatalf("with loopback allowed: outcome %+v, want delivered", out)
	}
	if n := received.Load(); n != 1 {
		t.Fatalf("receiver saw %d requests, want only the allowed one", n)
	}
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
