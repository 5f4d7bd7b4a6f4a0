// Package outbound decides which destinations Herald may send webhooks to. It guards
// against server-side request forgery: a WebhookEndpoint author must not be able to make
// the dispatcher reach the cloud metadata service or, unless the cluster operator allows
// it, services inside the cluster network.
//
// The same Policy is applied twice: statically to the URL by the manager (so a refused
// endpoint shows Ready=False with reason InvalidURL), and to every resolved IP at dial
// time by the dispatcher (so DNS cannot be used to sneak past the static check).
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
}

// Reasons an address or URL is refused. Link-local and metadata addresses are refused
// whatever the policy says: nothing legitimate receives webhooks there.
var (
	cgnat       = netip.MustParsePrefix("100.64.0.0/10")
	metadataV4  = netip.MustParseAddr("169.254.169.254")
	metadataV6  = netip.MustParseAddr("fd00:ec2::254")
	alibabaMeta = netip.MustParseAddr("100.100.100.200")
)

// CheckURL validates a URL statically: scheme, host presence, and a literal IP host.
// Host names are checked again at dial time by Dialer.
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
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
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
	case ip.IsUnspecified() || ip.IsMulticast():
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

// DialContext returns a dial function for http.Transport that applies the policy.
func (p Policy) DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	dd := *d
	dd.Control = p.Control
	return dd.DialContext
}
