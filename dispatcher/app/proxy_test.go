package app_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/internal/testenv"
)

// forwardProxy is a real HTTP forward proxy, tinyproxy from Debian's packages
// (tinyproxy-bin; .ci/run installs it, listed in .ci/debian-packages), on 127.0.0.1 with Basic authentication. Its log
// says which tunnels it opened.
type forwardProxy struct {
	addr string
	log  string
}

func startForwardProxy(t *testing.T, user, password string) *forwardProxy {
	t.Helper()
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		testenv.Unavailable(t, t.Name(), "tinyproxy is not installed (apt-get install tinyproxy-bin)")
	}
	// A free port: tinyproxy takes its port from the configuration only.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	p := &forwardProxy{addr: fmt.Sprintf("127.0.0.1:%d", port), log: filepath.Join(dir, "tinyproxy.log")}
	// No ConnectPort line: CONNECT to any port (the receivers listen on random ones).
	conf := fmt.Sprintf("Port %d\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\nAllow 127.0.0.1\nLogLevel Info\nLogFile %q\nBasicAuth %s %s\n",
		port, p.log, user, password)
	confPath := filepath.Join(dir, "tinyproxy.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-d", "-c", confPath)
	out, _ := os.Create(filepath.Join(dir, "tinyproxy.out"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting tinyproxy: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		out.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", p.addr)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "tinyproxy.out"))
			t.Fatalf("tinyproxy did not listen on %s within 10s: %v\n%s", p.addr, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tunnels lists the CONNECT requests the proxy received ("127.0.0.1:41234").
func (p *forwardProxy) tunnels() []string {
	b, _ := os.ReadFile(p.log)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if _, rest, ok := strings.Cut(line, "): CONNECT "); ok {
			target, _, _ := strings.Cut(rest, " ")
			out = append(out, target)
		}
	}
	return out
}

// hostsResolver answers for the test's own names and nothing else, so that no check
// depends on the machine's DNS: receiver.test is a receiver on loopback, and
// metadata.test is the cloud metadata address (where a forward proxy would gladly go).
type hostsResolver map[string]netip.Addr

func (h hostsResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := h[host]; ok {
		return []netip.Addr{a}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// TestDispatcher_DeliversThroughARealForwardProxyThatCannotWidenThePolicy runs the
// dispatcher with the operator's proxy (--egress-proxy) and endpoints with proxies of
// their own, all through a real tinyproxy:
//   - an endpoint without spec.proxy goes through the operator's proxy, which opens a
//     tunnel to the address Herald resolved, not to the name (no DNS answer at the proxy
//     can differ from the one judged);
//   - a host the no-proxy rules name goes directly;
//   - spec.proxy with credentials from a basic-auth Secret goes through, and wrong
//     credentials fail with the proxy's refusal on status, the password in no message;
//   - a destination the policy refuses (a name resolving to the metadata address) is
//     refused before the proxy is asked: no tunnel is opened for it;
//   - a proxy at a metadata address is itself refused (InvalidURL), nothing held lost.
func TestDispatcher_DeliversThroughARealForwardProxyThatCannotWidenThePolicy(t *testing.T) {
	proxy := startForwardProxy(t, "herald", "pr0xy-pass")
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "egress"
	s := newSink(t)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "http://"))
	resolver := hostsResolver{
		"receiver.test": netip.MustParseAddr("127.0.0.1"),
		"direct.test":   netip.MustParseAddr("127.0.0.1"),
		"metadata.test": netip.MustParseAddr("169.254.169.254"),
	}

	fixture(t, c, ns, "via-operator", heraldv1.WebhookEndpointSpec{URL: "http://receiver.test:" + port + "/operator", Timeout: "5s",
		Retry: heraldv1.RetrySpec{Schedule: []string{"200ms"}}})
	endpoint := func(name string, spec heraldv1.WebhookEndpointSpec) {
		spec.Timeout = "5s"
		spec.Retry = heraldv1.RetrySpec{Schedule: []string{"200ms"}}
		mustCreate(t, c,
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-signing", Namespace: ns}, StringData: map[string]string{"secret": secretV1}},
			&heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec},
			&heraldv1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Name: "to-" + name, Namespace: ns}, Spec: heraldv1.WebhookSubscriptionSpec{
				EndpointRef: heraldv1.LocalObjectReference{Name: name}, EventTypes: []string{"*"}}})
	}
	mustCreate(t, c,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "proxy-login", Namespace: ns}, Type: corev1.SecretTypeBasicAuth,
			StringData: map[string]string{"username": "herald", "password": "pr0xy-pass"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "proxy-wrong", Namespace: ns}, Type: corev1.SecretTypeBasicAuth,
			StringData: map[string]string{"username": "herald", "password": "not-the-pass"}})
	endpoint("direct", heraldv1.WebhookEndpointSpec{URL: "http://direct.test:" + port + "/direct"})
	endpoint("own-proxy", heraldv1.WebhookEndpointSpec{URL: "http://receiver.test:" + port + "/own",
		Proxy: &heraldv1.ProxySpec{URL: "http://" + proxy.addr, CredentialsSecretRef: &heraldv1.LocalObjectReference{Name: "proxy-login"}}})
	endpoint("wrong-login", heraldv1.WebhookEndpointSpec{URL: "http://receiver.test:" + port + "/wrong",
		Proxy: &heraldv1.ProxySpec{URL: "http://" + proxy.addr, CredentialsSecretRef: &heraldv1.LocalObjectReference{Name: "proxy-wrong"}}})
	endpoint("metadata", heraldv1.WebhookEndpointSpec{URL: "http://metadata.test:" + port + "/latest/meta-data"})
	endpoint("proxy-at-metadata", heraldv1.WebhookEndpointSpec{URL: "http://receiver.test:" + port + "/never",
		Proxy: &heraldv1.ProxySpec{URL: "http://169.254.169.254:3128"}})

	d := startDispatcherWith(t, func(o *app.Options) {
		o.Config.Outbound.Resolver = resolver
		// As `herald dispatcher --egress-proxy ... --egress-no-proxy direct.test` with its
		// login in the environment.
		o.Config.Egress = config.Egress{Proxy: "http://" + proxy.addr, NoProxy: []string{"direct.test"}}
		o.EgressUsername, o.EgressPassword = "herald", "pr0xy-pass"
	})
	d.publish(ns, "evt_proxied", "order.created")

	for path, what := range map[string]string{"/operator": "the operator's proxy", "/direct": "no-proxy", "/own": "spec.proxy"} {
		deadline := time.Now().Add(20 * time.Second)
		for !s.hasPath(path) {
			if time.Now().After(deadline) {
				t.Fatalf("nothing arrived at %s (%s) within 20s; tunnels: %v", path, what, proxy.tunnels())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Every tunnel went to the address Herald judged, by IP: two deliveries through a
	// proxy (the operator's, spec.proxy), none for no-proxy, none for the metadata name.
	want := "127.0.0.1:" + port
	tunnels := proxy.tunnels()
	n := 0
	for _, tun := range tunnels {
		if tun != want {
			t.Errorf("the proxy opened a tunnel to %q; every tunnel must go to the judged address %s", tun, want)
		}
		n++
	}
	if n < 2 {
		t.Errorf("tunnels %v: want one for the operator's proxy and one for spec.proxy", tunnels)
	}

	// tinyproxy 1.11 answers a CONNECT with wrong credentials 401, where RFC 9110 says
	// 407; either is the proxy refusing the login, and the status says which.
	ep := waitEndpoint(t, c, ns, "wrong-login", "the proxy's refusal on status", func(e *heraldv1.WebhookEndpoint) bool {
		return e.Status.LastAttempt != nil && (strings.Contains(e.Status.LastAttempt.Error, "the proxy answered 407") ||
			strings.Contains(e.Status.LastAttempt.Error, "the proxy answered 401"))
	})
	if strings.Contains(ep.Status.LastAttempt.Error, "not-the-pass") || strings.Contains(ep.Status.LastAttempt.Error, "pr0xy-pass") {
		t.Errorf("a proxy password reached the status: %q", ep.Status.LastAttempt.Error)
	}
	ep = waitEndpoint(t, c, ns, "metadata", "a refused destination fails before the proxy", func(e *heraldv1.WebhookEndpoint) bool {
		return e.Status.LastAttempt != nil && strings.Contains(e.Status.LastAttempt.Error, "metadata")
	})
	if !strings.Contains(ep.Status.LastAttempt.Error, `"metadata.test"`) {
		t.Errorf("refusal %q does not name the host as written", ep.Status.LastAttempt.Error)
	}
	waitDelivering(t, c, ns, "proxy-at-metadata", metav1.ConditionFalse, heraldv1.ReasonInvalidURL)
	for _, tun := range proxy.tunnels() {
		if strings.HasPrefix(tun, "169.254.") {
			t.Errorf("the proxy was asked for a tunnel to %s", tun)
		}
	}
	if s.hasPath("/never") || s.hasPath("/wrong") {
		t.Errorf("a delivery arrived that the proxy or the policy must have stopped")
	}
}

// hasPath reports whether a request for path arrived.
func (s *sink) hasPath(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.reqs {
		if r.URL.Path == path {
			return true
		}
	}
	return false
}
