package outbound_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/outbound"
)

var (
	strict   = outbound.Policy{}
	plain    = outbound.Policy{AllowPlainHTTP: true}
	loopback = outbound.Policy{AllowLoopback: true}
	private  = outbound.Policy{AllowPrivateNetworks: true}
	anything = outbound.Policy{AllowPlainHTTP: true, AllowPrivateNetworks: true, AllowLoopback: true}
)

// TestPolicy_CheckURL is the static check the manager makes for Ready and the sender
// makes before it builds a target. want is "" when the URL is allowed, else a word the
// refusal must contain.
func TestPolicy_CheckURL(t *testing.T) {
	for _, c := range []struct {
		url    string
		policy outbound.Policy
		want   string
		why    string
	}{
		{"https://example.com/hook", strict, "", "a public https name is what the strictest policy is for"},
		{"http://example.com/hook", strict, "plain http", "http needs AllowPlainHTTP"},
		{"http://example.com/hook", plain, "", "and AllowPlainHTTP allows it"},
		{"ftp://example.com/", anything, "scheme", "only http and https are webhooks"},
		{"https:///hook", anything, "no host", "a URL without a host"},
		{"https://user:pw@example.com/", anything, "credentials", "credentials in the URL would be logged; headers from Secrets are the way"},
		{"https://metadata.google.internal/", anything, `host "metadata.google.internal" is a cloud metadata address, which is never allowed`, "the GCE metadata name, whatever the policy"},
		{"https://METADATA.google.internal./", anything, "cloud metadata address", "names compare case-insensitively and without the root dot"},
		{"https://localhost/", strict, `host "localhost" is a loopback address, which the outbound policy does not allow`, "localhost by name"},
		{"https://api.localhost/", strict, "loopback address", "every *.localhost name is loopback (RFC 6761)"},
		{"https://localhost/", loopback, "", "allowed for local runs"},

		// Loopback in every form inet_aton and browsers read as 127.0.0.1; the refusal
		// names the host as written.
		{"https://127.0.0.1/", strict, `host "127.0.0.1" is a loopback address`, "the dotted quad"},
		{"https://127.1/", strict, `host "127.1" is a loopback address`, "two parts"},
		{"https://127.0.1/", strict, `host "127.0.1" is a loopback address`, "three parts"},
		{"https://2130706433/", strict, `host "2130706433" is a loopback address`, "one decimal number"},
		{"https://0x7f000001/", strict, `host "0x7f000001" is a loopback address`, "one hexadecimal number"},
		{"https://0177.0.0.1/", strict, `host "0177.0.0.1" is a loopback address`, "octal first part"},
		{"https://127.0.0.1./", strict, "loopback address", "a trailing dot"},
		{"https://127.0.0.%31/", anything, "does not parse", "url.Parse refuses a percent-encoded digit in a host, so no decoded form slips past"},
		{"https://127.1:8443/", loopback, "", "recognised as loopback, not refused as odd: AllowLoopback allows it"},
		{"https://[::1]/", strict, `host "::1" is a loopback address`, "IPv6 loopback"},
		{"https://[::ffff:127.0.0.1]/", strict, "IPv4-mapped of a loopback address", "IPv4-mapped IPv6 reaches IPv4 loopback"},
		{"https://[::ffff:7f00:1]/", strict, "IPv4-mapped of a loopback address", "the same mapped address in hex"},
		{"https://[::ffff:127.0.0.1]/", loopback, "", "and AllowLoopback allows the mapped form too"},

		// Private networks: allowed by AllowPrivateNetworks.
		{"https://10.1.2.3/", strict, `host "10.1.2.3" is a private address (RFC 1918), which the outbound policy does not allow`, "RFC 1918 10/8"},
		{"https://172.16.0.1/", strict, "private address (RFC 1918)", "RFC 1918 172.16/12"},
		{"https://192.168.1.1/", strict, "private address (RFC 1918)", "RFC 1918 192.168/16"},
		{"https://100.64.0.1/", strict, "shared address (100.64.0.0/10, carrier-grade NAT)", "CGNAT 100.64/10, used by some cluster networks"},
		{"https://198.18.0.1/", strict, "benchmarking address (198.18.0.0/15)", "RFC 2544 benchmarking, used inside some clouds and labs"},
		{"https://198.19.255.254/", strict, "benchmarking address (198.18.0.0/15)", "the top of the /15"},
		{"https://0x0a000001/", strict, `host "0x0a000001" is a private address (RFC 1918)`, "10.0.0.1 in hexadecimal, named as written"},
		{"https://10.1/", strict, "private address (RFC 1918)", "10.0.0.1 in two parts"},
		{"https://[fd12:3456::1]/", strict, "unique-local address (fc00::/7)", "IPv6 unique-local fc00::/7"},
		{"https://[fc00::1]/", strict, "unique-local address (fc00::/7)", "the other half of fc00::/7"},
		{"https://[fec0::1]/", strict, "site-local address (fec0::/10)", "deprecated site-local IPv6, still routed inside some networks"},
		{"https://[::ffff:10.0.0.1]/", strict, "IPv4-mapped of a private address (RFC 1918)", "IPv4-mapped private"},
		{"https://10.1.2.3/", private, "", "AllowPrivateNetworks allows them"},
		{"https://198.18.0.1/", private, "", "benchmarking addresses too"},
		{"https://[fec0::1]/", private, "", "and site-local"},
		{"https://010.0.0.1/", strict, "", "octal 010 is 8: 8.0.0.1 is public, and that is where it would be dialled"},

		// Link-local and metadata: refused whatever the policy.
		{"https://169.254.169.254/latest/meta-data/", anything, `host "169.254.169.254" is a cloud metadata address, which is never allowed`, "AWS, GCP, Azure, OpenStack metadata"},
		{"https://0xa9fea9fe/", anything, `host "0xa9fea9fe" is a cloud metadata address`, "the same in hexadecimal"},
		{"https://2852039166/", anything, "cloud metadata address", "the same in decimal"},
		{"https://169.254.43518/", anything, "cloud metadata address", "the same in two parts"},
		{"https://[::ffff:169.254.169.254]/", anything, "IPv4-mapped of a cloud metadata address", "the same IPv4-mapped"},
		{"https://[fd00:ec2::254]/", anything, "cloud metadata address", "AWS metadata over IPv6, inside the ULA range that AllowPrivateNetworks opens"},
		{"https://[fd00:ec2::23]/", anything, "cloud metadata address", "AWS's IPv6 DNS resolver on Nitro, inside the ULA range"},
		{"https://[fd20:ce::254]/", anything, "cloud metadata address", "GCP metadata over IPv6, inside the ULA range"},
		{"https://100.100.100.200/", anything, "cloud metadata address", "Alibaba metadata, inside the CGNAT range"},
		{"https://168.63.129.16/", anything, "cloud metadata address", "Azure's WireServer, a public address that hands out the VM's configuration"},
		{"https://169.254.1.1/", anything, "link-local address", "other IPv4 link-local (ECS task metadata lives here too)"},
		{"https://[fe80::1%25eth0]/", anything, "link-local address", "IPv6 link-local with a zone"},

		// Not destinations at all.
		{"https://0.0.0.0/", anything, "address of this network (0.0.0.0/8)", "Linux connects 0.0.0.0 to loopback"},
		{"https://0/", anything, "address of this network (0.0.0.0/8)", "0.0.0.0 as one number"},
		{"https://0.1.2.3/", anything, "address of this network (0.0.0.0/8)", "0.0.0.0/8 is this network, no destination"},
		{"https://[::]/", anything, "unspecified address", "IPv6 unspecified"},
		{"https://239.1.2.3/", anything, "multicast address", "IPv4 multicast"},
		{"https://[ff02::1]/", anything, "multicast address", "IPv6 multicast"},
		{"https://240.0.0.1/", anything, "reserved address (240.0.0.0/4)", "reserved for future use, not routed"},
		{"https://255.255.255.255/", anything, "reserved address (240.0.0.0/4)", "the limited broadcast address"},

		// Translation ranges: the IPv4 address inside is judged by the IPv4 rules, so a
		// NAT64 or 6to4 gateway cannot be used to reach what the IPv4 rules refuse, and a
		// public IPv4 address through them is allowed.
		{"https://[64:ff9b::a9fe:a9fe]/", anything, "NAT64 (64:ff9b::/96) of a cloud metadata address", "NAT64 to the metadata service"},
		{"https://[64:ff9b::127.0.0.1]/", strict, "NAT64 (64:ff9b::/96) of a loopback address", "NAT64 to loopback"},
		{"https://[64:ff9b::10.0.0.1]/", strict, "NAT64 (64:ff9b::/96) of a private address (RFC 1918)", "NAT64 to a private address"},
		{"https://[64:ff9b::10.0.0.1]/", private, "", "which AllowPrivateNetworks allows, as it allows 10.0.0.1"},
		{"https://[64:ff9b::93.184.215.14]/", strict, "", "NAT64 to a public address is how an IPv6-only cluster reaches the IPv4 internet"},
		{"https://[64:ff9b:1::93.184.215.14]/", strict, "local-use NAT64 address (64:ff9b:1::/48)", "a local-use NAT64 prefix is the operator's own network"},
		{"https://[64:ff9b:1::a9fe:a9fe]/", anything, "NAT64 (64:ff9b:1::/48) of a cloud metadata address", "with the IPv4 address at the end (/96 layout)"},
		{"https://[64:ff9b:1:5db8:d7:e00::]/", private, "", "a public IPv4 address after a /48 prefix: the zeros where other layouts would put it refuse nothing"},
		{"https://[64:ff9b:1:a9fe:a9:fe00::]/", anything, "NAT64 (64:ff9b:1::/48) of a cloud metadata address", "with the IPv4 address after a /48 prefix, around the u octet"},
		{"https://[2002:a9fe:a9fe::1]/", anything, "6to4 (2002::/16) of a cloud metadata address", "6to4 embeds the IPv4 address after 2002:"},
		{"https://[2002:7f00:1::1]/", strict, "6to4 (2002::/16) of a loopback address", "6to4 of loopback"},
		{"https://[2002:5db8:d70e::1]/", strict, "", "6to4 of a public address"},
		{"https://[::a9fe:a9fe]/", anything, "IPv4-compatible of a cloud metadata address", "deprecated IPv4-compatible ::a.b.c.d"},
		{"https://[::127.0.0.1]/", strict, "IPv4-compatible of a loopback address", "IPv4-compatible loopback"},
		{"https://[::ffff:0:a9fe:a9fe]/", anything, "IPv4-translated of a cloud metadata address", "SIIT's IPv4-translated form"},
		{"https://[2001:0:5db8:d70e::5601:5601]/", anything, "Teredo (2001::/32) of a cloud metadata address", "Teredo's client address is the IPv4 address with every bit inverted"},
		{"https://[2001:0:7f00:1::a220:f1f1]/", strict, "Teredo (2001::/32) of a loopback address", "Teredo whose server address is loopback"},
		{"https://[2001:0:5db8:d70e::a247:28f1]/", strict, "", "Teredo between public addresses"},

		// Hosts a browser refuses as malformed addresses; a resolver might read them anyhow.
		{"https://1.2.3.4.5/", anything, "not a valid IPv4", "five parts"},
		{"https://256.0.0.1/", anything, "not a valid IPv4", "a part above 255"},
		{"https://example.0x10/", anything, "not a valid IPv4", "a hexadecimal last label"},
		{"https://1.2.3.example/", strict, "", "a name that starts with numbers is still a name"},
	} {
		t.Run(c.url+"/"+c.why, func(t *testing.T) {
			err := c.policy.CheckURL(c.url)
			if c.want == "" {
				if err != nil {
					t.Fatalf("CheckURL(%s) with %+v: %v; want allowed (%s)", c.url, c.policy, err, c.why)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("CheckURL(%s) with %+v = %v; want a refusal mentioning %q (%s)", c.url, c.policy, err, c.want, c.why)
			}
		})
	}
}

// resolver answers from a table, one answer per lookup in turn (the last repeats), and
// counts lookups, so a test can say what DNS said at each step.
type resolver struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	lookups map[string]int
}

