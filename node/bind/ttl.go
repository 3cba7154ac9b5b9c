package bind

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
)

// A packet with a small TTL (IPv6: hop limit) opens this side's NAT mapping
// towards a peer and dies at the next router or so, before the peer's NAT:
// the path manager primes a punch with one (path: ordered punching). The
// TTL is set per packet, as a control message, never on the socket, so the
// WireGuard packets sent meanwhile keep the system's default.

// ErrNoTTL means the socket can't send a packet with its own TTL here.
var ErrNoTTL = errors.New("sending with a chosen TTL is not supported here")

// maxTTL is the largest IPv4 TTL and IPv6 hop limit (8-bit fields).
const maxTTL = 255

// TTLSender is an inner conn.Bind that can send one packet from its socket
// with a given TTL; CanSendTTL reports whether it can now.
type TTLSender interface {
	SendTTL(pkt []byte, to netip.AddrPort, ttl int) error
	CanSendTTL() bool
}

// TTLConn is a socket that can send one packet with a given TTL: the NAT
// emulator's conn.
type TTLConn interface {
	WriteToUDPAddrPortTTL(b []byte, addr netip.AddrPort, ttl int) (int, error)
}

// WriteTTL sends a raw packet with the given TTL from socket sock: 0 is the
// shared socket, others are auxiliary (the birthday technique's). It
// returns ErrNoTTL when that socket can't.
func (b *Bind) WriteTTL(pkt []byte, to netip.AddrPort, sock, ttl int) error {
	if ttl < 1 || ttl > maxTTL {
		return fmt.Errorf("TTL %d: use 1-%d", ttl, maxTTL)
	}
	b.mu.RLock()
	open, aux := b.open, b.aux[sock]
	b.mu.RUnlock()
	switch {
	case !open:
		return ErrClosed
	case sock != 0 && aux == nil:
		return fmt.Errorf("auxiliary socket %d: %w", sock, ErrClosed)
	case sock != 0:
		return writeTTL(aux, pkt, to, ttl)
	}
	s, ok := b.inner.(TTLSender)
	if !ok {
		return ErrNoTTL
	}
	return s.SendTTL(pkt, to, ttl)
}

// CanSendTTL reports whether the shared socket is open and the inner Bind
// can send with a chosen TTL.
func (b *Bind) CanSendTTL() bool {
	b.mu.RLock()
	open := b.open
	b.mu.RUnlock()
	s, ok := b.inner.(TTLSender)
	return open && ok && s.CanSendTTL()
}

// CanSendTTL implements TTLSender: the socket is a TTLConn.
func (b *ConnBind) CanSendTTL() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.c.(TTLConn)
	return ok
}

// SendTTL implements TTLSender when the socket is a TTLConn.
func (b *ConnBind) SendTTL(pkt []byte, to netip.AddrPort, ttl int) error {
	b.mu.Lock()
	c := b.c
	b.mu.Unlock()
	if c == nil {
		return errNotOpen
	}
	tc, ok := c.(TTLConn)
	if !ok {
		return ErrNoTTL
	}
	_, err := tc.WriteToUDPAddrPortTTL(pkt, to, ttl)
	return err
}

// msgConn is a socket that sends with control messages: *net.UDPConn.
type msgConn interface {
	WriteMsgUDPAddrPort(b, oob []byte, addr netip.AddrPort) (n, oobn int, err error)
}

// writeTTL sends one packet with a given TTL from an auxiliary socket: the
// emulator's conn, or a *net.UDPConn with a control message (ttlControl).
func writeTTL(c UDPConn, pkt []byte, to netip.AddrPort, ttl int) error {
	switch c := c.(type) {
	case TTLConn:
		_, err := c.WriteToUDPAddrPortTTL(pkt, to, ttl)
		return err
	case msgConn:
		oob, err := ttlControl(to, ttl)
		if err != nil {
			return err
		}
		_, _, err = c.WriteMsgUDPAddrPort(pkt, oob, to)
		return err
	}
	return ErrNoTTL
}

// StdNet is wireguard-go's StdNetBind (recvmmsg/sendmmsg, UDP GSO/GRO) that
// can also send a packet with its own TTL from the same sockets: on Linux
// it keeps a duplicate of each socket's descriptor for sendmsg with an
// IP_TTL or IPV6_HOPLIMIT control message; elsewhere SendTTL returns
// ErrNoTTL.
type StdNet struct {
	conn.Bind

	// mu guards the duplicates: SendTTL holds it shared for one
	// non-blocking sendmsg; Open and Close take it to swap them.
	mu    sync.RWMutex
	socks ttlSockets
}

// NewStdNet wraps a new wireguard-go StdNetBind.
func NewStdNet() *StdNet { return &StdNet{Bind: conn.NewStdNetBind()} }

// Open opens the StdNetBind, then finds its sockets for SendTTL. A node
// that can't find them still runs; it only sends no low-TTL packets.
func (s *StdNet) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := s.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	socks := findSockets(actual)
	s.mu.Lock()
	old := s.socks
	s.socks = socks
	s.mu.Unlock()
	old.close()
	return fns, actual, nil
}

// Close drops the duplicates first, so the port is free when the
// StdNetBind closes its sockets (a rebind reopens it).
func (s *StdNet) Close() error {
	s.mu.Lock()
	old := s.socks
	s.socks = ttlSockets{}
	s.mu.Unlock()
	old.close()
	return s.Bind.Close()
}

// CanSendTTL implements TTLSender: a socket was found for a family.
func (s *StdNet) CanSendTTL() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.socks.any()
}

// SendTTL implements TTLSender.
func (s *StdNet) SendTTL(pkt []byte, to netip.AddrPort, ttl int) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.socks.send(pkt, to, ttl)
}
