package relay

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenUDP opens n sockets on addr, sharing it with SO_REUSEPORT when n > 1.
func listenUDP(network, addr string, n int) ([]net.PacketConn, error) {
	if n > 1 {
		// Bind once without SO_REUSEPORT: a port someone holds (with or
		// without it) fails here, as it would for one socket. A port 0
		// becomes the port the group shares.
		probe, err := net.ListenPacket(network, addr)
		if err != nil {
			return nil, err
		}
		addr = probe.LocalAddr().String()
		probe.Close()
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var opErr error
		err := rc.Control(func(fd uintptr) {
			if n > 1 {
				opErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}
			setBuffers(int(fd))
		})
		if err != nil {
			return err
		}
		return opErr
	}}
	conns := make([]net.PacketConn, 0, n)
	for range n {
		pc, err := lc.ListenPacket(context.Background(), network, addr)
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, pc)
	}
	return conns, nil
}

// setBuffers sizes fd's buffers: past net.core.rmem_max and wmem_max with
// CAP_NET_ADMIN (the FORCE options), else up to them. Best effort: a relay
// with smaller buffers still relays.
func setBuffers(fd int) {
	for _, o := range []struct{ force, plain int }{
		{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF},
		{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF},
	} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.force, socketBuffer) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.plain, socketBuffer)
		}
	}
}

// closeAll closes conns (after a failed listen).
func closeAll(conns []net.PacketConn) {
	for _, c := range conns {
		c.Close()
	}
}