func newResolver(answers map[string][]string) *resolver {
	r := &resolver{answers: map[string][][]netip.Addr{}, lookups: map[string]int{}}
	for host, seq := range answers {
		for _, a := range seq {
			var addrs []netip.Addr
			for _, s := range strings.Split(a, ",") {
				addrs = append(addrs, netip.MustParseAddr(s))
			}
			r.answers[host] = append(r.answers[host], addrs)
		}
	}
	return r
}

func (r *resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	n := r.lookups[host]
	r.lookups[host]++
	return seq[min(n, len(seq)-1)], nil
}

func (r *resolver) count(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups[host]
}

// receiver is a loopback TCP listener. Its accepts are in arrival order, so after a
// refused dial, the next connection it accepts being the test's own probe proves the
// refused dial never connected — no waiting for something not to happen.
type receiver struct {
	ln   net.Listener
	port string
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return &receiver{ln: ln, port: port}
}

// accept returns the remote address of the next connection.
func (r *receiver) accept(t *testing.T) string {
	t.Helper()
	if tl, ok := r.ln.(*net.TCPListener); ok {
		_ = tl.SetDeadline(time.Now().Add(5 * time.Second))
	}
	c, err := r.ln.Accept()
	if err != nil {
		t.Fatalf("accepting: %v", err)
	}
	defer c.Close()
	return c.RemoteAddr().String()
}

