// Package admit bounds the connections a server holds for clients that
// have not yet proven who they are. A stranger opens connections for free;
// each costs the server a socket, a goroutine and TLS state until it
// authenticates or goes. A Gate caps these pending connections per source
// (an IPv4 address, or an IPv6 /64: what one host or one site holds) and in
// total, closes each one that has not authenticated by a deadline, and,
// when full, closes the oldest of the source holding the most for a new
// one. A flood therefore delays no one from a source that holds fewer, and
// never touches a connection that authenticated. Budgets bound, the same
// way per source, what strangers may have of what a server gives away.
package admit

import (
	"container/list"
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound the pending connections.
type Limits struct {
	PerSource int           // from one source; more are closed at once
	Total     int           // in all; when full, a new one evicts another
	Timeout   time.Duration // from accept to Promote; then it is closed
}

// Reasons a Gate closes a pending connection, as Count gets them.
const (
	ClosedPerSource = "per_source" // its source already held PerSource
	ClosedEvicted   = "evicted"    // the gate was full and its source held the most
	ClosedTimeout   = "timeout"    // it had not authenticated by Timeout
	ClosedGone      = "gone"       // its client had given up while it waited to be accepted
)

// Gate tracks pending connections. It is safe for concurrent use.
type Gate struct {
	lim   Limits
	count func(reason string)

	// promoted is when a connection was last promoted, in Unix
	// nanoseconds: whether the pending connections are getting through.
	promoted atomic.Int64

	mu      sync.Mutex
	pending int
	sources map[netip.Prefix]*list.List // of *Conn, oldest first
}

// New returns a Gate. count, if not nil, is told each closed connection's
// reason; it must not block.
func New(lim Limits, count func(reason string)) *Gate {
	if count == nil {
		count = func(string) {}
	}
	return &Gate{lim: lim, count: count, sources: make(map[netip.Prefix]*list.List)}
}

// Pending is the number of connections that have not authenticated.
func (g *Gate) Pending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending
}

// Listener returns ln with each accepted connection pending in g: a *Conn
// that the server must Promote once its client has authenticated.
func (g *Gate) Listener(ln net.Listener) net.Listener { return &listener{Listener: ln, g: g} }

type listener struct {
	net.Listener
	g *Gate
}

// Accept returns the next admitted connection; those refused are closed
// without a word. So are those whose client has left already: when
// thousands connect at once, many wait in the kernel's listen queue longer
// than their client does, and a TLS handshake with one that has gone is
// CPU spent for nobody, taken from the clients still waiting.
func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if peerGone(c) {
			c.Close()
			l.g.count(ClosedGone)
			continue
		}
		if pc := l.g.admit(c); pc != nil {
			return pc, nil
		}
	}
}

// Conn is a connection accepted through a Gate.
type Conn struct {
	net.Conn
	g     *Gate
	src   netip.Prefix
	elem  *list.Element // in its source's list while pending; guarded by g.mu
	timer *time.Timer
}

// Promote tells the gate the client has authenticated: the connection is
// no longer pending, counted or timed.
func (c *Conn) Promote() {
	c.timer.Stop()
	if c.g.release(c) {
		c.g.promoted.Store(time.Now().UnixNano())
	}
}

// SincePromoted is how long ago a connection was last promoted; the
// time since the Unix epoch when none was.
func (g *Gate) SincePromoted() time.Duration {
	return time.Since(time.Unix(0, g.promoted.Load()))
}

// Extend gives a pending connection d from now to authenticate or go,
// for a request it carries that may take longer than Timeout to answer.
func (c *Conn) Extend(d time.Duration) {
	c.g.mu.Lock()
	defer c.g.mu.Unlock()
	if c.elem != nil {
		c.timer.Reset(d)
	}
}

// Close closes the connection and releases its place.
func (c *Conn) Close() error {
	c.timer.Stop()
	c.g.release(c)
	return c.Conn.Close()
}

func (c *Conn) expire() {
	if c.g.release(c) {
		c.g.count(ClosedTimeout)
		c.Conn.Close()
	}
}

// admit takes c in as pending, or closes it; it returns nil then.
func (g *Gate) admit(c net.Conn) *Conn {
	src := sourceOf(c.RemoteAddr())
	g.mu.Lock()
	l := g.sources[src]
	if l != nil && l.Len() >= g.lim.PerSource {
		g.mu.Unlock()
		c.Close()
		g.count(ClosedPerSource)
		return nil
	}
	var evicted *Conn
	if g.pending >= g.lim.Total {
		evicted = g.evictLocked()
	}
	if l == nil {
		l = list.New()
		g.sources[src] = l
	}
	pc := &Conn{Conn: c, g: g, src: src}
	pc.elem = l.PushBack(pc)
	g.pending++
	// Set before the Conn is handed out, so Promote and Close see it.
	pc.timer = time.AfterFunc(g.lim.Timeout, pc.expire)
	g.mu.Unlock()
	if evicted != nil {
		evicted.timer.Stop()
		evicted.Conn.Close()
		g.count(ClosedEvicted)
	}
	return pc
}

// evictLocked removes the oldest connection of the source holding the most
// and returns it for the caller to close outside the lock. Caller holds mu.
func (g *Gate) evictLocked() *Conn {
	var most *list.List
	for _, l := range g.sources {
		if most == nil || l.Len() > most.Len() {
			most = l
		}
	}
	if most == nil {
		return nil
	}
	c := most.Front().Value.(*Conn)
	g.removeLocked(c)
	return c
}

// release removes c from the pending connections and reports whether it
// was one.
func (g *Gate) release(c *Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.elem == nil {
		return false
	}
	g.removeLocked(c)
	return true
}

func (g *Gate) removeLocked(c *Conn) {
	l := g.sources[c.src]
	l.Remove(c.elem)
	c.elem = nil
	g.pending--
	if l.Len() == 0 {
		delete(g.sources, c.src)
	}
}

// sourceOf is the share a remote address counts against (Source).
// Unparsable addresses share one share.
func sourceOf(a net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}
	}
	return Source(ap.Addr())
}

type ctxKey struct{}

// ConnContext is for http.Server.ConnContext: it gives a request's context
// the gated connection it came on, for Promote.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if pc, ok := c.(*Conn); ok {
		return context.WithValue(ctx, ctxKey{}, pc)
	}
	return ctx
}

// Promote promotes the gated connection a request came on (see
// ConnContext), if any.
func Promote(ctx context.Context) {
	if pc, ok := ctx.Value(ctxKey{}).(*Conn); ok {
		pc.Promote()
	}
}

// Extend extends the deadline of the gated connection a request came on,
// if any.
func Extend(ctx context.Context, d time.Duration) {
	if pc, ok := ctx.Value(ctxKey{}).(*Conn); ok {
		pc.Extend(d)
	}
}
