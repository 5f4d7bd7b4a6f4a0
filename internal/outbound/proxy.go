package outbound

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Proxy is an HTTP forward proxy that deliveries go through, with CONNECT tunnels, so
// that receivers can allow-list the proxy's fixed addresses.
type Proxy struct {
	// Host and Port of the proxy (an http:// URL's; the proxy is spoken to in the clear,
	// what goes through the tunnel is TLS for an https receiver).
	Host string
	Port uint16
	// Username and Password, when set, are sent as Proxy-Authorization: Basic.
	Username, Password string
	// Operator is set for the dispatcher's own proxy (--egress-proxy), which the
	// operator named: its address is allowed past the private-network and loopback
	// rules, at its port only (proxies usually run inside the cluster network). A
	// proxy an endpoint names is judged like any destination.
	Operator bool
}

// ParseProxy reads a proxy URL, http://[user:password@]host:port. A proxy URL with a
// path, a query or another scheme is refused: only CONNECT over plain TCP is spoken.
func ParseProxy(raw string) (*Proxy, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("proxy url does not parse: %w", err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("proxy url scheme %q is not supported; use http://host:port", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("proxy url has no host")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("proxy url must be http://host:port, without a path or query")
	}
	p := &Proxy{Host: u.Hostname(), Port: 80}
	if ps := u.Port(); ps != "" {
		n, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("proxy url port %q is not a port number", ps)
		}
		p.Port = uint16(n)
	}
	if u.User != nil {
		p.Username = u.User.Username()
		p.Password, _ = u.User.Password()
	}
	return p, nil
}

// Address is the proxy's host:port.
func (x *Proxy) Address() string { return net.JoinHostPort(x.Host, strconv.Itoa(int(x.Port))) }

// URL is the proxy as a person reads it, without credentials.
func (x *Proxy) URL() string { return "http://" + x.Address() }

// CheckProxy judges the proxy itself, statically, as CheckURL judges a receiver's URL:
// an endpoint's proxy must not be a way to reach what the policy refuses (a proxy at a
// metadata address is one). The operator's proxy is allowed its private or loopback
// address.
func (p Policy) CheckProxy(x *Proxy) error {
	pp := p
	pp.AllowPlainHTTP = true // the proxy is spoken to over http; the tunnel carries TLS
	if x.Operator {
		pp = pp.Trusting(x.Host, x.Port)
		ip, isIP, err := parseHost(x.Host)
		if err != nil {
			return err
		}
		if isIP {
			return pp.checkAt(x.Host, ip, x.Port, false)
		}
	}
	return pp.CheckURL(x.URL())
}

// Egress is how deliveries leave the dispatcher: directly, or through the operator's
// proxy except to the hosts NoProxy names.
type Egress struct {
	Proxy *Proxy
	// NoProxy lists what is reached directly: host names (the name and every name
	// under it; a leading dot is allowed), IP addresses and CIDR ranges (matched
	// against a URL's host when it is an address), and "*" for everything.
	NoProxy []string
}

// ProxyFor returns the proxy a delivery to rawURL goes through, nil when none.
func (e Egress) ProxyFor(rawURL string) *Proxy {
	if e.Proxy == nil {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return e.Proxy
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	ip, isIP, _ := parseHost(host)
	for _, rule := range e.NoProxy {
		rule = strings.TrimSpace(strings.ToLower(rule))
		switch {
		case rule == "":
		case rule == "*":
			return nil
		case strings.Contains(rule, "/"):
			if pfx, err := netip.ParsePrefix(rule); err == nil && isIP && pfx.Contains(ip) {
				return nil
			}
		default:
			if a, err := netip.ParseAddr(rule); err == nil {
				if isIP && a.Unmap() == ip.Unmap() {
					return nil
				}
				continue
			}
			rule = strings.TrimSuffix(strings.TrimPrefix(rule, "."), ".")
			if host == rule || strings.HasSuffix(host, "."+rule) {
				return nil
			}
		}
	}
	return e.Proxy
}

// CheckNoProxy validates NoProxy rules, so that a mistyped CIDR is an error at start
// rather than a host silently sent through the proxy.
func CheckNoProxy(rules []string) error {
	for _, rule := range rules {
		rule = strings.TrimSpace(rule)
		if strings.Contains(rule, "/") {
			if _, err := netip.ParsePrefix(rule); err != nil {
				return fmt.Errorf("no-proxy rule %q is not a CIDR range: %w", rule, err)
			}
		}
	}
	return nil
}

// DialThrough returns a dial function for http.Transport that reaches every destination
// through the proxy x. The destination is judged here exactly as DialContext judges it:
// its name is resolved with the policy's Resolver and each address checked, and the
// tunnel is asked for by address (CONNECT 203.0.113.7:443), so the proxy can reach
// nothing the policy refuses, and a name cannot resolve to something else at the proxy.
// The proxy's own address is judged too (see Proxy.Operator). A TLS receiver is still
// verified by its name: the transport does TLS over the tunnel.
func (p Policy) DialThrough(d *net.Dialer, x *Proxy) func(ctx context.Context, network, addr string) (net.Conn, error) {
	toProxy := p
	toProxy.AllowPlainHTTP = true
	if x.Operator {
		toProxy = toProxy.Trusting(x.Host, x.Port)
	}
	dialProxy := toProxy.DialContext(d)
	auth := ""
	if x.Username != "" || x.Password != "" {
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(x.Username+":"+x.Password))
	}
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
		var lastErr error
		for _, ip := range addrs {
			conn, err := dialProxy(ctx, "tcp", x.Address())
			if err != nil {
				return nil, fmt.Errorf("reaching proxy %s: %w", x.Address(), err)
			}
			target := net.JoinHostPort(ip.String(), port)
			tunnel, retry, err := connect(ctx, conn, target, auth)
			if err == nil {
				return tunnel, nil
			}
			conn.Close()
			// Named by the host as written: the status must not map the cluster's
			// network for the endpoint's author.
			lastErr = fmt.Errorf("proxy %s: tunnel to %s: %w", x.Address(), net.JoinHostPort(host, port), err)
			if !retry || ctx.Err() != nil {
				break
			}
		}
		return nil, lastErr
	}
}

// connect asks the proxy on conn for a tunnel to target. retry says whether another
// address of the destination might do better (the proxy could not reach this one).
func connect(ctx context.Context, conn net.Conn, target, auth string) (net.Conn, bool, error) {
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	} else {
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if auth != "" {
		req += "Proxy-Authorization: " + auth + "\r\n"
	}
	if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
		return nil, false, fmt.Errorf("sending CONNECT: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil, false, fmt.Errorf("reading the answer to CONNECT: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		retry := resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout ||
			resp.StatusCode == http.StatusServiceUnavailable
		return nil, retry, fmt.Errorf("the proxy answered %s", resp.Status)
	}
	_ = conn.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: br}, false, nil
	}
	return conn, false, nil
}

// bufferedConn is a tunnel whose first bytes were read along with the proxy's answer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }
