package meshlab

import (
	"io"
	"net"
	"sync"
	"time"
)

// Proxy stands between the nodes and the coordinator's HTTPS port, so a test
// can make the coordinator hang (connections stay open, nothing crosses) or
// answer slowly, the way an overloaded or wedged control plane does.
type Proxy struct {
	ln     net.Listener
	target string
	done   chan struct{}
	wg     sync.WaitGroup
	closed sync.Once

	mu     sync.Mutex
	thawed chan struct{} // closed while traffic flows
	delay  time.Duration
	conns  map[net.Conn]struct{}
}

// proxyChunk bounds one forwarded read.
const proxyChunk = 32 << 10

// newProxy forwards connections on ln to target until Close.
func newProxy(ln net.Listener, target string) *Proxy {
	p := &Proxy{ln: ln, target: target, done: make(chan struct{}), thawed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	close(p.thawed)
	p.wg.Go(p.accept)
	return p
}

// Freeze stops all traffic both ways, on open connections and new ones,
// leaving every TCP connection open, even one the coordinator closes: the
// coordinator hangs, or its host is lost.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
		p.thawed = make(chan struct{})
	default:
	}
}

// Thaw lets traffic flow again.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
	default:
		close(p.thawed)
	}
}

// Cut closes every open connection, and lets new ones through: the
// nodes' streams drop, as in a network blip, and they reconnect.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// SetDelay holds every forwarded chunk for d: a coordinator that answers
// slowly.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Close stops the proxy and closes its connections; later calls do
// nothing.
func (p *Proxy) Close() {
	p.closed.Do(func() {
		close(p.done)
		p.ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, up) {
			return
		}
		p.wg.Go(func() { p.pipe(up, c) })
		p.wg.Go(func() { p.pipe(c, up) })
	}
}

// track records a connection pair for Close; false once closed.
func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		for _, c := range conns {
			c.Close()
		}
		return false
	default:
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies src to dst through the gate and the delay.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, proxyChunk)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.pass() {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			// The end of a connection crosses the gate too: a hung
			// coordinator's host sends no FIN or RST.
			if !p.pass() || err != io.EOF {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}

// pass waits until traffic may flow and the delay has passed; false when
// the proxy closes meanwhile.
func (p *Proxy) pass() bool {
	p.mu.Lock()
	thawed, delay := p.thawed, p.delay
	p.mu.Unlock()
	select {
	case <-thawed:
	case <-p.done:
		return false
	}
	if delay <= 0 {
		return true
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.done:
		return false
	}
}
