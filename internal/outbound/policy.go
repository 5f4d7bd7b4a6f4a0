// Package outbound decides which destinations Herald may send webhooks to. It guards
// against server-side request forgery: a WebhookEndpoint author must not be able to make
// the dispatcher reach the cloud metadata service or, unless the cluster operator allows
// it, services inside the cluster network.
//
// The same Policy is applied twice: statically to the URL by the manager (so a refused
// endpoint shows Ready=False with reason InvalidURL), and to every resolved IP at dial
// time by the dispatcher (so DNS cannot be used to sneak past the static check).
//
// A host is an IP address whenever a browser or inet_aton(3) would read it as one:
// 127.1, 2130706433, 0x7f000001 and 0177.0.0.1 are all 127.0.0.1. Reading them as host
// names would let such a URL pass the static check and then reach loopback through a
// resolver that does read them as addresses (getaddrinfo does).
package outbound

import (
	"context"
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
	AllowPlainHTTP bool
	// AllowPrivateNetworks permits RFC 1918, unique-local (fc00::/7) and CGNAT
	// (100.64.0.0/10) destinations, typically other services in the cluster.
	AllowPrivateNetworks bool
	// AllowLoopback permits 127.0.0.0/8 and ::1; only tests and local runs want it.
	AllowLoopback bool
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

// Reasons an address or URL is refused. Link-local and metadata addresses are refused
// whatever the policy says: nothing legitimate receives webhooks there.
var (
	cgnat       = netip.MustParsePrefix("100.64.0.0/10")
	metadataV4  = netip.MustParseAddr("169.254.169.254")
	metadataV6  = netip.MustParseAddr("fd00:ec2::254")
	alibabaMeta = netip.MustParseAddr("100.100.100.200")
	// thisNetwork (0.0.0.0/8) is no destination; Linux connects 0.0.0.0 to loopback.
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
)

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
		return fmt.Errorf("host %q is a cloud metadata service", u.Hostname())
	}
	ip, isIP, err := parseHost(u.Hostname())
	if err != nil {
		return err
	}
	if isIP {
		return p.CheckAddr(ip)
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		if !p.AllowLoopback {
			return fmt.Errorf("host %q is loopback, which the outbound policy does not allow", u.Hostname())
		}
	}
	return nil
}

// CheckAddr validates one destination IP address.
func (p Policy) CheckAddr(ip netip.Addr) error {
	ip = ip.Unmap()
	switch {
	case ip == metadataV4 || ip == metadataV6 || ip == alibabaMeta:
		return fmt.Errorf("address %s is a cloud metadata service", ip)
	case ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast():
		return fmt.Errorf("address %s is link-local", ip)
	case ip.IsUnspecified() || ip.IsMulticast() || thisNetwork.Contains(ip):
		return fmt.Errorf("address %s is not a unicast destination", ip)
	case ip.IsLoopback():
		if !p.AllowLoopback {
			return fmt.Errorf("address %s is loopback, which the outbound policy does not allow", ip)
		}
	case ip.IsPrivate() || cgnat.Contains(ip):
		if !p.AllowPrivateNetworks {
			return fmt.Errorf("address %s is in a private network, which the outbound policy does not allow", ip)
		}
	}
	return nil
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
		return nil, dialErr
	}
}

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
		if err := p.CheckAddr(a); err != nil {
			if refused == nil {
				refused = fmt.Errorf("outbound policy: %s: %w", host, err)
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
