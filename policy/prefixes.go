package policy

import (
	"net/netip"
	"slices"
)

// notInternetV4 are the IPv4 ranges that are not the internet: a rule to
// internet lets its sources out through an exit node, never into the
// exit node's LAN or the overlay (a subnet route names those).
var notInternetV4 = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network" (RFC 1122 §3.2.1.3)
	netip.MustParsePrefix("10.0.0.0/8"),     // private (RFC 1918)
	netip.MustParsePrefix("100.64.0.0/10"),  // shared address space, carrier-grade NAT (RFC 6598)
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback (RFC 1122 §3.2.1.3)
	netip.MustParsePrefix("169.254.0.0/16"), // link-local (RFC 3927)
	netip.MustParsePrefix("172.16.0.0/12"),  // private (RFC 1918)
	netip.MustParsePrefix("192.168.0.0/16"), // private (RFC 1918)
	netip.MustParsePrefix("224.0.0.0/4"),    // multicast (RFC 5771)
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, and the limited broadcast (RFC 1112 §4, RFC 919)
}

// internetV6 is IPv6 global unicast (RFC 4291 §2.4): unique local,
// link-local and multicast addresses lie outside it.
var internetV6 = netip.MustParsePrefix("2000::/3")

// internet is what the keyword internet stands for: the public unicast
// ranges of both families, less the overlay's pools.
func internet(net Network) []netip.Prefix {
	v4 := []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0)}
	for _, hole := range append(slices.Clone(notInternetV4), net.V4) {
		v4 = subtract(v4, hole)
	}
	return sortPrefixes(append(v4, subtract([]netip.Prefix{internetV6}, net.V6)...))
}

// subtract removes hole from a set of prefixes. A prefix that holds the
// hole becomes the hole's siblings on the way down to it, one per bit.
func subtract(set []netip.Prefix, hole netip.Prefix) []netip.Prefix {
	if !hole.IsValid() {
		return set
	}
	hole = hole.Masked()
	var out []netip.Prefix
	for _, p := range set {
		switch {
		case !p.Overlaps(hole):
			out = append(out, p)
		case hole.Bits() <= p.Bits():
			// The hole covers p.
		default:
			for b := p.Bits(); b < hole.Bits(); b++ {
				out = append(out, netip.PrefixFrom(flipBit(hole.Addr(), b), b+1).Masked())
			}
		}
	}
	return out
}

// flipBit flips bit i (0: the most significant) of a.
func flipBit(a netip.Addr, i int) netip.Addr {
	if a.Is4() {
		b := a.As4()
		b[i/8] ^= 0x80 >> (i % 8)
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	b[i/8] ^= 0x80 >> (i % 8)
	return netip.AddrFrom16(b)
}

// overlapsAny returns the first of pools that p overlaps.
func overlapsAny(p netip.Prefix, pools []netip.Prefix) (netip.Prefix, bool) {
	for _, q := range pools {
		if p.Overlaps(q) {
			return q, true
		}
	}
	return netip.Prefix{}, false
}

// sortPrefixes sorts by address, then length, and drops repeats.
func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(ps)
}
