package relay

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Batched UDP I/O. A relay forwards every frame it reads, so a syscall per
// datagram each way (recvfrom, sendto) is most of its cost: a reader takes
// up to batchSize datagrams with one recvmmsg and sends what they produce
// with one sendmmsg (x/net's ReadBatch and WriteBatch), and on Linux it
// reads and sends trains of datagrams as one (offload_linux.go). Sockets
// that are not the kernel's (the in-process lab's) are read and written one
// datagram at a time.

// batchSize is the most reads one call takes: wireguard-go's batch
// (conn.IdealBatchSize is 128) halved, since each slot holds a whole
// datagram's buffer (maxDatagram) for the reader's lifetime.
const batchSize = 64

// maxDatagram is a read buffer's size: the largest UDP payload, so nothing
// is truncated (a relay frame may carry wire.MaxRelayPayload; IPv4 carries
// 65,507 bytes, IPv6 without jumbograms 65,527), and the largest train.
const maxDatagram = 1 << 16

// Trains (UDP_SEGMENT), as wireguard-go builds them.
const (
	// maxSegments is the most datagrams in one train: Linux's
	// UDP_MAX_SEGMENTS, and what a train read with UDP_GRO holds.
	maxSegments = 64
	// maxTrainBytes bounds a train: one IPv4 datagram's payload.
	maxTrainBytes = 1<<16 - 1 - 20 - 8
	// maxTrainFrame is the largest frame sent in a train: what a
	// 1500-byte link carries whole over IPv6 (1500 less 40 and 8). The
	// kernel refuses a train whose datagrams exceed the path MTU, where
	// it fragments a single datagram; frames of packets fitted to the
	// relay (pmtu.RelayMTU) are within it.
	maxTrainFrame = 1500 - 40 - 8
)

// message is one datagram, or train, of a batch (x/net's ipv4.Message,
// the same type as ipv6.Message).
type message = ipv4.Message

// datagram is a frame to send and where to.
type datagram struct {
	frame []byte
	to    net.Addr
}

// batchConn reads and writes datagrams in batches.
type batchConn interface {
	// readBatch fills ms[:n] (Buffers[0][:N] from Addr) and reports n.
	readBatch(ms []message) (int, error)
	// readSlots is the most messages one readBatch fills: a reader holds
	// a maxDatagram buffer for each.
	readSlots() int
	// oobLen is the control space each read message needs (UDP_GRO).
	oobLen() int
	// segmentSize is the size of the datagrams in a read train, 0 when
	// m holds one datagram.
	segmentSize(m *message) int
	// writeBatch sends ds in order, packing them with p, and appends to
	// failed the index of each datagram the kernel refused (the others
	// are still sent).
	writeBatch(ds []datagram, p *packer, failed []int) []int
}

// packer is a sender's scratch for building messages; it belongs to one
// goroutine.
type packer struct {
	bufs  [][]byte // every datagram's frame; a message's buffers are a run
	msgs  []message
	spans []span // the datagrams of each message
	oob   [][]byte
	retry []int
}

type span struct{ from, to int }

// xBatch is what x/net's ipv4.PacketConn and ipv6.PacketConn offer.
type xBatch interface {
	ReadBatch(ms []message, flags int) (int, error)
	WriteBatch(ms []message, flags int) (int, error)
}

// newBatchConn batches pc's I/O: with recvmmsg and sendmmsg for a kernel
// UDP socket, in trains where the kernel offers them; one datagram a call
// otherwise.
func newBatchConn(pc net.PacketConn) batchConn {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return singleConn{pc}
	}
	c := &kernelConn{x: ipv6.NewPacketConn(uc)}
	if a, ok := uc.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		// IPv6 and dual-stack sockets take ipv6's; the two packages'
		// batches are the same calls, this names the socket's family.
		c.x = ipv4.NewPacketConn(uc)
	}
	gso, gro := offloads(uc)
	c.gso.Store(gso)
	c.gro = gro
	return c
}

// kernelConn batches with x/net.
type kernelConn struct {
	x   xBatch
	gso atomic.Bool // sends trains; off once the kernel refused one
	gro bool        // reads trains
}

func (c *kernelConn) readBatch(ms []message) (int, error) { return c.x.ReadBatch(ms, 0) }

