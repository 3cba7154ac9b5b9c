package relay

import (
	"encoding/binary"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP offloads, as wireguard-go's StdNetBind uses them. With UDP_GRO the
// kernel hands the reader a train of datagrams from one sender whole (a
// node's StdNetBind sends its batches as such trains, with UDP_SEGMENT),
// with their size in a control message; with UDP_SEGMENT the relay sends a
// train of equal frames to one node as one buffer list that the kernel (or
// the NIC) cuts. A train costs the UDP stack about what one datagram does.

// oobSize holds one UDP_GRO or UDP_SEGMENT control message (an int or a
// uint16 of data).
var oobSize = unix.CmsgSpace(4)

// offloads turns UDP_GRO on for uc and reports which offloads uc has: trains
// out (UDP_SEGMENT, Linux 4.18) and in (UDP_GRO, Linux 5.0).
func offloads(uc *net.UDPConn) (gso, gro bool) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return false, false
	}
	err = rc.Control(func(fd uintptr) {
		_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		gso = err == nil
		gro = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
	})
	if err != nil {
		return false, false
	}
	return gso, gro
}

// segmentSize reads the size of the datagrams in a train from a read's
// control messages (UDP_GRO); 0 when the read holds one datagram.
func segmentSize(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_UDP && m.Header.Type == unix.UDP_GRO && len(m.Data) >= 2 {
			// An int in the host's order; segment sizes fit its low 16
			// bits, which come first on little- and last on big-endian
			// hosts.
			if len(m.Data) >= 4 {
				return int(binary.NativeEndian.Uint32(m.Data))
			}
			return int(binary.NativeEndian.Uint16(m.Data))
		}
	}
	return 0
}

// putSegment writes into oob (oobSize bytes) the control message that
// sends a train of size-byte datagrams (UDP_SEGMENT, a uint16) and
// returns it.
func putSegment(oob []byte, size int) []byte {
	oob = oob[:unix.CmsgSpace(2)]
	clear(oob)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(size))
	return oob
}
