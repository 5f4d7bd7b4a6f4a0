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
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("outbound policy: %w", err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("outbound policy: dialled address %q is not an IP", host)
	}
	if err := p.CheckAddr(ip); err != nil {
		return fmt.Errorf("outbound policy: %w", err)
	}
	return nil
}

// CheckHost resolves host (a name or an address in any form CheckURL accepts) with the
// policy's Resolver and fails unless at least one of its addresses is allowed, which is
// exactly when a dial would go ahead. A pass is no promise: the name may resolve
// elsewhere by the time it is dialled, and DialContext checks again.
func (p Policy) CheckHost(ctx context.Context, host string) error {
	_, err := p.allowedAddrs(ctx, "tcp", host)
	return err
}

// DialContext returns a dial function for http.Transport that applies the policy. It
// resolves the host itself (an inet_aton form is the address it denotes, a name goes
// to the policy's Resolver), skips every refused address and dials the allowed ones in
// turn by IP; Control checks the dialled address once more.
func (p Policy) DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	dd := *d
	dd.Control = p.Control
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("outbound policy: %w", err)
		}
		addrs, err := p.allowedAddrs(ctx, network, host)
		if err != nil {
			return nil, err
		}
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

// allowedAddrs resolves host and returns its addresses that the policy allows, or the
// reason the first one was refused when none is.
func (p Policy) allowedAddrs(ctx context.Context, network, host string) ([]netip.Addr, error) {
	ip, isIP, err := parseHost(host)
	if err != nil {
		return nil, fmt.Errorf("outbound policy: %w", err)
	}
	addrs := []netip.Addr{ip}
	if !isIP {
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
		if err := p.check(host, a, !isIP); err != nil {
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