func (*kernelConn) readSlots() int { return batchSize }

func (c *kernelConn) oobLen() int {
	if c.gro {
		return oobSize
	}
	return 0
}

func (c *kernelConn) segmentSize(m *message) int {
	if !c.gro || m.NN == 0 {
		return 0
	}
	return segmentSize(m.OOB[:m.NN])
}

func (c *kernelConn) writeBatch(ds []datagram, p *packer, failed []int) []int {
	c.pack(ds, p)
	p.retry = p.retry[:0]
	for i := 0; i < len(p.msgs); {
		n, err := c.x.WriteBatch(p.msgs[i:], 0)
		if err != nil {
			// sendmmsg reports an error only for the first message it
			// could not send: skip it and send the rest.
			p.retry = append(p.retry, i)
			n = 1
		}
		if n <= 0 {
			// Nothing sent and no error: don't spin; the rest are lost.
			for ; i < len(p.msgs); i++ {
				p.retry = append(p.retry, i)
			}
			break
		}
		i += n
	}
	for _, mi := range p.retry {
		sp := p.spans[mi]
		if sp.to-sp.from == 1 {
			failed = append(failed, sp.from)
			continue
		}
		// A train the kernel refused (no checksum offload on the way
		// out, a path MTU below the frames): its datagrams go again one
		// by one, and this socket sends no more trains.
		c.gso.Store(false)
		for d := sp.from; d < sp.to; d++ {
			one := [1]message{{Buffers: [][]byte{ds[d].frame}, Addr: ds[d].to}}
			if _, err := c.x.WriteBatch(one[:], 0); err != nil {
				failed = append(failed, d)
			}
		}
	}
	return failed
}

// pack builds p's messages for ds: trains of equal frames to one
// destination (the last may be shorter) while the socket sends trains,
// else a message a datagram.
func (c *kernelConn) pack(ds []datagram, p *packer) {
	p.bufs, p.msgs, p.spans = p.bufs[:0], p.msgs[:0], p.spans[:0]
	for _, d := range ds {
		p.bufs = append(p.bufs, d.frame)
	}
	trains := c.gso.Load()
	for i := 0; i < len(ds); {
		j, size := i+1, len(ds[i].frame)
		if trains && size <= maxTrainFrame {
			for total := size; j < len(ds) && j-i < maxSegments && ds[j].to == ds[i].to &&
				len(ds[j].frame) <= size && total+len(ds[j].frame) <= maxTrainBytes; j++ {
				total += len(ds[j].frame)
				if len(ds[j].frame) < size {
					j++ // a shorter frame ends the train
					break
				}
			}
		}
		k := len(p.msgs)
		if k == len(p.oob) {
			p.oob = append(p.oob, make([]byte, oobSize))
		}
		m := message{Buffers: p.bufs[i:j:j], Addr: ds[i].to}
		if j-i > 1 {
			m.OOB = putSegment(p.oob[k], size)
		}
		p.msgs = append(p.msgs, m)
		p.spans = append(p.spans, span{i, j})
		i = j
	}
}

// singleConn is a socket without batch calls.
type singleConn struct{ pc net.PacketConn }

func (c singleConn) readBatch(ms []message) (int, error) {
	n, addr, err := c.pc.ReadFrom(ms[0].Buffers[0])
	if err != nil {
		return 0, err
	}
	ms[0].N, ms[0].Addr = n, addr
	return 1, nil
}

// readSlots is one: the buffers of more would never be read into.
func (singleConn) readSlots() int           { return 1 }
func (singleConn) oobLen() int              { return 0 }
func (singleConn) segmentSize(*message) int { return 0 }

func (c singleConn) writeBatch(ds []datagram, _ *packer, failed []int) []int {
	for i, d := range ds {
		if _, err := c.pc.WriteTo(d.frame, d.to); err != nil {
			failed = append(failed, i)
		}
	}
	return failed
}

// udpAddr reads a datagram's source as an unmapped address and port: a
// dual-stack socket reports IPv4 senders as IPv4-mapped IPv6.
func udpAddr(a net.Addr) (netip.AddrPort, error) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case nil:
		return ap, errors.New("no source address")
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return ap, err
		}
	}
	if !ap.IsValid() {
		return ap, errors.New("invalid source address")
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
