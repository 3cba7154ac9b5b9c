package control

import (
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/meshnode/meshnode/internal/wire"
)

// userTimeout sets TCP_USER_TIMEOUT (RFC 5482; tcp(7)) to the keepalive's
// deadline: data the coordinator leaves unacknowledged that long ends the
// connection, as unanswered probes do when it is idle. Without it a
// message sent to a lost host is retransmitted for about 15 minutes
// (tcp_retries2) while the keepalive waits.
func userTimeout(network, _ string, c syscall.RawConn) error {
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil
	}
	var err error
	if cerr := c.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(wire.NodeKeepaliveDeadline.Milliseconds()))
	}); cerr != nil {
		return cerr
	}
	return err
}
