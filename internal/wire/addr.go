package wire

import "net/netip"

// sharedV4 is RFC 6598's shared address space (carrier-grade NAT).
var sharedV4 = netip.MustParsePrefix("100.64.0.0/10")

// PublicAddr reports whether ip is an internet address: not private
// (RFC 1918, RFC 4193), shared (RFC 6598), loopback, link-local, multicast
// or unspecified. The benchmarking ranges (RFC 2544's 198.18.0.0/15,
// RFC 5180's 2001:2::/48) count as public: they are the labs' internet.
//
// A node offers its public interface addresses as EndpointPublic; the
// coordinator passes a public candidate on only with evidence (Vouches).
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsValid() && !ip.IsPrivate() && !sharedV4.Contains(ip) && !ip.IsLoopback() &&
		!ip.IsLinkLocalUnicast() && !ip.IsMulticast() && !ip.IsUnspecified()
}
