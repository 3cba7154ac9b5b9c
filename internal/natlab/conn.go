package natlab

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
)

// QueueLen bounds each Conn's receive queue, like a socket buffer: packets
// arriving at a full queue are dropped and counted (Conn.Dropped).
const QueueLen = 1024

// maxDatagram is the largest UDP payload over IPv4: 65535 - 20 (IP) - 8 (UDP).
const maxDatagram = 65507

// Conn is a UDP socket on a lab host. It implements net.PacketConn with the
// semantics of *net.UDPConn: ReadFrom returns *net.UDPAddr, deadlines give
// errors whose Timeout() is true (os.ErrDeadlineExceeded), and Close makes
// blocked and later calls fail with net.ErrClosed.
type Conn struct {
	host  *Host
	local netip.AddrPort

	mu        sync.Mutex
	cond      sync.Cond // signalled on a new packet, close or deadline change
	queue     []datagram
	closed    bool
	dropped   uint64
	readDL    time.Time
	writeDL   time.Time
	readTimer *time.Timer // wakes blocked readers at readDL
}

var _ net.PacketConn = (*Conn)(nil)

type datagram struct {
	src  netip.AddrPort
	data []byte
}

func newConn(h *Host, local netip.AddrPort) *Conn {
	c := &Conn{host: h, local: local}
	c.cond.L = &c.mu
	return c
}

// ReadFromUDPAddrPort reads one datagram into b (truncating it if b is
// short, as UDP does) and returns its source.
func (c *Conn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		switch {
		case c.closed:
			return 0, netip.AddrPort{}, c.opError("read", netip.AddrPort{}, net.ErrClosed)
		case deadlinePassed(c.readDL):
			return 0, netip.AddrPort{}, c.opError("read", netip.AddrPort{}, os.ErrDeadlineExceeded)
		case len(c.queue) > 0:
			d := c.queue[0]
			c.queue[0] = datagram{}
			c.queue = c.queue[1:]
			return copy(b, d.data), d.src, nil
		}
		c.cond.Wait()
	}
}

// ReadFrom implements net.PacketConn; the address is a *net.UDPAddr.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, src, err := c.ReadFromUDPAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(src), nil
}

// WriteToUDPAddrPort sends b to addr. The bytes are copied, so the caller
// may reuse b at once. With no latency on the sender the packet has been
// delivered or dropped when this returns; a lost or filtered packet is not
// an error, as with real UDP.
func (c *Conn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return c.WriteToUDPAddrPortTTL(b, addr, DefaultTTL)
}

// maxTTL is the largest IPv4 TTL (an 8-bit field).
const maxTTL = 255

// WriteToUDPAddrPortTTL sends b to addr with the given TTL (1-255), as a
// socket does with an IP_TTL control message: each NAT and uplink hop on
// the way spends one (NATConfig.UplinkHops).
func (c *Conn) WriteToUDPAddrPortTTL(b []byte, addr netip.AddrPort, ttl int) (int, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if ttl < 1 || ttl > maxTTL {
		return 0, c.opError("write", addr, fmt.Errorf("bad TTL %d, use 1-%d: %w", ttl, maxTTL, syscall.EINVAL))
	}
	c.mu.Lock()
	closed, dl := c.closed, c.writeDL
	c.mu.Unlock()
	switch {
	case closed:
		return 0, c.opError("write", addr, net.ErrClosed)
	case deadlinePassed(dl):
		return 0, c.opError("write", addr, os.ErrDeadlineExceeded)
	case !addr.IsValid() || !usableIP(addr.Addr()) || addr.Port() == 0:
		return 0, c.opError("write", addr, fmt.Errorf("bad destination %v: %w", addr, syscall.EINVAL))
	case addr.Addr().Is4() != c.local.Addr().Is4():
		// A socket has one address family; an IPv6-only host has no
		// route to IPv4, and the other way round.
		return 0, c.opError("write", addr, fmt.Errorf("%v from %v: %w", addr, c.local, syscall.ENETUNREACH))
	case len(b) > maxDatagram:
		return 0, c.opError("write", addr, fmt.Errorf("%d bytes: %w", len(b), syscall.EMSGSIZE))
	}
	c.host.lab.send(&packet{from: c.host, src: c.local, dst: addr, data: bytes.Clone(b), ttl: ttl})
	return len(b), nil
}

// WriteTo implements net.PacketConn; addr must be a *net.UDPAddr.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || ua == nil {
		return 0, c.opError("write", netip.AddrPort{}, fmt.Errorf("address %v (%T) is not a *net.UDPAddr: %w", addr, addr, syscall.EINVAL))
	}
	return c.WriteToUDPAddrPort(b, ua.AddrPort())
}

// Close closes the socket, freeing its port and unblocking its readers.
func (c *Conn) Close() error {
	lab := c.host.lab
	lab.mu.Lock()
	defer lab.mu.Unlock()
	if c.host.conns[c.local] == c {
		delete(c.host.conns, c.local)
	}
	if !c.shutdown() {
		return c.opError("close", netip.AddrPort{}, net.ErrClosed)
	}
	return nil
}

// shutdown marks the Conn closed and wakes its readers; it reports whether
// the Conn was open.
func (c *Conn) shutdown() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.closed = true
	c.queue = nil
	if c.readTimer != nil {
		c.readTimer.Stop()
	}
	c.cond.Broadcast()
	return true
}

// enqueue queues a datagram; it reports false when the queue is full. The
// lab calls it with l.mu held, and a closed Conn is no longer reachable then.
func (c *Conn) enqueue(src netip.AddrPort, data []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) >= QueueLen {
		c.dropped++
		return false
	}
	c.queue = append(c.queue, datagram{src: src, data: data})
	c.cond.Signal()
	return true
}

// LocalAddrPort returns the bound address.
func (c *Conn) LocalAddrPort() netip.AddrPort { return c.local }

// LocalAddr implements net.PacketConn; it is a *net.UDPAddr.
func (c *Conn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.local) }

// Queued returns how many datagrams wait to be read. With no latency,
// delivery is synchronous, so a test can check right after a write that
// nothing arrived without waiting.
func (c *Conn) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// Dropped returns how many datagrams arrived at a full receive queue.
func (c *Conn) Dropped() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// SetDeadline sets both the read and the write deadline.
func (c *Conn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

// SetReadDeadline makes reads fail with a timeout from t on; the zero time
// means none. It also applies to a read already blocked.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.opError("set", netip.AddrPort{}, net.ErrClosed)
	}
	c.readDL = t
	if c.readTimer != nil {
		c.readTimer.Stop()
		c.readTimer = nil
	}
	if d := time.Until(t); !t.IsZero() && d > 0 {
		c.readTimer = time.AfterFunc(d, c.wakeReaders)
	}
	c.cond.Broadcast()
	return nil
}

// SetWriteDeadline makes writes fail with a timeout from t on. Writes never
// block (a full path drops instead), so only a passed deadline matters.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.opError("set", netip.AddrPort{}, net.ErrClosed)
	}
	c.writeDL = t
	return nil
}

func (c *Conn) wakeReaders() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cond.Broadcast()
}

// opError wraps err the way *net.UDPConn does, so errors.Is(err,
// net.ErrClosed) and net.Error's Timeout work on it.
func (c *Conn) opError(op string, remote netip.AddrPort, err error) error {
	e := &net.OpError{Op: op, Net: "udp", Source: c.LocalAddr(), Err: err}
	if remote.IsValid() {
		e.Addr = net.UDPAddrFromAddrPort(remote)
	}
	return e
}

func deadlinePassed(t time.Time) bool {
	return !t.IsZero() && !time.Now().Before(t)
}
