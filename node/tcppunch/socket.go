// Package tcppunch gives meshnode a direct TCP path between two nodes where
// UDP is blocked but TCP passes: TCP hole punching by simultaneous open
// (RFC 9293 §3.5, figure 7; Ford, Srisuresh and Kegel 2005, §4).
//
// Each node keeps a TCP connection to the coordinator open from a fixed
// local port; the coordinator reports the public mapping it sees for that
// connection to the node's peers. To punch, both nodes listen on that port
// and connect from it to each other's mapping at the same time: the SYNs
// cross, each NAT takes the other's SYN as the answer to its own, and the
// connection completes either as a simultaneous open or as an accept. Both
// ends then prove their node keys, and the connection carries relay data
// frames (internal/wire) exactly as a stream to a relay does.
//
// A node holds one Listener on its punch port and punches every peer
// through it; Dialer gives the coordinator connection the same port.
//
// It works across NATs with endpoint-independent mapping (cone NATs) that
// drop unsolicited SYNs, as home routers' firewalls do. A NAT that answers
// them with a reset lets the punch through only when the two SYNs cross in
// flight, so both punches must start on the coordinator's cue; symmetric
// NATs need the TCP relay.
package tcppunch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshnode/meshnode/internal/underlay"
)

// TCP keepalive on every punched socket. A path that idles (WireGuard is
// quiet between keepalives) must still notice a dead peer or a NAT that
// dropped the flow, and the probes refresh the NATs' TCP state on the way.
const (
	// keepAliveIdle is the idle time before the first probe: well under the
	// shortest TCP-established NAT timeouts seen on home gateways (minutes),
	// short enough that a dead path is found in under a minute.
	keepAliveIdle = 15 * time.Second
	// keepAliveInterval spaces unanswered probes.
	keepAliveInterval = 5 * time.Second
	// keepAliveCount unanswered probes declare the connection dead
	// (15 s + 3 × 5 s = 30 s), after which Run returns.
	keepAliveCount = 3
)

// keepAlive is the keepalive every socket of this package uses.
var keepAlive = net.KeepAliveConfig{
	Enable:   true,
	Idle:     keepAliveIdle,
	Interval: keepAliveInterval,
	Count:    keepAliveCount,
}

// reuseControl sets SO_REUSEADDR and SO_REUSEPORT before bind, so the node's
// connection to the coordinator, the punch listener and every connect
// attempt can share one local port: the port whose public mapping the
// coordinator saw. Linux needs SO_REUSEPORT on every socket to let a
// listener and connected sockets share a port; BSD-family systems need it
// for any sharing at all.
func reuseControl(network, address string, c syscall.RawConn) error {
	var opErr error
	err := c.Control(func(fd uintptr) {
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			opErr = fmt.Errorf("set SO_REUSEADDR on %s %s: %w", network, address, err)
			return
		}
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			opErr = fmt.Errorf("set SO_REUSEPORT on %s %s: %w", network, address, err)
		}
	})
	return errors.Join(err, opErr)
}

// Dialer returns a dialer for punches whose connections come from
// localPort (FromPort), with this package's keepalive.
func Dialer(localPort uint16) *net.Dialer {
	return FromPort(&net.Dialer{Control: underlay.Control, Resolver: underlay.Resolver, KeepAliveConfig: keepAlive}, localPort)
}

// FromPort returns a copy of d whose connections come from localPort, with
// SO_REUSEADDR and SO_REUSEPORT set after d's own Control. Use it for the
// node's connection to the coordinator, so the mapping the coordinator
// reports is the one Punch reuses; keep that connection open, it holds
// the NAT's mapping. Port 0 lets the kernel pick; read the chosen port
// from the connection's LocalAddr.
func FromPort(d *net.Dialer, localPort uint16) *net.Dialer {
	c := *d
	c.LocalAddr = &net.TCPAddr{Port: int(localPort)}
	base := d.Control
	c.Control = func(network, address string, rc syscall.RawConn) error {
		if base != nil {
			if err := base(network, address, rc); err != nil {
				return err
			}
		}
		return reuseControl(network, address, rc)
	}
	return &c
}

// Listen listens for TCP on localPort on every address, sharing the port
// with Dialer's connections.
func Listen(ctx context.Context, localPort uint16) (net.Listener, error) {
	lc := net.ListenConfig{Control: underlay.Chain(reuseControl), KeepAliveConfig: keepAlive}
	addr := net.JoinHostPort("", strconv.Itoa(int(localPort)))
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on tcp port %d with port reuse: %w", localPort, err)
	}
	return ln, nil
}
