package underlay

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// SetFD marks the socket fd. Marking needs CAP_NET_ADMIN; a process
// without it installs no routes into the overlay either (that needs the
// same capability), so its sockets need no mark and go unmarked.
func SetFD(fd int) error {
	err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(Mark))
	if err == nil || errors.Is(err, unix.EPERM) {
		return nil
	}
	return fmt.Errorf("mark socket as the node's own (SO_MARK %#x): %w", Mark, err)
}
