package outbound

import (
	"fmt"
	"net/netip"
)

// Refusal is the outbound policy refusing a destination. Its message names the host as
// it was written (in the URL, or the name dialled) and the rule that refused it, never
// an address the name resolved to: the message reaches the endpoint's status, where it
// must not map the cluster's network for whoever wrote the URL.
type Refusal struct {
	// Host is the host as written.
	Host string
	// Rule says what kind of address it is, e.g. "a private address (RFC 1918)".
	Rule string
	// Resolved is set when Host is a name that resolved to such an address.
	Resolved bool
	// ByPolicy is set when a policy setting (AllowLoopback, AllowPrivateNetworks) would
	// allow it; otherwise no policy does.
	ByPolicy bool
}

func (r *Refusal) Error() string {
	verb := "is"
	if r.Resolved {
		verb = "resolves to"
	}
	verdict := "which is never allowed"
	if r.ByPolicy {
		verdict = "which the outbound policy does not allow"
	}
	return fmt.Sprintf("host %q %s %s, %s", r.Host, verb, r.Rule, verdict)
}

// The rules, as refusals name them.
const (
	ruleMetadata    = "a cloud metadata address"
	ruleLinkLocal   = "a link-local address"
	ruleUnspecified = "the unspecified address"
	ruleThisNetwork = "an address of this network (0.0.0.0/8)"
	ruleMulticast   = "a multicast address"
	ruleReserved    = "a reserved address (240.0.0.0/4)"
	ruleLoopback    = "a loopback address"
	rulePrivate     = "a private address (RFC 1918)"
	ruleSharedCGNAT = "a shared address (100.64.0.0/10, carrier-grade NAT)"
	ruleBenchmark   = "a benchmarking address (198.18.0.0/15)"
	ruleUniqueLocal = "a unique-local address (fc00::/7)"
	ruleSiteLocal   = "a site-local address (fec0::/10)"
	ruleLocalNAT64  = "a local-use NAT64 address (64:ff9b:1::/48)"
)

// Cloud metadata services, refused whatever the policy says: nothing legitimate receives
// webhooks there, and they hand out the node's credentials.
var metadataAddrs = map[netip.Addr]bool{
	netip.MustParseAddr("169.254.169.254"): true, // AWS, GCP, Azure, OpenStack, DigitalOcean
	netip.MustParseAddr("100.100.100.200"): true, // Alibaba Cloud, inside 100.64.0.0/10
	netip.MustParseAddr("168.63.129.16"):   true, // Azure WireServer and DNS, a public address
	netip.MustParseAddr("fd00:ec2::254"):   true, // AWS instance metadata over IPv6
	netip.MustParseAddr("fd00:ec2::23"):    true, // AWS DNS resolver over IPv6 (Nitro)
	netip.MustParseAddr("fd20:ce::254"):    true, // GCP metadata over IPv6
}

// addrRule is one range of addresses and what the policy does with it.
type addrRule struct {
	prefix netip.Prefix
	rule   string
	// allowed says which setting allows the range; nil when none does.
	allowed func(Policy) bool
}

func allowLoopback(p Policy) bool { return p.AllowLoopback }
func allowPrivate(p Policy) bool  { return p.AllowPrivateNetworks }

func rule(prefix, name string, allowed func(Policy) bool) addrRule {
	return addrRule{prefix: netip.MustParsePrefix(prefix), rule: name, allowed: allowed}
}

// v4Rules judge IPv4 addresses, and the IPv4 address inside every translation range.
var v4Rules = []addrRule{
	rule("169.254.0.0/16", ruleLinkLocal, nil),
	rule("0.0.0.0/8", ruleThisNetwork, nil), // Linux connects 0.0.0.0 to loopback
	rule("224.0.0.0/4", ruleMulticast, nil),
	rule("240.0.0.0/4", ruleReserved, nil), // and 255.255.255.255, the broadcast address
	rule("127.0.0.0/8", ruleLoopback, allowLoopback),
	rule("10.0.0.0/8", rulePrivate, allowPrivate),
	rule("172.16.0.0/12", rulePrivate, allowPrivate),
	rule("192.168.0.0/16", rulePrivate, allowPrivate),
	rule("100.64.0.0/10", ruleSharedCGNAT, allowPrivate), // some cluster networks use it
	rule("198.18.0.0/15", ruleBenchmark, allowPrivate),   // and some cloud-internal services
}

// v6Rules judge IPv6 addresses that carry no IPv4 address.
var v6Rules = []addrRule{
	rule("::/128", ruleUnspecified, nil),
	rule("fe80::/10", ruleLinkLocal, nil),
	rule("ff00::/8", ruleMulticast, nil),
	rule("::1/128", ruleLoopback, allowLoopback),
	rule("fc00::/7", ruleUniqueLocal, allowPrivate),
	rule("fec0::/10", ruleSiteLocal, allowPrivate), // deprecated, still routed in some networks
	rule("64:ff9b:1::/48", ruleLocalNAT64, allowPrivate),
}