// assertNothingArrived proves that no connection reached the receiver before now.
func (r *receiver) assertNothingArrived(t *testing.T) {
	t.Helper()
	probe, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", r.port))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if got := r.accept(t); got != probe.LocalAddr().String() {
		t.Fatalf("a connection from %s reached the receiver before the probe from %s", got, probe.LocalAddr())
	}
}

func dial(p outbound.Policy, addr string) (net.Conn, error) {
	return p.DialContext(&net.Dialer{Timeout: 5 * time.Second})(context.Background(), "tcp", addr)
}

// TestPolicy_DialTimeChecksEveryResolvedAddress: the name passes CheckURL (it is a
// name), so only the dial can stop it. Every row's resolver is the test's own.
func TestPolicy_DialTimeChecksEveryResolvedAddress(t *testing.T) {
	for _, c := range []struct {
		why     string
		policy  outbound.Policy
		answer  string // comma-separated addresses receiver.test resolves to
		want    string // "" when the dial must reach the loopback receiver
		refused bool
	}{
		{"a name resolving to loopback", plain, "127.0.0.1", `host "receiver.test" resolves to a loopback address`, true},
		{"a name resolving to IPv6 loopback", plain, "::1", "resolves to a loopback address", true},
		{"a name resolving to IPv4-mapped loopback is judged as the IPv4 address it dials", plain, "::ffff:127.0.0.1", "resolves to a loopback address", true},
		{"a name resolving to a private address", plain, "10.0.0.1", "resolves to a private address (RFC 1918)", true},
		{"a name resolving to a unique-local address", plain, "fd12::1", "resolves to a unique-local address (fc00::/7)", true},
		{"a name resolving to NAT64 of a private address", plain, "64:ff9b::10.0.0.1", "resolves to NAT64 (64:ff9b::/96) of a private address (RFC 1918)", true},
		{"a name resolving to the metadata address, whatever the policy", anything, "169.254.169.254", "resolves to a cloud metadata address, which is never allowed", true},
		{"a name resolving to the IPv6 metadata address, whatever the policy", anything, "fd00:ec2::254", "cloud metadata address", true},
		{"a name resolving to several refused addresses names the rule of the first", plain, "10.0.0.1,127.0.0.1", "private address (RFC 1918)", true},
		{"refused addresses are skipped and an allowed one is dialled", loopback, "169.254.169.254,127.0.0.1", "", false},
		{"a mapped IPv4 answer is dialled as plain IPv4", loopback, "::ffff:127.0.0.1", "", false},
	} {
		t.Run(c.why, func(t *testing.T) {
			recv := newReceiver(t)
			res := newResolver(map[string][]string{"receiver.test": {c.answer}})
			p := c.policy
			p.Resolver = res
			if err := p.CheckURL("http://receiver.test:" + recv.port + "/"); err != nil && !strings.Contains(err.Error(), "plain http") {
				t.Fatalf("the static check must not judge a name: %v", err)
			}
			conn, err := dial(p, net.JoinHostPort("receiver.test", recv.port))
			if res.count("receiver.test") != 1 {
				t.Fatalf("resolver consulted %d times, want once", res.count("receiver.test"))
			}
			if !c.refused {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer conn.Close()
				if got := recv.accept(t); got != conn.LocalAddr().String() {
					t.Fatalf("receiver accepted %s, want the dial from %s", got, conn.LocalAddr())
				}
				return
			}
			if err == nil {
				conn.Close()
				t.Fatalf("dial succeeded; want it refused by the outbound policy mentioning %q", c.want)
			}
			if !strings.Contains(err.Error(), "outbound policy") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("dial error = %v; want the outbound policy mentioning %q", err, c.want)
			}
			// The message reaches the endpoint's status: it names the host as written and
			// never the address the name resolved to.
			for _, a := range strings.Split(c.answer, ",") {
				if strings.Contains(err.Error(), a) {
					t.Fatalf("dial error = %v; it names the resolved address %s", err, a)
				}
			}
			recv.assertNothingArrived(t)
		})
	}
}

