package bind

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ttlSockets are duplicates of a StdNetBind's IPv4 and IPv6 socket
// descriptors, each stored plus one so that the zero value holds none. A
// duplicate refers to the same socket, so a packet sent through it leaves
// from the shared port, and it stays valid until closed here even if the
// original closes first.
type ttlSockets struct{ v4, v6 int }

// fd returns a stored descriptor and whether there is one.
func fd(stored int) (int, bool) { return stored - 1, stored > 0 }

// findSockets finds the process's UDP sockets bound to port, one per
// family: StdNetBind keeps its sockets to itself, so they are looked up
// among the open descriptors (/proc/self/fd) by type and bound port. Each
// candidate is duplicated, then checked on the duplicate, so a descriptor
// closed and reused meanwhile can't be mistaken for the node's.
func findSockets(port uint16) ttlSockets {
	var s ttlSockets
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return s
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || !udpOn(fd, port) {
			continue
		}
		dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			continue
		}
		slot := s.slotFor(dup, port)
		if slot == nil || *slot > 0 {
			unix.Close(dup)
			continue
		}
		*slot = dup + 1
	}
	return s
}

// udpOn reports whether fd is a UDP socket bound to port.
func udpOn(fd int, port uint16) bool {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_DGRAM {
		return false
	}
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil || proto != unix.IPPROTO_UDP {
		return false
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return false
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port == int(port)
	case *unix.SockaddrInet6:
		return a.Port == int(port)
	}
	return false
}

// slotFor is where a verified duplicate goes: the v4 or v6 slot, or nil
// when fd is not a UDP socket on port.
func (s *ttlSockets) slotFor(fd int, port uint16) *int {
	if !udpOn(fd, port) {
		return nil
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil
	}
	if _, ok := sa.(*unix.SockaddrInet4); ok {
		return &s.v4
	}
	return &s.v6
}

func (s ttlSockets) any() bool { return s.v4 > 0 || s.v6 > 0 }

func (s ttlSockets) close() {
	for _, stored := range []int{s.v4, s.v6} {
		if d, ok := fd(stored); ok {
			unix.Close(d)
		}
	}
}

// send writes one packet with an IP_TTL (IPv4) or IPV6_HOPLIMIT (IPv6)
// control message (Linux 3.13 and later accept IP_TTL per packet): the
// socket's own TTL, which WireGuard's packets use, is untouched. The
// descriptor is non-blocking (shared file status with Go's), so a full send
// buffer fails the send instead of waiting.
func (s ttlSockets) send(pkt []byte, to netip.AddrPort, ttl int) error {
	stored := s.v4
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().Unmap().As4()}
	if is6(to) {
		stored = s.v6
		sa = &unix.SockaddrInet6{Port: int(to.Port()), Addr: to.Addr().As16()}
	}
	d, ok := fd(stored)
	if !ok {
		return ErrNoTTL
	}
	oob, _ := ttlControl(to, ttl)
	_, err := unix.SendmsgN(d, pkt, oob, sa, 0)
	if errors.Is(err, unix.EINVAL) {
		return ErrNoTTL
	}
	return err
}

func is6(a netip.AddrPort) bool { return a.Addr().Is6() && !a.Addr().Is4In6() }

// ttlControl is the control message that sets one packet's TTL: IP_TTL
// for IPv4, IPV6_HOPLIMIT for IPv6.
func ttlControl(to netip.AddrPort, ttl int) ([]byte, error) {
	if is6(to) {
		return intControl(unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT, ttl), nil
	}
	return intControl(unix.IPPROTO_IP, unix.IP_TTL, ttl), nil
}

// intControl builds a control message carrying one int.
func intControl(level, typ, v int) []byte {
	b := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = int32(level), int32(typ)
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(b[unix.CmsgLen(0):], uint32(v))
	return b
}
