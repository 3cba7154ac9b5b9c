package discovery

import (
	"context"
	"net/netip"
	"testing"

	"github.com/meshnode/meshnode/internal/wire"
)

// addrs returns n IPv4 then m IPv6 global unicast addresses.
func addrs(n, m int) []netip.Addr {
	var out []netip.Addr
	for i := range n {
		out = append(out, netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}))
	}
	for i := range m {
		out = append(out, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}))
	}
	return out
}

func TestGatherLANBound(t *testing.T) {
	for _, tc := range []struct {
		name      string
		locals    []netip.Addr
		want      int
		wantLast4 bool // the last candidate kept is IPv4
	}{
		{"few", addrs(2, 3), 5, false},
		{"exactly the bound", addrs(maxLAN, 0), maxLAN, true},
		{"many IPv6", addrs(4, 200), maxLAN, false},
		{"many IPv4", addrs(maxLAN+1, 10), maxLAN, true},
	} {
		g := Gatherer{LocalAddrs: func() []netip.Addr { return tc.locals }}
		res := g.Gather(context.Background(), nil, 41820)
		if len(res.Endpoints) != tc.want {
			t.Errorf("%s: %d candidates, want %d", tc.name, len(res.Endpoints), tc.want)
			continue
		}
		for _, e := range res.Endpoints {
			if e.Kind != wire.EndpointLAN {
				t.Errorf("%s: candidate %v of kind %q, want %q", tc.name, e.Addr, e.Kind, wire.EndpointLAN)
			}
		}
		if last := res.Endpoints[len(res.Endpoints)-1].Addr.Addr(); last.Is4() != tc.wantLast4 {
			t.Errorf("%s: last candidate kept %v, want IPv4 %v", tc.name, last, tc.wantLast4)
		}
	}
}
