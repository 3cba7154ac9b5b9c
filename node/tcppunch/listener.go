package tcppunch

import (
	"context"
	"fmt"
	"net"
	"sync"
)

// Listener is a node's punch port: one listener that all punches from the
// port share, each getting the connections from its own peer's mapping.
// Separate listeners on one SO_REUSEPORT port would not do: Linux spreads
// incoming SYNs over them by a hash of the 4-tuple, so punches would take
// each other's connections.
type Listener struct {
	ln   net.Listener
	port uint16
	wg   sync.WaitGroup

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
	l := &Listener{ln: ln, port: addrPort(ln.Addr()).Port()}
	l.wg.Go(l.acceptLoop)
	return l, nil
}

// Port is the local port: dial the coordinator from it with Dialer.
func (l *Listener) Port() uint16 { return l.port }

// Punch is the package's Punch through this listener; any number may run at
// once. o.LocalPort may be 0 for the listener's port.
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

// acceptLoop hands each connection to the punch it belongs to, until the
// listener closes. A connection no punch expects is closed unread.
func (l *Listener) acceptLoop() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if pn := l.route(c); pn != nil {
			// Under mu, so remove can't let the punch finish meanwhile.
			pn.candidate(c, "accept")
		} else {
			c.Close()
		}
		l.mu.Unlock()
	}
}

// route picks the punch for c: the one whose peer mapping is c's source,
// else the oldest punching that address (a NAT may give the connection
// another port than it gave the peer's coordinator connection; the
// handshake then tells whether it is the peer). Callers hold mu.
func (l *Listener) route(c net.Conn) *puncher {
	from := addrPort(c.RemoteAddr())
	var byAddr *puncher
	for _, pn := range l.punches {
		switch {
		case pn.remote == from:
			return pn
		case byAddr == nil && pn.remote.Addr() == from.Addr():
			byAddr = pn
		}
	}
	return byAddr
}
