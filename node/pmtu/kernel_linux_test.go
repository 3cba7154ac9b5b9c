package pmtu

import (
	"net"
	"net/netip"
	"testing"
)

// TestKernelPathMTU reads the loopback device's MTU: the route to a local
// address goes through it. An IP packet can't exceed 65535 bytes, and the
// kernel says no more (IP_MAX_MTU).
func TestKernelPathMTU(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback device: %v", err)
	}
	for _, a := range []string{"127.0.0.1", "::ffff:127.0.0.1"} {
		got, err := KernelPathMTU(netip.MustParseAddr(a))
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if want := min(lo.MTU, 65535); got != want {
			t.Errorf("%s: path MTU %d, want the loopback's %d", a, got, want)
		}
	}
}
