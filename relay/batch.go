package relay

import (
	"errors"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Batched UDP I/O. A relay forwards every frame it reads, so a syscall per
// datagram each way (recvfrom, sendto) is most of its cost: a reader takes
// up to batchSize datagrams with one recvmmsg and sends what they produce
// with one sendmmsg (x/net's ReadBatch and WriteBatch). Sockets that are not
// the kernel's (the in-process lab's) are read and written one datagram at
// a time.

// batchSize is the most datagrams one read takes: wireguard-go's batch
// (conn.IdealBatchSize is 128) halved, since each slot holds a whole
// datagram's buffer (maxDatagram) for the reader's lifetime.
const batchSize = 64

// maxDatagram is a read buffer's size: the largest UDP payload, so nothing
// is truncated (a relay frame may carry wire.MaxRelayPayload; IPv4 carries
// 65,507 bytes, IPv6 without jumbograms 65,527).
const maxDatagram = 1 << 16

// message is one datagram of a batch (x/net's ipv4.Message, the same type
// as ipv6.Message).
type message = ipv4.Message

// batchConn reads and writes datagrams in batches.
type batchConn interface {
	// readBatch fills ms[:n] (Buffers[0][:N] from Addr) and reports n.
	readBatch(ms []message) (int, error)
	// writeBatch sends ms in order and appends to failed the index of
	// each datagram the kernel refused (the others are still sent).
	writeBatch(ms []message, failed []int) []int
}

// xBatch is what x/net's ipv4.PacketConn and ipv6.PacketConn offer.
type xBatch interface {
	ReadBatch(ms []message, flags int) (int, error)
	WriteBatch(ms []message, flags int) (int, error)
}

// newBatchConn batches pc's I/O: with recvmmsg and sendmmsg for a kernel
// UDP socket, one datagram a call otherwise.
func newBatchConn(pc net.PacketConn) batchConn {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return singleConn{pc}
	}
	if a, ok := uc.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		return kernelConn{ipv4.NewPacketConn(uc)}
	}
	// IPv6 and dual-stack sockets; the two packages' batches are the
	// same calls, this one names the family the socket was opened with.
	return kernelConn{ipv6.NewPacketConn(uc)}
}

// kernelConn batches with x/net.
type kernelConn struct{ x xBatch }

func (c kernelConn) readBatch(ms []message) (int, error) { return c.x.ReadBatch(ms, 0) }

func (c kernelConn) writeBatch(ms []message, failed []int) []int {
	for i := 0; i < len(ms); {
		n, err := c.x.WriteBatch(ms[i:], 0)
		if err != nil {
			// sendmmsg reports an error only for the first datagram
			// it could not send: skip it and send the rest.
			failed = append(failed, i)
			n = 1
		}
		if n <= 0 {
			// Nothing sent and no error: don't spin; the rest are lost.
			for ; i < len(ms); i++ {
				failed = append(failed, i)
			}
			break
		}
		i += n
	}
	return failed
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

func (c singleConn) writeBatch(ms []message, failed []int) []int {
	for i := range ms {
		if _, err := c.pc.WriteTo(ms[i].Buffers[0], ms[i].Addr); err != nil {
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
