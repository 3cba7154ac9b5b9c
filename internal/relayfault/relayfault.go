// Package relayfault makes a relay misbehave, for tests that perform the
// attack of a relay node that stops carrying traffic: it wraps the socket
// a relay serves on (relay.Server.ServeUDP) and drops what a broken or
// hostile relay would not carry. The relay itself runs unchanged.
package relayfault

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Mode is how the relay misbehaves.
type Mode int32

const (
	// None carries everything.
	None Mode = iota
	// DropData binds nodes (hello, challenge, auth and OK pass) but
	// forwards no data frame: a relay that silently drops all traffic.
	DropData
	// DropPeerData forwards a node's frames to itself (its echoes) and
	// drops those between peers: a relay that passes the checks it can
	// recognise and drops the traffic.
	DropPeerData
	// Silent answers nothing: a crashed relay server behind a live node.
	Silent
)

// maxKeys bounds the addresses remembered for DropPeerData.
const maxKeys = 1024

// Conn is a relay's socket with a fault. It is safe for concurrent use.
type Conn struct {
	net.PacketConn
	mode atomic.Int32
	// Dropped counts the datagrams the fault swallowed.
	Dropped atomic.Uint64

	mu sync.Mutex
	// keys is the key each address said hello with: where a data frame
	// goes back to its own source.
	keys map[netip.AddrPort]crypto.PublicKey
}

// Wrap puts pc behind a fault, initially None.
func Wrap(pc net.PacketConn) *Conn {
	return &Conn{PacketConn: pc, keys: make(map[netip.AddrPort]crypto.PublicKey)}
}

// Set changes the fault; it applies to the next datagram.
func (c *Conn) Set(m Mode) { c.mode.Store(int32(m)) }

// ReadFrom reads the next datagram the fault lets through.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		if Mode(c.mode.Load()) == Silent {
			c.Dropped.Add(1)
			continue
		}
		if f, err := wire.ParseRelay(b[:n]); err == nil && f.Type == wire.RelayHello {
			c.remember(addr, f.Key)
		}
		return n, addr, nil
	}
}

// WriteTo sends b unless the fault drops it; a dropped datagram looks sent.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.drops(b, addr) {
		c.Dropped.Add(1)
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, addr)
}

func (c *Conn) drops(b []byte, addr net.Addr) bool {
	switch Mode(c.mode.Load()) {
	case Silent:
		return true
	case DropData, DropPeerData:
		f, err := wire.ParseRelay(b)
		if err != nil || f.Type != wire.RelayData {
			return false
		}
		if Mode(c.mode.Load()) == DropData {
			return true
		}
		// The frame names its source; it is an echo when the source is
		// the node it goes to.
		k, ok := c.keyAt(addr)
		return !ok || k != f.Key
	}
	return false
}

func (c *Conn) remember(addr net.Addr, k crypto.PublicKey) {
	ap, ok := addrPort(addr)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.keys) >= maxKeys {
		clear(c.keys)
	}
	c.keys[ap] = k
}

func (c *Conn) keyAt(addr net.Addr) (crypto.PublicKey, bool) {
	ap, ok := addrPort(addr)
	if !ok {
		return crypto.PublicKey{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.keys[ap]
	return k, ok
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}
