package bind

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
)

// UDPConn is the socket a ConnBind reads: a *net.UDPConn, or the NAT
// emulator's conn in tests.
type UDPConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	LocalAddr() net.Addr
	Close() error
}

// ListenFunc opens the socket for a port (0 picks one).
type ListenFunc func(port uint16) (UDPConn, error)

// ConnBind is a plain conn.Bind over one UDPConn, one packet per call. It is
// the inner Bind where StdNetBind can't be used: on the NAT emulator, and
// wherever a caller hands meshnode its socket.
type ConnBind struct {
	listen ListenFunc

	mu sync.Mutex
	c  UDPConn
}

// NewConnBind returns a ConnBind that opens sockets with listen.
func NewConnBind(listen ListenFunc) *ConnBind { return &ConnBind{listen: listen} }

// Open opens the socket.
func (b *ConnBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	c, err := b.listen(port)
	if err != nil {
		return nil, 0, fmt.Errorf("listen on UDP port %d: %w", port, err)
	}
	ua, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok {
		c.Close()
		return nil, 0, fmt.Errorf("listen on UDP port %d: local address %v is not UDP", port, c.LocalAddr())
	}
	b.c = c
	recv := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, from, err := c.ReadFromUDPAddrPort(bufs[0])
		if err != nil {
			return 0, err
		}
		sizes[0] = n
		eps[0] = &conn.StdNetEndpoint{AddrPort: from}
		return 1, nil
	}
	return []conn.ReceiveFunc{recv}, uint16(ua.Port), nil
}

// Close closes the socket; blocked receives return net.ErrClosed.
func (b *ConnBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c == nil {
		return nil
	}
	err := b.c.Close()
	b.c = nil
	return err
}

// SetMark is not supported on an injected socket; it is a no-op, as in
// wireguard-go's StdNetBind on systems without fwmark.
func (b *ConnBind) SetMark(uint32) error { return nil }

// BatchSize is 1: one packet per read.
func (b *ConnBind) BatchSize() int { return 1 }

// ParseEndpoint parses ip:port.
func (b *ConnBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", s, err)
	}
	return &conn.StdNetEndpoint{AddrPort: ap}, nil
}

// errNotOpen is returned by Send while closed.
var errNotOpen = errors.New("socket is not open")

// Send writes each packet to the endpoint's address.
func (b *ConnBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.mu.Lock()
	c := b.c
	b.mu.Unlock()
	if c == nil {
		return errNotOpen
	}
	se, ok := ep.(*conn.StdNetEndpoint)
	if !ok {
		return fmt.Errorf("send to %T: want an address endpoint", ep)
	}
	for _, p := range bufs {
		if _, err := c.WriteToUDPAddrPort(p, se.AddrPort); err != nil {
			return err
		}
	}
	return nil
}
