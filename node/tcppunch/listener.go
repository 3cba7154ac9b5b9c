package tcppunch

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// maxRouting bounds accepted connections whose hello is still awaited;
// more are closed unread.
const maxRouting = 16

// Listener is a node's punch port: one listener that all punches from the
// port share. It reads each accepted connection's hello and hands the
// connection to the punch for the key it claims, from that peer's address.
// Separate listeners on one SO_REUSEPORT port would not do: Linux spreads
// incoming SYNs over them by a hash of the 4-tuple, so punches would take
// each other's connections.
type Listener struct {
	ln      net.Listener
	port    uint16
	closing context.Context // ends at Close, cutting short hellos awaited
	close   context.CancelFunc
	routing chan struct{} // maxRouting tokens
	wg      sync.WaitGroup

	mu      sync.Mutex
	punches []*puncher // in progress, oldest first
}

// NewListener listens on localPort (0 picks a free port; see Port) for the
// punches made through it. Close it when the node no longer punches.
func NewListener(ctx context.Context, localPort uint16) (*Listener, error) {
	ln, err := Listen(ctx, localPort)
	if err != nil {
		return nil, err
	}
	closing, cancel := context.WithCancel(context.Background())
	l := &Listener{ln: ln, port: addrPort(ln.Addr()).Port(), closing: closing, close: cancel, routing: make(chan struct{}, maxRouting)}
	l.wg.Go(l.acceptLoop)
	return l, nil
}

// Port is the local port: dial the coordinator from it with Dialer.
func (l *Listener) Port() uint16 { return l.port }

// Punch is the package's Punch through this listener; any number may run at
// once, one per peer. o.LocalPort may be 0 for the listener's port.
func (l *Listener) Punch(ctx context.Context, o Options) (*Path, error) {
	if o.LocalPort == 0 {
		o.LocalPort = l.port
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.LocalPort != l.port {
		return nil, fmt.Errorf("tcp punch: LocalPort %d differs from the listener's port %d; punch from the port the listener holds", o.LocalPort, l.port)
	}
	return l.punch(ctx, o)
}

// Close stops listening. Punches still running go on by connecting only.
func (l *Listener) Close() error {
	l.close()
	err := l.ln.Close()
	l.wg.Wait()
	if err != nil {
		return fmt.Errorf("close tcp punch listener on port %d: %w", l.port, err)
	}
	return nil
}

func (l *Listener) add(pn *puncher) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.punches = append(l.punches, pn)
}

func (l *Listener) remove(pn *puncher) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, p := range l.punches {
		if p == pn {
			l.punches = append(l.punches[:i], l.punches[i+1:]...)
			return
		}
	}
}

// expects reports whether a punch is under way to a peer at addr.
func (l *Listener) expects(addr netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, pn := range l.punches {
		if pn.remote.Addr() == addr {
			return true
		}
	}
	return false
}

// acceptLoop routes accepted connections until the listener closes. One
// from an address no punch is aimed at is closed unread.
func (l *Listener) acceptLoop() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		if !l.expects(addrPort(c.RemoteAddr()).Addr()) {
			c.Close()
			continue
		}
		select {
		case l.routing <- struct{}{}:
		default:
			c.Close()
			continue
		}
		l.wg.Go(func() {
			defer func() { <-l.routing }()
			l.route(c)
		})
	}
}

// route reads c's hello and hands c to the punch for the claimed key, when
// that punch aims at c's address; the punch's handshake then checks the
// claim. Anything else is closed.
func (l *Listener) route(c net.Conn) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	stop := context.AfterFunc(l.closing, func() { c.SetDeadline(time.Now()) })
	key, challenge, err := readHello(c)
	if !stop() || err != nil {
		c.Close()
		return
	}
	from := addrPort(c.RemoteAddr()).Addr()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, pn := range l.punches {
		if pn.o.Peer == key && pn.remote.Addr() == from {
			// Under mu, so remove can't let the punch finish meanwhile.
			// The punch sets c's deadlines from here on.
			pn.candidate(c, "accept", &hello{key, challenge})
			return
		}
	}
	c.Close()
}
