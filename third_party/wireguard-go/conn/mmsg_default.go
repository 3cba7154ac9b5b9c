//go:build !linux

package conn

import (
	"errors"
	"net"
)

// newMMsgReader: recvmmsg, and UDP GRO with it (supportsUDPOffload), are
// Linux's; elsewhere the bind reads one datagram a call (receiveIP).
func newMMsgReader(*net.UDPConn) (runReader, error) {
	return nil, errors.ErrUnsupported
}
