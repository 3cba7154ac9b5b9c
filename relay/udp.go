package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// udpPort is one address the relay serves UDP on: every socket of one
// ServeUDP call (ListenUDP's group) sends from it. A node is answered from
// the address it bound to, or its NAT would not let the answers in; which
// socket of the group sends makes no difference on the wire. Ports are
// told apart by pointer; addr names the port (and gives it a size, so no
// two ports share an address in memory).
type udpPort struct{ addr net.Addr }

// udpSock is one socket of a port.
type udpSock struct {
	port *udpPort
	conn batchConn
}

// ServeUDP relays on conns until ctx is done (then it returns nil) or a
// read fails. conns share one address: ListenUDP's sockets, or a single
// socket. Each gets a reader goroutine that forwards a batch of frames at a
// time (batch.go); the binding table is the Server's, so a node bound
// through one socket is reached from all, and each frame to a node leaves
// from this address (or, bound through another ServeUDP's address, from
// that one). Datagrams that are not relay frames go to other when it is set
// (a STUN server sharing the port: it runs on the reader's goroutine, must
// not block, and pkt is valid only during the call), else they are dropped
// and counted (not_relay). ServeUDP does not close conns; it unblocks their
// reads with a past deadline when ctx is done or one of them fails.
func (s *Server) ServeUDP(ctx context.Context, conns []net.PacketConn, other func(pkt []byte, from net.Addr)) error {
	if len(conns) == 0 {
		return errors.New("relay: ServeUDP without a socket")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		for _, pc := range conns {
			pc.SetReadDeadline(time.Now()) //nolint:errcheck // best effort: unblocks the read
		}
	})
	defer stop()
	port := &udpPort{addr: conns[0].LocalAddr()}
	var (
		wg   sync.WaitGroup
		once sync.Once
		fail error
	)
	for _, pc := range conns {
		r := s.newReader(&udpSock{port: port, conn: newBatchConn(pc)}, other)
		wg.Go(func() {
			if err := r.run(ctx); err != nil {
				once.Do(func() { fail = fmt.Errorf("relay: read %s: %w", pc.LocalAddr(), err) })
				cancel()
			}
		})
	}
	wg.Wait()
	return fail
}

// reader forwards what one socket receives, a batch at a time. It belongs
// to one goroutine.
type reader struct {
	s     *Server
	sock  *udpSock
	other func([]byte, net.Addr)
	in    []message // readSlots slots, each with a maxDatagram buffer
	out   sink
}

func (s *Server) newReader(sock *udpSock, other func([]byte, net.Addr)) *reader {
	r := &reader{s: s, sock: sock, other: other, in: make([]message, sock.conn.readSlots()), out: newSink(sock, batchSize*maxSegments)}
	oob := sock.conn.oobLen()
	for i := range r.in {
		r.in[i].Buffers = [][]byte{make([]byte, maxDatagram)}
		if oob > 0 {
			r.in[i].OOB = make([]byte, oob)
		}
	}
	return r
}

// run reads until the socket fails; a failure after ctx is done is the
// stop, not an error.
func (r *reader) run(ctx context.Context) error {
	for {
		n, err := r.sock.conn.readBatch(r.in)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		r.serve(r.in[:n])
	}
}

// serve handles one batch: frames are forwarded in place (the relay
// rewrites the key in the read buffer) and leave together at the end. A
// train read whole (UDP_GRO) is its datagrams, each handled on its own.
func (r *reader) serve(ms []message) {
	r.out.begin(r.s)
	for i := range ms {
		pkt := ms[i].Buffers[0][:ms[i].N]
		size := r.sock.conn.segmentSize(&ms[i])
		if size <= 0 {
			size = len(pkt)
		}
		for {
			n := min(size, len(pkt))
			r.datagram(pkt[:n], ms[i].Addr)
			if pkt = pkt[n:]; len(pkt) == 0 {
				break
			}
		}
	}
	r.out.flush(r.s.metrics)
}

// datagram handles one datagram from from.
func (r *reader) datagram(pkt []byte, from net.Addr) {
	if wire.Classify(pkt) != wire.KindRelay {
		if r.other != nil {
			r.other(pkt, from)
		} else {
			r.out.count(resNotRelay)
		}
		return
	}
	src, err := udpAddr(from)
	if err != nil {
		r.out.count(resNotRelay)
		return
	}
	r.s.handle(pkt, origin{addr: src, to: from, sock: r.sock}, &r.out)
}

