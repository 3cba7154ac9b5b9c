package natlab

import (
	"container/heap"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Automatic addresses on the lab internet (198.18.0.0/15, RFC 2544
// benchmarking space): hosts count up from 198.18.0.1, NAT public sides from
// 198.18.1.1, so a log line tells them apart at a glance.
var (
	internetHostBase = netip.AddrFrom4([4]byte{198, 18, 0, 1})
	internetNATBase  = netip.AddrFrom4([4]byte{198, 18, 1, 1})
)

// Lab is one emulated network: an internet, the NATs on it (and behind each
// other) and the hosts on each network. All state sits behind one mutex, so
// a packet crosses the whole topology atomically. The zero value is not
// usable; call New.
type Lab struct {
	logf func(format string, args ...any)

	mu       sync.Mutex
	closed   bool
	internet *network
	nats     []*NAT  // creation order; numbers the inside LANs
	hosts    []*Host // every host, so Close reaches every Conn
	delays   delayQueue
	delaySeq uint64 // tie-break so equal due times keep send order

	wake chan struct{} // a new head of the delay queue
	done chan struct{} // closed by Close
	wg   sync.WaitGroup
}

// New returns an empty lab. logf, if not nil, receives one line per packet
// hop (see doc.go); it is called with the lab's lock held, so it must not
// call back into the lab. Close the lab when done.
func New(logf func(format string, args ...any)) *Lab {
	l := &Lab{
		logf:     logf,
		internet: newNetwork("internet", nil, internetHostBase, internetNATBase),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	l.wg.Go(l.runDelays)
	return l
}

// Close closes every Conn (unblocking their readers), drops packets still
// in flight and stops the delay goroutine. It is safe to call twice.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	for _, h := range l.hosts {
		for _, c := range h.conns {
			c.shutdown()
		}
		clear(h.conns)
	}
	l.delays = nil
	l.mu.Unlock()
	close(l.done)
	l.wg.Wait()
	return nil
}

// NewHost adds a host on the internet. With no ips it gets the next free
// address from 198.18.0.1; pass two for a server that needs a second IP
// (RFC 5780 OTHER-ADDRESS). It panics on an empty name or an address that
// is invalid or already in use, as those are mistakes in the test itself.
func (l *Lab) NewHost(name string, ips ...netip.Addr) *Host {
	return l.newHost(l.internet, name, ips)
}

// send injects a packet a Conn wrote: the sender's loss and latency apply,
// then it is routed from the sender's network.
func (l *Lab) send(p *packet) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	h := p.from
	h.stats.Sent++
	if h.loss > 0 && h.lossRNG.Float64() < h.loss {
		h.stats.Lost++
		l.logPacket(p, "lost (%s loses %.0f%% of what it sends)", h.name, h.loss*100)
		return
	}
	if h.latency > 0 {
		l.delaySeq++
		heap.Push(&l.delays, delayed{due: time.Now().Add(h.latency), seq: l.delaySeq, p: p})
		if l.delays[0].p == p {
			select {
			case l.wake <- struct{}{}:
			default:
			}
		}
		return
	}
	l.route(p, h.net)
}

// route forwards p on network n: to a host there, to a NAT whose public side
// is there, else up through the NAT whose inside n is. The internet has no
// default route.
func (l *Lab) route(p *packet, n *network) {
	dst := p.dst.Addr()
	if h := n.hosts[dst]; h != nil {
		l.deliver(p, h)
		return
	}
	if nat := n.nats[dst]; nat != nil {
		nat.fromUpstream(p)
		return
	}
	if n.nat != nil {
		n.nat.outbound(p)
		return
	}
	l.logPacket(p, "dropped (no route to %v on the %s)", dst, n.name)
}

// deliver queues p on the destination host's socket.
func (l *Lab) deliver(p *packet, h *Host) {
	c := h.conns[p.dst]
	if c == nil {
		h.stats.NoSocket++
		l.logPacket(p, "dropped (%s has no socket on %v)", h.name, p.dst)
		return
	}
	if !c.enqueue(p.src, p.data) {
		h.stats.QueueFull++
		l.logPacket(p, "dropped (%s receive queue full, %d packets)", h.name, QueueLen)
		return
	}
	h.stats.Received++
	l.logPacket(p, "delivered to %s", h.name)
}

// runDelays routes delayed packets when due, in (due, send order) order, so
// latency never reorders packets beyond what their delays imply.
func (l *Lab) runDelays() {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		l.mu.Lock()
		now := time.Now()
		for len(l.delays) > 0 && !l.delays[0].due.After(now) {
			d := heap.Pop(&l.delays).(delayed)
			l.route(d.p, d.p.from.net)
		}
		if len(l.delays) > 0 {
			timer.Reset(l.delays[0].due.Sub(now))
		} else {
			timer.Stop()
		}
		l.mu.Unlock()
		select {
		case <-l.done:
			return
		case <-l.wake:
		case <-timer.C:
		}
	}
}

// nameSeed derives a repeatable RNG seed from a name.
func nameSeed(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// errClosedLab is returned when creating things on a closed lab.
func errClosedLab(what string) error {
	return fmt.Errorf("natlab: %s: lab is closed: %w", what, net.ErrClosed)
}
