// Package outbound decides which destinations Herald may send webhooks to. It guards
// against server-side request forgery: a WebhookEndpoint author must not be able to make
// the dispatcher reach the cloud metadata service or, unless the cluster operator allows
// it, services inside the cluster network.
//
// The same Policy is applied twice: statically to the URL by the manager (so a refused
// endpoint shows Ready=False with reason InvalidURL), and to every resolved IP at dial
// time by the dispatcher (so DNS cannot be used to sneak past the static check). The
// ranges and their rules are in ranges.go; an IPv6 address that stands for an IPv4 one
// (IPv4-mapped, NAT64, 6to4, Teredo, ...) is judged by the IPv4 address it reaches.
// Refusals (*Refusal) name the rule and the host as written, never a resolved address.
//
// A host is an IP address whenever a browser or inet_aton(3) would read it as one:
// 127.1, 2130706433, 0x7f000001 and 0177.0.0.1 are all 127.0.0.1. Reading them as host
// names would let such a URL pass the static check and then reach loopback through a
// resolver that does read them as addresses (getaddrinfo does).
package outbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// Policy lists what is allowed beyond public https destinations. The zero value is the
// strictest policy: https only, public addresses only.
type Policy struct {
	// AllowPlainHTTP permits http:// URLs.
	AllowPlainHTTP bool `json:"allowPlainHTTP"`
	// AllowPrivateNetworks permits RFC 1918, unique-local (fc00::/7), site-local
	// (fec0::/10), shared CGNAT (100.64.0.0/10), benchmarking (198.18.0.0/15) and
	// local-use NAT64 (64:ff9b:1::/48) destinations, typically other services in the
	// cluster. Metadata, link-local and non-unicast addresses stay refused.
	AllowPrivateNetworks bool `json:"allowPrivateNetworks"`
	// AllowLoopback permits 127.0.0.0/8 and ::1; only tests and local runs want it.
	AllowLoopback bool `json:"allowLoopback"`
	// Resolver looks host names up at dial time and in CheckHost. Nil means
	// net.DefaultResolver; tests inject their own so that no check depends on the
	// machine's /etc/hosts or DNS. It is not part of the policy as logged.
	Resolver Resolver `json:"-"`

	// exact is the one destination this policy lets past the private-network and
	// loopback rules (never past the rules no setting lifts): an in-cluster Service an
	// endpoint names (ForService), or the operator's own proxy (Trusting).
	exact *exactDest
}

// exactDest is a destination allowed by name and port: the name as written (host) at
// port, reaching addr when it is set (and then without a DNS lookup), or any address
// the name resolves to when it is not.
type exactDest struct {
	host string
	port uint16
	addr netip.Addr
}

// ForService returns the policy of an endpoint that names an in-cluster Service: host
// (<service>.<namespace>.svc) resolves to addr's address without DNS (a cluster need not
// run cluster DNS, and an answer from it could differ from the Service Herald read), and
// exactly that address and port is allowed past the private-network and loopback rules.
// Any other destination (a redirect is not followed anyway; the OAuth2 token URL) is
// judged by p as it is.
func (p Policy) ForService(host string, addr netip.AddrPort) Policy {
	p.exact = &exactDest{host: strings.ToLower(host), port: addr.Port(), addr: addr.Addr().Unmap()}
	return p
}

// Trusting returns the policy with the operator's proxy at host:port allowed past the
// private-network and loopback rules (a proxy usually runs inside the cluster network),
// at whatever address its name resolves to; metadata and link-local addresses stay
// refused.
func (p Policy) Trusting(host string, port uint16) Policy {
	p.exact = &exactDest{host: strings.ToLower(host), port: port}
	return p
}

// lifts reports whether the exact destination lets ip at port, dialled for host as
// written, past refusal r.
func (p Policy) lifts(r *Refusal, host string, ip netip.Addr, port uint16) bool {
	e := p.exact
	return e != nil && r.ByPolicy && port == e.port && strings.EqualFold(host, e.host) && (!e.addr.IsValid() || e.addr == ip)
}

// Resolver looks up the addresses of a host name; *net.Resolver is one. network is
// "ip", "ip4" or "ip6".
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// CheckURL validates a URL statically: scheme, host presence, no credentials, and the
// host when it is an IP address in any form a browser accepts (see the package doc).
// It does not resolve host names: the manager's answer must not depend on its DNS, and
// DialContext checks every resolved address anyway.
func (p Policy) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url does not parse: %w", err)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !p.AllowPlainHTTP {
			return fmt.Errorf("plain http is not allowed by the outbound policy; use https")
		}
	default:
		return fmt.Errorf("url scheme %q is not supported; use https", u.Scheme)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("url has no host")
	}
	if u.User != nil {
		return fmt.Errorf("url must not carry credentials; use spec.headers with valueFrom a Secret")
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "metadata.google.internal" || host == "metadata" {
		return &Refusal{Host: u.Hostname(), Rule: ruleMetadata}
	}
	ip, isIP, err := parseHost(u.Hostname())
	if err != nil {
		return err
	}
	if isIP {
		return p.check(u.Hostname(), ip, false)
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		if !p.AllowLoopback {
			return &Refusal{Host: u.Hostname(), Rule: ruleLoopback, ByPolicy: true}
		}
	}
	return nil
}

// CheckAddrPort validates a destination address at a port, reached for host as written:
// what the exact destination of ForService allows passes.
func (p Policy) CheckAddrPort(host string, ip netip.Addr, port uint16) error {
	return p.checkAt(host, ip.Unmap(), port, false)
}

