package pmtu

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/meshnode/meshnode/internal/underlay"
)

// KernelPathMTU is the path MTU the kernel holds for dst: the route's MTU,
// lowered by ICMP "too big" the host received (a route exception, IP_MTU in
// ip(7)). The node's socket fragments datagrams larger than it (Linux's
// default IP_PMTUDISC_WANT), so a probe above it would arrive in fragments
// and prove nothing; and a UDP GSO batch whose segments exceed it is refused
// (EMSGSIZE). A connected UDP socket reads it: connect sends nothing.
func KernelPathMTU(dst netip.Addr) (int, error) {
	dst = dst.Unmap()
	var (
		family, level, opt int
		sa                 unix.Sockaddr
	)
	switch {
	case dst.Is4():
		family, level, opt = unix.AF_INET, unix.IPPROTO_IP, unix.IP_MTU
		sa = &unix.SockaddrInet4{Port: discardPort, Addr: dst.As4()}
	case dst.Is6():
		family, level, opt = unix.AF_INET6, unix.IPPROTO_IPV6, unix.IPV6_MTU
		sa = &unix.SockaddrInet6{Port: discardPort, Addr: dst.As16()}
	default:
		return 0, fmt.Errorf("path MTU to %v: not an IP address", dst)
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("path MTU to %v: %w", dst, err)
	}
	defer unix.Close(fd)
	// The route to dst that the node's own packets take, not a route
	// into the overlay.
	if err := underlay.SetFD(fd); err != nil {
		return 0, fmt.Errorf("path MTU to %v: %w", dst, err)
	}
	if err := unix.Connect(fd, sa); err != nil {
		return 0, fmt.Errorf("path MTU to %v: %w", dst, err)
	}
	mtu, err := unix.GetsockoptInt(fd, level, opt)
	if err != nil {
		return 0, fmt.Errorf("path MTU to %v: %w", dst, err)
	}
	return mtu, nil
}

// discardPort is the port the query connects to: any would do, as nothing
// is sent (RFC 863's discard service, for the reader of a packet trace).
const discardPort = 9
