package outbound

import (
	"net/netip"
	"testing"
)

// TestParseHost pins how a URL host is read. Every row that yields an address is one a
// browser would connect to at that address; every error row is a host a browser
// refuses to load.
func TestParseHost(t *testing.T) {
	for _, c := range []struct {
		host string
		want string // the address; "" for a host name
		bad  bool   // ends in a number but is no IPv4 address
		why  string
	}{
		{"127.0.0.1", "127.0.0.1", false, "the ordinary dotted quad"},
		{"127.0.0.1.", "127.0.0.1", false, "a trailing dot is allowed, as in a name"},
		{"127.1", "127.0.0.1", false, "two parts: the last fills the remaining 24 bits"},
		{"127.0.1", "127.0.0.1", false, "three parts: the last fills the remaining 16 bits"},
		{"2130706433", "127.0.0.1", false, "one decimal part is the whole address"},
		{"0x7f000001", "127.0.0.1", false, "one hexadecimal part"},
		{"0X7F000001", "127.0.0.1", false, "hexadecimal is case-insensitive"},
		{"0177.0.0.1", "127.0.0.1", false, "a leading 0 makes a part octal"},
		{"0x7f.1", "127.0.0.1", false, "forms mix per part"},
		{"010.0.0.1", "8.0.0.1", false, "octal 010 is 8: this is 8.0.0.1, not the private 10.0.0.1, and is dialled as such"},
		{"0", "0.0.0.0", false, "a lone zero is the unspecified address"},
		{"0x", "0.0.0.0", false, "a bare 0x is zero to the WHATWG parser"},
		{"0xa9fea9fe", "169.254.169.254", false, "the metadata address in hexadecimal"},
		{"::1", "::1", false, "IPv6 literals as url.Hostname returns them, without brackets"},
		{"::ffff:127.0.0.1", "::ffff:127.0.0.1", false, "an IPv4-mapped IPv6 literal stays mapped here; CheckAddr unmaps it"},
		{"fe80::1%eth0", "fe80::1%eth0", false, "an IPv6 literal with a zone"},
		{"example.com", "", false, "a host name"},
		{"localhost", "", false, "localhost is a name; CheckURL handles it by name"},
		{"1.2.3.example", "", false, "numbers before the last label do not make an address"},
		{"example.0xg", "", false, "0xg is no number, so this is a name"},
		{"example.0x10", "", true, "a last label in hexadecimal makes the host an address, and this one is not valid"},
		{"1.2.3.4.5", "", true, "five parts"},
		{"256.0.0.1", "", true, "a part before the last is above 255"},
		{"1.16777216", "", true, "the last of two parts overflows its 24 bits"},
		{"4294967296", "", true, "one part above 32 bits"},
		{"99999999999999999999999", "", true, "a part beyond 64 bits is refused, not wrapped"},
		{"08.0.0.1", "", true, "8 is no octal digit"},
		{"1..1", "", true, "an empty part"},
	} {
		t.Run(c.host, func(t *testing.T) {
			addr, isIP, err := parseHost(c.host)
			switch {
			case c.bad:
				if err == nil {
					t.Fatalf("parseHost(%q) = %v, %v, want an error (%s)", c.host, addr, isIP, c.why)
				}
			case err != nil:
				t.Fatalf("parseHost(%q): %v (%s)", c.host, err, c.why)
			case c.want == "":
				if isIP {
					t.Fatalf("parseHost(%q) = address %v, want a host name (%s)", c.host, addr, c.why)
				}
			case !isIP || addr != netip.MustParseAddr(c.want):
				t.Fatalf("parseHost(%q) = %v (isIP %v), want %s (%s)", c.host, addr, isIP, c.want, c.why)
			}
		})
	}
}
