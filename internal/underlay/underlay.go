// Package underlay marks the node's own sockets: the ones that carry the
// mesh over the real network (WireGuard's UDP socket, the coordinator's
// stream, relays, STUN, TCP punching, port mapping). Routes into the
// overlay (a subnet route, an exit node's default routes) must never
// capture them, or the tunnel would carry itself. On Linux meshnode's
// routes live in their own table, and the policy rule that sends traffic
// there skips packets with Mark (tun.Routes), as wg-quick and Tailscale do:
// the node's own packets follow the host's routes whatever the overlay
// routes, so no underlay address (the coordinator, a relay, every
// candidate of every peer) needs a route of its own.
package underlay

import (
	"context"
	"net"
	"syscall"
)

// Mark is the firewall mark of the node's sockets (SO_MARK), "mn"; the
// policy rule looks only at the bits in Mask, so other users of marks keep
// the rest.
const (
	Mark uint32 = 0x6d6e0000
	Mask uint32 = 0xffff0000
)

// Control marks a socket before it binds or connects: a net.Dialer's or
// net.ListenConfig's Control.
func Control(_, _ string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) { err = SetFD(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}

// Chain runs Control, then each of more, as one Control.
func Chain(more ...func(network, address string, c syscall.RawConn) error) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if err := Control(network, address, c); err != nil {
			return err
		}
		for _, f := range more {
			if err := f(network, address, c); err != nil {
				return err
			}
		}
		return nil
	}
}

// Dialer is a net.Dialer whose sockets, its name lookups' included, are
// marked.
func Dialer() *net.Dialer { return &net.Dialer{Control: Control, Resolver: Resolver} }

// Resolver looks names up from marked sockets: the coordinator's name
// resolves while an exit node is chosen but unreachable, so the node
// reaches the coordinator and hears that it is. (A local stub resolver,
// such as systemd-resolved, asks upstream from its own sockets, which
// follow the exit node's routes.)
var Resolver = &net.Resolver{
	PreferGo: true,
	Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		return (&net.Dialer{Control: Control}).DialContext(ctx, network, address)
	},
}

// ListenUDP is net.ListenUDP with the socket marked.
func ListenUDP(network string, laddr *net.UDPAddr) (*net.UDPConn, error) {
	addr := ""
	if laddr != nil {
		addr = laddr.String()
	}
	c, err := ListenPacket(network, addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// ListenPacket is net.ListenPacket with the socket marked.
func ListenPacket(network, address string) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: Control}
	return lc.ListenPacket(context.Background(), network, address)
}

// DialUDP is net.DialUDP with the socket marked.
func DialUDP(network string, raddr *net.UDPAddr) (*net.UDPConn, error) {
	c, err := Dialer().Dial(network, raddr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}