// TestPolicy_AFailedDialNamesTheHostAsWritten: a dial that the policy allows but that
// fails (nothing listens) reaches the endpoint's status too; it names the host and port
// of the URL, not the address inside the cluster the name resolved to.
func TestPolicy_AFailedDialNamesTheHostAsWritten(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close() // nothing listens on the port any more
	p := anything
	p.Resolver = newResolver(map[string][]string{"closed.test": {"127.0.0.1"}})
	conn, err := dial(p, net.JoinHostPort("closed.test", port))
	if err == nil {
		conn.Close()
		t.Fatal("dial succeeded on a closed port")
	}
	if !strings.Contains(err.Error(), "closed.test:"+port) || strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("dial error = %v; want it to name closed.test:%s and not the address it resolved to", err, port)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial error = %v; want the refused connection kept for callers that classify it", err)
	}
}

// TestPolicy_RebindingIsCaughtAtDialTime: a name resolves to a public address when it
// is checked and to loopback when it is dialled (DNS rebinding). The first check
// passing must not let the dial through.
func TestPolicy_RebindingIsCaughtAtDialTime(t *testing.T) {
	recv := newReceiver(t)
	res := newResolver(map[string][]string{"rebind.test": {"93.184.215.14", "127.0.0.1"}})
	p := outbound.Policy{AllowPlainHTTP: true, Resolver: res}
	if err := p.CheckHost(context.Background(), "rebind.test"); err != nil {
		t.Fatalf("first check while the name resolves to a public address: %v", err)
	}
	conn, err := dial(p, net.JoinHostPort("rebind.test", recv.port))
	if err == nil {
		conn.Close()
		t.Fatal("dial succeeded after the name rebound to loopback")
	}
	if !strings.Contains(err.Error(), "outbound policy") || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("dial error = %v; want refused by the outbound policy as loopback", err)
	}
	if n := res.count("rebind.test"); n != 2 {
		t.Fatalf("resolver consulted %d times, want twice: once to check, once to dial", n)
	}
	recv.assertNothingArrived(t)
}

