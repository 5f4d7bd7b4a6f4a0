package outbound

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// parseHost reads a URL host (as url.URL.Hostname returns it) the way the WHATWG URL
// standard, and so every browser, reads it: an IPv6 literal, or an IPv4 address in any
// form inet_aton(3) accepts — one to four dot-separated parts, each decimal, octal
// (leading 0) or hexadecimal (leading 0x), the last part filling the remaining bytes,
// and an optional trailing dot. isIP is false for a host name. A host whose last label
// is a number but which is no valid IPv4 address (1.2.3.4.5, 256.0.0.1, example.0x10)
// is an error, as it is in browsers: a resolver might read it in yet another way.
func parseHost(host string) (addr netip.Addr, isIP bool, err error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a, true, nil
	}
	parts := strings.Split(strings.ToLower(host), ".")
	if len(parts) > 1 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	if !endsInNumber(parts[len(parts)-1]) {
		return netip.Addr{}, false, nil
	}
	invalid := fmt.Errorf("host %q ends in a number but is not a valid IPv4 address", host)
	if len(parts) > 4 {
		return netip.Addr{}, false, invalid
	}
	nums := make([]uint64, len(parts))
	for i, part := range parts {
		n, ok := ipv4Number(part)
		if !ok {
			return netip.Addr{}, false, invalid
		}
		nums[i] = n
	}
	last := len(nums) - 1
	var v uint64
	for i, n := range nums[:last] {
		if n > 255 {
			return netip.Addr{}, false, invalid
		}
		v |= n << (8 * (3 - i))
	}
	// The last part fills the bytes the others left: 32 bits alone, 8 after three.
	if nums[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false, invalid
	}
	v |= nums[last]
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true, nil
}

// endsInNumber is the WHATWG "ends in a number" test on a host's last label: all
// decimal digits, or 0x followed by hex digits.
func endsInNumber(label string) bool {
	if label == "" {
		return false
	}
	if strings.Trim(label, "0123456789") == "" {
		return true
	}
	_, ok := ipv4Number(label)
	return ok && strings.HasPrefix(label, "0x")
}

// ipv4Number parses one part of an inet_aton address: 0x… hexadecimal, 0… octal,
// otherwise decimal; "0x" alone is zero. Values beyond 32 bits are reported as
// MaxUint64 so that the caller's range check refuses them.
func ipv4Number(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	base := 10
	switch {
	case strings.HasPrefix(s, "0x"):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, s = 8, s[1:]
	}
	if s == "" {
		return 0, true
	}
	n, err := strconv.ParseUint(s, base, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return math.MaxUint64, true
		}
		return 0, false
	}
	return n, true
}
