package node

import (
	"net/netip"
	"testing"

	"github.com/meshnode/meshnode/internal/wire"
)

func TestScopePermits(t *testing.T) {
	var s scope
	s.set([]netip.Prefix{netip.MustParsePrefix("192.168.1.10/24"), netip.MustParsePrefix("198.18.5.5/32")})
	for _, tc := range []struct {
		addr string
		kind string
		want bool
	}{
		{"192.168.1.11:41820", wire.EndpointLAN, true},  // a neighbour on our LAN
		{"192.168.2.11:41820", wire.EndpointLAN, false}, // another LAN: not ours to probe
		{"10.0.0.5:22", wire.EndpointLAN, false},        // a private host elsewhere
		{"198.18.9.9:41820", wire.EndpointLAN, true},    // a server's public interface
		{"192.168.1.10:41820", wire.EndpointLAN, false}, // ourselves
		{"198.18.5.5:41820", wire.EndpointSTUN, false},  // ourselves
		{"198.18.9.9:41820", wire.EndpointSTUN, true},   // a public mapping
		{"10.0.0.5:41820", wire.EndpointSTUN, false},    // a "public" mapping that isn't
		{"172.16.0.9:41820", wire.EndpointPortMap, false},
		{"198.18.9.9:41821", wire.EndpointPredict, true},
		{"10.9.9.9:41820", "prflx", true}, // where the peer's sealed ping came from
	} {
		if got := s.Permit(netip.MustParseAddrPort(tc.addr), tc.kind); got != tc.want {
			t.Errorf("Permit(%s, %s) = %v, want %v", tc.addr, tc.kind, got, tc.want)
		}
	}
}

// TestScopeFamilies: a host probes only the address families it has an
// address in; the overlay's own addresses, loopback and link-local don't
// count. A public interface candidate must be a public address.
func TestScopeFamilies(t *testing.T) {
	overlay := []netip.Prefix{netip.MustParsePrefix("100.88.0.0/16"), netip.MustParsePrefix("fd6d:6573:686e::/48")}
	tun := []netip.Prefix{netip.MustParsePrefix("100.88.0.5/16"), netip.MustParsePrefix("fd6d:6573:686e::5/48"), netip.MustParsePrefix("fe80::1/64")}
	v4 := append([]netip.Prefix{netip.MustParsePrefix("10.1.0.2/24")}, tun...)
	v6 := append([]netip.Prefix{netip.MustParsePrefix("2001:2:0:7::2/64")}, tun...)
	dual := append([]netip.Prefix{netip.MustParsePrefix("10.1.0.2/24"), netip.MustParsePrefix("2001:2:0:7::2/64")}, tun...)
	peer4 := netip.MustParseAddrPort("198.18.9.9:41820")
	peer6 := netip.MustParseAddrPort("[2001:2:0:9::2]:41820")
	for _, tc := range []struct {
		name   string
		host   []netip.Prefix
		addr   netip.AddrPort
		kind   string
		permit bool
	}{
		{"IPv4 host, IPv4 mapping", v4, peer4, wire.EndpointSTUN, true},
		{"IPv4 host, IPv6 address", v4, peer6, wire.EndpointPublic, false},
		{"IPv4 host, IPv6 TCP candidate", v4, peer6, wire.EndpointTCP, false},
		{"IPv6 host, IPv6 address", v6, peer6, wire.EndpointPublic, true},
		{"IPv6 host, IPv4 mapping", v6, peer4, wire.EndpointSTUN, false},
		{"dual stack, IPv6 address", dual, peer6, wire.EndpointPublic, true},
		{"dual stack, IPv4 mapping", dual, peer4, wire.EndpointSTUN, true},
		{"public kind at a ULA", dual, netip.MustParseAddrPort("[fd00::9]:41820"), wire.EndpointPublic, false},
		{"public kind at a CGN address", dual, netip.MustParseAddrPort("100.64.9.9:41820"), wire.EndpointPublic, false},
	} {
		s := scope{overlay: overlay}
		s.set(tc.host)
		if got := s.Permit(tc.addr, tc.kind); got != tc.permit {
			t.Errorf("%s: Permit(%s, %s) = %v, want %v", tc.name, tc.addr, tc.kind, got, tc.permit)
		}
	}
}
