package pmtu

import (
	"net"
	"net/netip"
	"testing"
)

// TestKernelPathMTU reads the loopback device's MTU: the route to a local
// address goes through it. An IPv4 packet can't exceed 65535 bytes, and the
// kernel says no more (IP_MAX_MTU); IPv6 reports the device's (jumbograms,
// RFC 2675, may exceed it).
func TestKernelPathMTU(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback device: %v", err)
	}
	for _, tc := range []struct {
		addr string
		want int
	}{
		{"127.0.0.1", min(lo.MTU, 65535)},
		{"::ffff:127.0.0.1", min(lo.MTU, 65535)},
		{"::1", lo.MTU},
	} {
		a := tc.addr
		got, err := KernelPathMTU(netip.MustParseAddr(a))
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if want := tc.want; got != want {
			t.Errorf("%s: path MTU %d, want the loopback's %d", a, got, want)
		}
	}
}
