package conn

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// meshnode: recvmmsg(2) for the groReader without x/net (third_party/README.md).
//
// x/net's ReadBatch turns every message's source into a *net.UDPAddr (and
// packs and unpacks its headers through a pool on each call). Where the
// kernel coalesces nothing every datagram is a message, so that was an
// allocation a datagram on the receive path, with the collector behind it
// (3-5 % of a receiving node on the packet wire). mmsgReader keeps its
// headers, and the sources' sockaddrs, from call to call and reads the
// sources into netip.AddrPorts in place.

// mmsghdr is struct mmsghdr of <sys/socket.h>: Go pads it to Msghdr's
// alignment as C does, on 32- and 64-bit platforms alike.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// mmsgReader is a runReader on a UDP socket.
type mmsgReader struct {
	rc    syscall.RawConn
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // room for either family's sockaddr
	// bound is the first of the runs the headers point into (bind); filled
	// is how many of them the last read filled. The kernel writes only a
	// message's name and control lengths, so a read with the same runs
	// resets those of the filled messages instead of building every header
	// again (a groReader reads into the same runs for its whole life).
	bound  *groRun
	filled int

	// recv is r.recvmmsg, made once: a closure made for each call to
	// rc.Read would escape to the heap, with what it captures.
	recv func(fd uintptr) bool
	// want, got and errno are recv's argument and results.
	want, got int
	errno     syscall.Errno
}

func newMMsgReader(conn *net.UDPConn) (runReader, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	r := &mmsgReader{rc: rc}
	r.recv = r.recvmmsg
	return r, nil
}

// recvmmsg reads up to r.want messages into r.hdrs; false asks rc.Read to
// wait until the socket is readable and call again.
func (r *mmsgReader) recvmmsg(fd uintptr) bool {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(r.want), 0, 0, 0)
	if e == unix.EAGAIN || e == unix.EWOULDBLOCK {
		return false
	}
	r.got, r.errno = int(n), e
	return true
}

// bind points a header at each of runs' buffers.
func (r *mmsgReader) bind(runs []groRun) {
	r.hdrs = make([]mmsghdr, len(runs))
	r.iovs = make([]unix.Iovec, len(runs))
	r.names = make([]unix.RawSockaddrInet6, len(runs))
	for i := range runs {
		iov, h := &r.iovs[i], &r.hdrs[i].hdr
		iov.Base = unsafe.SliceData(runs[i].buf)
		iov.SetLen(len(runs[i].buf))
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Namelen = unix.SizeofSockaddrInet6
		h.Iov = iov
		h.SetIovlen(1)
		h.Control = unsafe.SliceData(runs[i].oob)
		h.SetControllen(len(runs[i].oob))
	}
	r.bound, r.filled = &runs[0], 0
}

func (r *mmsgReader) readRuns(runs []groRun) (int, error) {
	if len(runs) == 0 {
		return 0, nil
	}
	if &runs[0] != r.bound || len(runs) != len(r.hdrs) {
		r.bind(runs)
	}
	for i := range r.filled {
		h := &r.hdrs[i].hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.SetControllen(len(runs[i].oob))
	}
	r.filled = 0
	r.want = len(runs)
	if err := r.rc.Read(r.recv); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, &net.OpError{Op: "recvmmsg", Net: "udp", Err: r.errno}
	}
	r.filled = r.got
	for i := range r.got {
		h := &r.hdrs[i]
		runs[i].n = int(h.len)
		runs[i].nn = int(h.hdr.Controllen)
		runs[i].from = sockaddrAddrPort(&r.names[i])
	}
	return r.got, nil
}

// sockaddrAddrPort reads a sockaddr_in or sockaddr_in6 that the kernel
// wrote. A scoped IPv6 source (link-local) gets its interface index as its
// zone, which net resolves when sending to it as it does a name.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		addr := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			addr = addr.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(addr, port)
	}
	return netip.AddrPort{}
}
