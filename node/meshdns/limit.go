package meshdns

import (
	"net"
	"net/netip"
	"sync"

	"golang.org/x/time/rate"
)

// Limits is how much each source may ask. Sources are this machine and
// its peers (the resolver answers nobody else), so the table of sources
// stays small; a full table admits no new source until one goes idle.
type Limits struct {
	// PerSource is the sustained queries per second of one address,
	// Burst the queries it may send at once.
	PerSource rate.Limit
	Burst     int
	// Sources bounds the addresses tracked at once.
	Sources int
	// TCPConns bounds the TCP connections open at once.
	TCPConns int
}

// DefaultLimits leave a busy machine room (a browser opening a page asks
// dozens of names at once, and with manage-resolv-conf every query of the
// machine comes here) and keep a peer from making the resolver, or its
// upstreams, work for a flood.
func DefaultLimits() Limits {
	return Limits{PerSource: 200, Burst: 400, Sources: 4096, TCPConns: 64}
}

// limiter is a token bucket per source address.
type limiter struct {
	l Limits

	mu  sync.Mutex
	per map[netip.Addr]*rate.Limiter
}

func newLimiter(l Limits) *limiter {
	return &limiter{l: l, per: make(map[netip.Addr]*rate.Limiter)}
}

// allow takes one query from a's budget.
func (l *limiter) allow(a netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.per[a]
	if b == nil {
		if len(l.per) >= l.l.Sources && !l.sweep() {
			return false
		}
		b = rate.NewLimiter(l.l.PerSource, l.l.Burst)
		l.per[a] = b
	}
	return b.Allow()
}

// sweep forgets the sources whose budget is full again (idle since their
// last burst), which a fresh bucket would equal; it reports whether that
// made room. l.mu is held.
func (l *limiter) sweep() bool {
	for a, b := range l.per {
		if b.Tokens() >= float64(l.l.Burst) {
			delete(l.per, a)
		}
	}
	return len(l.per) < l.l.Sources
}

// addrOf is the IP of a socket address (IPv4 unmapped), invalid for any
// other kind.
func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}

// guardConn is the UDP socket as the DNS server reads it: datagrams from a
// source the resolver doesn't answer, or over its budget, are dropped
// before they are parsed, so not even a FORMERR goes back.
type guardConn struct {
	net.PacketConn
	admit func(netip.Addr, bool) bool
}

func (g guardConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := g.PacketConn.ReadFrom(b)
		if err != nil || g.admit(addrOf(from), true) {
			return n, from, err
		}
	}
}

// guardListener is the TCP listener as the DNS server accepts from it:
// connections from a source the resolver doesn't answer, and those beyond
// Limits.TCPConns, are closed at once.
type guardListener struct {
	net.Listener
	admit func(netip.Addr, bool) bool
	slots chan struct{}
}

func (g guardListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !g.admit(addrOf(c.RemoteAddr()), false) {
			c.Close()
			continue
		}
		select {
		case g.slots <- struct{}{}:
			return &slotConn{Conn: c, slots: g.slots}, nil
		default:
			c.Close()
		}
	}
}

// slotConn gives its slot back when closed.
type slotConn struct {
	net.Conn
	slots chan struct{}
	once  sync.Once
}

func (c *slotConn) Close() error {
	c.once.Do(func() { <-c.slots })
	return c.Conn.Close()
}
