package admit

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// TCP states whose peer has closed its end or reset the connection
// (include/net/tcp_states.h): a client that gave up while its connection
// waited to be accepted sent its FIN (CLOSE_WAIT) or a RST (CLOSE).
const (
	tcpClose     = 7
	tcpCloseWait = 8
)

// peerGone reports whether c's peer has already closed or reset it, from
// the socket's TCP state (one getsockopt; no read).
func peerGone(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	rc.Control(func(fd uintptr) { //nolint:errcheck // an unreadable state counts as present
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		gone = err == nil && (info.State == tcpCloseWait || info.State == tcpClose)
	})
	return gone
}
