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