// sink is where one reader's frames go: UDP frames through the reader's
// own socket leave together when its batch ends (one sendmmsg, in trains
// where the socket can), frames through another port's socket at once,
// and results are counted once a batch. It also holds the batch's clock
// reading and the reader's view of the binding table. A WebSocket's sink
// has no socket: its UDP frames all go at once.
type sink struct {
	sock   *udpSock
	queue  []datagram
	kinds  []int // per queued datagram: a forwarded frame's payload bytes, or reply
	pack   packer
	failed []int // indices the kernel refused, from the last write

	tally [numResults]int
	bytes int

	now   time.Time
	stamp int64 // now as a Server stamp
	view  view
}

// reply marks a queued control frame in sink.kinds (payloads are >= 0).
const reply = -1

func newSink(sock *udpSock, n int) sink {
	return sink{sock: sock, queue: make([]datagram, 0, n), kinds: make([]int, 0, n)}
}

// begin starts a batch at the Server's now.
func (k *sink) begin(s *Server) {
	k.now = s.now()
	k.stamp = int64(k.now.Sub(s.epoch))
	s.maybeSweep(k.stamp)
	k.view.begin(s)
}

func (k *sink) count(r result) { k.tally[r]++ }

// send sends frame (a forwarded frame's payload bytes, or reply) to to
// through via.
func (k *sink) send(via *udpSock, frame []byte, to net.Addr, kind int) {
	if k.sock != nil && via.port == k.sock.port && len(k.queue) < cap(k.queue) {
		k.queue = append(k.queue, datagram{frame, to})
		k.kinds = append(k.kinds, kind)
		return
	}
	k.failed = via.conn.writeBatch([]datagram{{frame, to}}, &k.pack, k.failed[:0])
	k.sent(kind, len(k.failed) == 0)
}

// sent counts a frame the kernel took (ok) or refused.
func (k *sink) sent(kind int, ok bool) {
	switch {
	case !ok:
		k.count(resSendError)
	case kind != reply:
		k.count(resForwarded)
		k.bytes += kind
	}
}

// flush sends what is queued and adds the batch's counts to m: what the
// frames were before the sends (so a node answered is counted by then),
// what became of the sends after.
func (k *sink) flush(m *metrics) {
	k.report(m)
	if len(k.queue) == 0 {
		return
	}
	k.failed = k.sock.conn.writeBatch(k.queue, &k.pack, k.failed[:0])
	f := 0
	for i, kind := range k.kinds {
		refused := f < len(k.failed) && k.failed[f] == i
		if refused {
			f++
		}
		k.sent(kind, !refused)
	}
	clear(k.queue)
	k.queue, k.kinds = k.queue[:0], k.kinds[:0]
	k.report(m)
}

// report adds the counts so far to m.
func (k *sink) report(m *metrics) {
	for r, n := range k.tally {
		if n > 0 {
			m.packets[r].Add(float64(n))
			k.tally[r] = 0
		}
	}
	if k.bytes > 0 {
		m.bytes.Add(float64(k.bytes))
		k.bytes = 0
	}
}

// view caches one reader's lookups in the binding table. A bulk flow is
// one sender to one destination, frame after frame: the cache spares it
// the table's lock (whose reader count every core would write) and the
// Authorizer's (the coordinator's is its hub's mutex). The table's
// generation, bumped by every change, invalidates the bindings; the peer
// check holds for one batch, so a revoked peer is refused from the next.
type view struct {
	gen    uint64
	from   endpoint
	src    *binding
	dstKey crypto.PublicKey
	dst    *binding
	// peerSrc and peerDst were found to be peers in this batch.
	peerSrc, peerDst *binding
}

// begin starts a batch: the peer check is redone, the bindings kept while
// the table is unchanged.
func (v *view) begin(s *Server) {
	v.peerSrc, v.peerDst = nil, nil
	if g := s.gen.Load(); g != v.gen {
		*v = view{gen: g}
	}
}

// lookup returns the bindings at from and of key (nil where there is none).
func (v *view) lookup(s *Server, from endpoint, key crypto.PublicKey) (src, dst *binding) {
	if v.src != nil && v.from == from && v.dst != nil && v.dstKey == key {
		return v.src, v.dst
	}
	s.mu.RLock()
	src, dst = s.byEp[from], s.byKey[key]
	g := s.gen.Load()
	s.mu.RUnlock()
	if g == v.gen {
		v.from, v.src, v.dstKey, v.dst = from, src, key, dst
	}
	return src, dst
}

// peers reports whether src may send to dst, asking auth once a batch.
func (v *view) peers(auth Authorizer, src, dst *binding) bool {
	if src == v.peerSrc && dst == v.peerDst {
		return true
	}
	if !auth.ArePeers(src.key, dst.key) {
		return false
	}
	v.peerSrc, v.peerDst = src, dst
	return true
}