// translation is an IPv6 range whose addresses stand for IPv4 addresses: a packet to
// one of them reaches the IPv4 address it embeds, which is judged by v4Rules.
type translation struct {
	prefix netip.Prefix
	name   string
	// embedded returns the IPv4 addresses the IPv6 address can reach.
	embedded func(a [16]byte) []netip.Addr
	// guesses is set when embedded returns every place the IPv4 address may be, not
	// knowing which one the network uses: a guess that is no destination at all (the
	// zeros of another layout) refuses nothing.
	guesses bool
}

func v4(b0, b1, b2, b3 byte) netip.Addr { return netip.AddrFrom4([4]byte{b0, b1, b2, b3}) }

func last32(a [16]byte) []netip.Addr { return []netip.Addr{v4(a[12], a[13], a[14], a[15])} }

var translations = []translation{
	// IPv4-mapped, the form a resolver or a dual-stack socket uses for IPv4.
	{prefix: netip.MustParsePrefix("::ffff:0:0/96"), name: "IPv4-mapped", embedded: last32},
	// SIIT's IPv4-translated addresses (RFC 7915).
	{prefix: netip.MustParsePrefix("::ffff:0:0:0/96"), name: "IPv4-translated", embedded: last32},
	// NAT64's well-known prefix (RFC 6052): a cluster on IPv6 reaches IPv4 through it.
	{prefix: netip.MustParsePrefix("64:ff9b::/96"), name: "NAT64 (64:ff9b::/96)", embedded: last32},
	// Local-use NAT64 (RFC 8215): the operator picks the prefix length inside it, which
	// decides where the IPv4 address is (RFC 6052 section 2.2, skipping the u octet).
	{prefix: netip.MustParsePrefix("64:ff9b:1::/48"), name: "NAT64 (64:ff9b:1::/48)", guesses: true,
		embedded: func(a [16]byte) []netip.Addr {
			return []netip.Addr{
				v4(a[4], a[5], a[6], a[7]),     // /32
				v4(a[5], a[6], a[7], a[9]),     // /40
				v4(a[6], a[7], a[9], a[10]),    // /48
				v4(a[7], a[9], a[10], a[11]),   // /56
				v4(a[9], a[10], a[11], a[12]),  // /64
				v4(a[12], a[13], a[14], a[15]), // /96
			}
		}},
	// 6to4 (RFC 3056): the IPv4 address follows the prefix.
	{prefix: netip.MustParsePrefix("2002::/16"), name: "6to4 (2002::/16)", embedded: func(a [16]byte) []netip.Addr {
		return []netip.Addr{v4(a[2], a[3], a[4], a[5])}
	}},
	// Teredo (RFC 4380): the server's address, and the client's with every bit
	// inverted, to which a relay forwards.
	{prefix: netip.MustParsePrefix("2001::/32"), name: "Teredo (2001::/32)", embedded: func(a [16]byte) []netip.Addr {
		return []netip.Addr{v4(a[4], a[5], a[6], a[7]), v4(^a[12], ^a[13], ^a[14], ^a[15])}
	}},
	// IPv4-compatible (deprecated, RFC 4291): ::a.b.c.d. :: and ::1 are judged as what
	// they are by v6Rules first.
	{prefix: netip.MustParsePrefix("::/96"), name: "IPv4-compatible", embedded: last32},
}

// noDestination are the rules of addresses nothing can be sent to, which a guessed
// IPv4 address may fall in without meaning anything.
var noDestination = map[string]bool{ruleThisNetwork: true, ruleMulticast: true, ruleReserved: true}

// judge returns the refusal of ip without its host, or ok.
func (p Policy) judge(ip netip.Addr) (*Refusal, bool) {
	ip = ip.WithZone("")
	if metadataAddrs[ip] {
		return &Refusal{Rule: ruleMetadata}, false
	}
	if ip.Is4() {
		return p.judgeRules(ip, v4Rules)
	}
	if r, ok := p.judgeRules(ip, v6Rules); !ok {
		return r, false
	}
	a := ip.As16()
	for _, t := range translations {
		if !t.prefix.Contains(ip) {
			continue
		}
		// The ranges are disjoint: at most one applies.
		for _, embedded := range t.embedded(a) {
			if r, ok := p.judge(embedded); !ok && !(t.guesses && noDestination[r.Rule]) {
				r.Rule = fmt.Sprintf("%s of %s", t.name, r.Rule)
				return r, false
			}
		}
		return nil, true
	}
	return nil, true
}

func (p Policy) judgeRules(ip netip.Addr, rules []addrRule) (*Refusal, bool) {
	for _, r := range rules {
		if !r.prefix.Contains(ip) {
			continue
		}
		if r.allowed != nil && r.allowed(p) {
			return nil, true
		}
		return &Refusal{Rule: r.rule, ByPolicy: r.allowed != nil}, false
	}
	return nil, true
}