// TestPolicy_NumericHostsAreDialledAsTheAddressTheyAre: an inet_aton form never goes to
// the resolver (which might fail on it, or read it differently) and is judged as the
// address it denotes.
func TestPolicy_NumericHostsAreDialledAsTheAddressTheyAre(t *testing.T) {
	for _, host := range []string{"127.1", "127.0.1", "2130706433", "0x7f000001", "0177.0.0.1"} {
		t.Run(host, func(t *testing.T) {
			recv := newReceiver(t)
			res := newResolver(nil)
			addr := net.JoinHostPort(host, recv.port)

			strictRes := strict
			strictRes.Resolver = res
			if conn, err := dial(strictRes, addr); err == nil || !strings.Contains(err.Error(), "loopback") {
				if conn != nil {
					conn.Close()
				}
				t.Fatalf("dial %s under the strict policy = %v; want refused as loopback", addr, err)
			}
			recv.assertNothingArrived(t)

			allowed := loopback
			allowed.Resolver = res
			conn, err := dial(allowed, addr)
			if err != nil {
				t.Fatalf("dial %s with loopback allowed: %v", addr, err)
			}
			defer conn.Close()
			if got := recv.accept(t); got != conn.LocalAddr().String() {
				t.Fatalf("receiver accepted %s, want the dial from %s", got, conn.LocalAddr())
			}
			if n := res.count(host); n != 0 {
				t.Fatalf("resolver consulted %d times for a numeric host", n)
			}
		})
	}
}

// TestPolicy_CheckHost is the resolving check: it passes when a dial would go ahead.
func TestPolicy_CheckHost(t *testing.T) {
	res := newResolver(map[string][]string{
		"public.test":  {"93.184.215.14"},
		"cluster.test": {"10.96.0.10"},
		"mixed.test":   {"10.96.0.10,93.184.215.14"},
	})
	for _, c := range []struct {
		host   string
		policy outbound.Policy
		want   string
		why    string
	}{
		{"public.test", strict, "", "a public answer"},
		{"cluster.test", strict, "private", "a Service IP needs AllowPrivateNetworks"},
		{"cluster.test", private, "", "and AllowPrivateNetworks allows it"},
		{"mixed.test", strict, "", "one allowed address is enough: the dial skips the others"},
		{"missing.test", strict, "no such host", "the resolver's error is kept"},
		{"127.1", strict, "loopback", "numeric hosts are judged without the resolver"},
		{"1.2.3.4.5", strict, "not a valid IPv4", "malformed addresses are refused"},
	} {
		t.Run(c.host+"/"+c.why, func(t *testing.T) {
			p := c.policy
			p.Resolver = res
			err := p.CheckHost(context.Background(), c.host)
			if c.want == "" {
				if err != nil {
					t.Fatalf("CheckHost(%s): %v", c.host, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("CheckHost(%s) = %v; want an error mentioning %q", c.host, err, c.want)
			}
			if c.host == "missing.test" {
				var dnsErr *net.DNSError
				if !errors.As(err, &dnsErr) {
					t.Fatalf("CheckHost(%s) = %v; want the *net.DNSError wrapped", c.host, err)
				}
			}
		})
	}
}

// TestPolicy_ControlRefusesWhatTheDialerIsAskedToDial covers the last line of defence,
// which a dialer other than DialContext's can use on its own.
func TestPolicy_ControlRefusesWhatTheDialerIsAskedToDial(t *testing.T) {
	for _, c := range []struct {
		addr string
		want string
	}{
		{"127.0.0.1:80", "loopback"},
		{"[::1]:80", "loopback"},
		{"[::ffff:169.254.169.254]:80", "metadata"},
		{"example.com:80", "not an IP"},
	} {
		if err := strict.Control("tcp", c.addr, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Control(%s) = %v; want %q", c.addr, err, c.want)
		}
	}
	if err := strict.Control("tcp", "93.184.215.14:443", nil); err != nil {
		t.Errorf("Control on a public address: %v", err)
	}
}

func Example() {
	p := outbound.Policy{AllowPlainHTTP: true}
	fmt.Println(p.CheckURL("http://0x7f000001/"))
	// Output: host "0x7f000001" is a loopback address, which the outbound policy does not allow
}
