package pmtu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshnode/meshnode/internal/packet"
	"github.com/meshnode/meshnode/tun"
)

// Guard wraps the TUN device and fits the packets for each peer to its
// path, as a router fits packets to a next hop with a smaller MTU: the TUN
// MTU stays large for the peers whose paths carry it, and for the others
//   - TCP SYNs to and from the peer get their MSS clamped, so TCP never
//     sends a segment the path can't carry;
//   - any other packet too big for the path is refused with ICMP
//     "fragmentation needed" (IPv4 with DF, RFC 1191) or ICMPv6 "packet
//     too big" (RFC 8201), written back into the TUN for its sender.
//
// The packet path takes no lock and allocates nothing; while every path
// carries the TUN MTU it only loads one atomic per batch.
//
// The errors are written into the TUN by a goroutine of their own, never by
// the reader: writing to a TUN may wait for the reader to take what the
// write provoked. gVisor's netstack (the TUN of root-free tests) hands the
// error to TCP at once, TCP resends at once at the smaller size, and the
// resent segment waits in an unbuffered queue that only Read drains, so a
// reader writing the error itself waits for itself.
type Guard struct {
	tun.Device
	table *Table
	Stats GuardStats

	// Read's state: wireguard-go reads the TUN from one goroutine only.
	errBuf  []byte
	nextErr time.Time
	last    lastLookup

	// Errors go to writeErrors through errs in buffers from free.
	errs      chan errMsg
	free      chan []byte
	done      chan struct{}
	closeOnce sync.Once
}

// errMsg is an ICMP error to write into the TUN: buf[offset:].
type errMsg struct {
	buf    []byte
	offset int
}

// errQueue is how many errors may wait for the writer. They are spaced
// errInterval apart: a few cover any pause of the writer, and the packets
// refused meanwhile are dropped unanswered, as a router over its rate does.
const errQueue = 4

// GuardStats counts what the Guard did.
type GuardStats struct {
	Clamped   atomic.Uint64 // SYNs whose MSS was lowered
	Refused   atomic.Uint64 // packets answered with ICMP too-big (the error written)
	Forwarded atomic.Uint64 // oversized packets that may not be refused (IPv4 without DF, IPv6 within 1280), sent as they are
	Dropped   atomic.Uint64 // oversized packets dropped: no error allowed, or over the error rate
}

// errInterval spaces the ICMP errors the Guard writes (RFC 1812 §4.3.2.8
// asks routers to limit them): one is enough to make a sender shrink.
const errInterval = time.Millisecond

// errHeadroom is the room kept before an error for the TUN's write offset
// (wireguard-go writes at device.MessageTransportOffsetContent, 16).
const errHeadroom = 64

// NewGuard wraps dev, looking MTUs up in t, and starts its error writer,
// which Close stops.
func NewGuard(dev tun.Device, t *Table) *Guard {
	g := &Guard{
		Device: dev, table: t, errBuf: make([]byte, 0, errHeadroom+packet.MaxError),
		errs: make(chan errMsg, errQueue), free: make(chan []byte, errQueue), done: make(chan struct{}),
	}
	for range errQueue {
		g.free <- make([]byte, 0, errHeadroom+packet.MaxError)
	}
	go g.writeErrors()
	return g
}

// Close stops the error writer and closes the TUN.
func (g *Guard) Close() error {
	g.closeOnce.Do(func() { close(g.done) })
	return g.Device.Close()
}

// writeErrors writes the queued errors into the TUN until Close.
func (g *Guard) writeErrors() {
	var bufs [1][]byte
	for {
		select {
		case <-g.done:
			return
		case m := <-g.errs:
			bufs[0] = m.buf
			if _, err := g.Device.Write(bufs[:], m.offset); err == nil {
				g.Stats.Refused.Add(1)
			} else {
				g.Stats.Dropped.Add(1)
			}
			g.free <- m.buf
		}
	}
}

// Read reads packets from the TUN and fits those to peers with a smaller
// path: clamped, or refused (their size set to 0, which wireguard-go skips).
func (g *Guard) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := g.Device.Read(bufs, sizes, offset)
	if !g.table.active() {
		return n, err
	}
	for i := range n {
		pkt := bufs[i][offset : offset+sizes[i]]
		dst, ok := packet.Dst(pkt)
		if !ok {
			continue
		}
		mtu := g.table.limitCached(dst, &g.last)
		switch {
		case mtu == 0:
		case len(pkt) > mtu:
			if g.tooBig(pkt, mtu, offset) {
				sizes[i] = 0
			}
		case packet.ClampMSS(pkt, packet.MSS(pkt, mtu)):
			g.Stats.Clamped.Add(1)
		}
	}
	return n, err
}

// tooBig answers an oversized packet and reports whether it is dropped.
func (g *Guard) tooBig(pkt []byte, mtu, offset int) bool {
	if cap(g.errBuf) < offset+packet.MaxError {
		g.errBuf = make([]byte, 0, offset+packet.MaxError)
	}
	msg, v := packet.TooBig(g.errBuf[:offset], pkt, mtu)
	switch v {
	case packet.Forward:
		g.Stats.Forwarded.Add(1)
		return false
	case packet.Refuse:
		if now := time.Now(); !now.Before(g.nextErr) && g.queueError(msg, offset) {
			g.nextErr = now.Add(errInterval)
			return true
		}
	}
	g.Stats.Dropped.Add(1)
	return true
}

// queueError hands a copy of msg to the writer, unless its queue is full.
func (g *Guard) queueError(msg []byte, offset int) bool {
	select {
	case buf := <-g.free:
		g.errs <- errMsg{append(buf[:0], msg...), offset}
		return true
	default:
		return false
	}
}

// Write writes packets from peers into the TUN, clamping the MSS of SYNs
// from peers with a smaller path: the local end then never sends them a
// segment their path can't carry. wireguard-go writes from one goroutine
// per peer, so Write keeps no state of its own.
func (g *Guard) Write(bufs [][]byte, offset int) (int, error) {
	if g.table.active() {
		for _, b := range bufs {
			pkt := b[offset:]
			if !packet.SYN(pkt) {
				continue
			}
			src, _ := packet.Src(pkt)
			if mtu := g.table.limit(src); mtu != 0 && packet.ClampMSS(pkt, packet.MSS(pkt, mtu)) {
				g.Stats.Clamped.Add(1)
			}
		}
	}
	return g.Device.Write(bufs, offset)
}