// CheckAddr validates one destination IP address; a refusal names it as the host.
func (p Policy) CheckAddr(ip netip.Addr) error {
	return p.check(ip.String(), ip, false)
}

// check judges ip, the address of host as written (resolved: host is a name that
// resolved to ip), and returns a *Refusal naming host and the rule, or nil.
func (p Policy) check(host string, ip netip.Addr, resolved bool) error {
	r, ok := p.judge(ip)
	if ok {
		return nil
	}
	r.Host, r.Resolved = host, resolved
	return r
}

// Control is a net.Dialer Control function enforcing the policy on the address actually
// dialled, after DNS resolution, so a name resolving to a refused address is refused too.
func (p Policy) Control(_, address string, _ syscall.RawConn) error {
	return p.control("", address)
}

// control checks the dialled address, dialled for host as written ("" when unknown).
func (p Policy) control(host, address string) error {
	ipText, portText, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("outbound policy: %w", err)
	}
	ip, err := netip.ParseAddr(ipText)
	if err != nil {
		return fmt.Errorf("outbound policy: dialled address %q is not an IP", ipText)
	}
	port, _ := strconv.ParseUint(portText, 10, 16)
	if err := p.checkAt(host, ip, uint16(port), false); err != nil {
		return fmt.Errorf("outbound policy: %w", err)
	}
	return nil
}

// checkAt is check for a destination with its port, which the exact destination needs.
func (p Policy) checkAt(host string, ip netip.Addr, port uint16, resolved bool) error {
	r, ok := p.judge(ip)
	if ok || p.lifts(r, host, ip.Unmap(), port) {
		return nil
	}
	r.Host, r.Resolved = host, resolved
	if r.Host == "" {
		r.Host = ip.String()
	}
	return r
}

// CheckHost resolves host (a name or an address in any form CheckURL accepts) with the
// policy's Resolver and fails unless at least one of its addresses is allowed, which is
// exactly when a dial would go ahead. A pass is no promise: the name may resolve
// elsewhere by the time it is dialled, and DialContext checks again.
func (p Policy) CheckHost(ctx context.Context, host string) error {
	_, err := p.allowedAddrs(ctx, "tcp", host, 0)
	return err
}

// DialContext returns a dial function for http.Transport that applies the policy. It
// resolves the host itself (an inet_aton form is the address it denotes, a name goes
// to the policy's Resolver), skips every refused address and dials the allowed ones in
// turn by IP; Control checks the dialled address once more.
func (p Policy) DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("outbound policy: %w", err)
		}
		portNum, _ := strconv.ParseUint(port, 10, 16)
		addrs, err := p.allowedAddrs(ctx, network, host, uint16(portNum))
		if err != nil {
			return nil, err
		}
		dd := *d
		dd.Control = func(_, a string, _ syscall.RawConn) error { return p.control(host, a) }
		var dialErr error
		for _, ip := range addrs {
			conn, err := dd.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
			if err == nil {
				return conn, nil
			}
			dialErr = err
			if ctx.Err() != nil {
				break
			}
		}
		return nil, hideAddress(dialErr, network, address)
	}
}

// hideAddress names a failed dial by the host and port as written instead of the
// address dialled: the error reaches the endpoint's status, which must not tell its
// author what a name resolves to inside the cluster.
func hideAddress(err error, network, address string) error {
	var op *net.OpError
	if !errors.As(err, &op) {
		return err
	}
	return &net.OpError{Op: op.Op, Net: network, Addr: writtenAddr(address), Err: op.Err}
}

// writtenAddr is a host:port as written, as a net.Addr.
type writtenAddr string

func (a writtenAddr) Network() string { return "tcp" }
func (a writtenAddr) String() string  { return string(a) }

// allowedAddrs resolves host and returns its addresses that the policy allows at port
// (0: any), or the reason the first one was refused when none is.
func (p Policy) allowedAddrs(ctx context.Context, network, host string, port uint16) ([]netip.Addr, error) {
	ip, isIP, err := parseHost(host)
	if err != nil {
		return nil, fmt.Errorf("outbound policy: %w", err)
	}
	addrs := []netip.Addr{ip}
	if e := p.exact; !isIP && e != nil && e.addr.IsValid() && strings.EqualFold(host, e.host) {
		// The Service's name: its cluster IP, read from the API, not from DNS.
		addrs, isIP = []netip.Addr{e.addr}, true
	} else if !isIP {
		r := p.Resolver
		if r == nil {
			r = net.DefaultResolver
		}
		family := "ip"
		switch network {
		case "tcp4", "udp4":
			family = "ip4"
		case "tcp6", "udp6":
			family = "ip6"
		}
		if addrs, err = r.LookupNetIP(ctx, family, host); err != nil {
			return nil, fmt.Errorf("resolving %s: %w", host, err)
		}
	}
	allowed := addrs[:0:0]
	var refused error
	for _, a := range addrs {
		// A resolver may hand IPv4 back in its IPv4-mapped IPv6 form; dial the plain one.
		a = a.Unmap()
		if err := p.checkAt(host, a, port, !isIP); err != nil {
			if refused == nil {
				refused = fmt.Errorf("outbound policy: %w", err)
			}
			continue
		}
		allowed = append(allowed, a)
	}
	switch {
	case len(allowed) > 0:
		return allowed, nil
	case refused != nil:
		return nil, refused
	default:
		return nil, fmt.Errorf("resolving %s: no address", host)
	}
}
