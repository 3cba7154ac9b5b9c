package relay

import (
	"fmt"
	"net"
	"runtime"
)

// socketBuffer is each relay socket's receive and send buffer, as
// wireguard-go sizes its own (conn's socketBufferSize, 7 MiB): the kernel
// holds a burst while the reader forwards the batch before it. With Linux's
// default (about 208 KiB, some 90 full-size datagrams) a burst of a
// TCP window overflowed it, and every loss costs the flow a retransmission.
// Without CAP_NET_ADMIN, Linux caps it at net.core.rmem_max and wmem_max.
const socketBuffer = 7 << 20

// ListenUDP opens the sockets ServeUDP reads, on addr (network as
// net.ListenPacket takes it: "udp", "udp4" or "udp6"). On Linux n sockets
// share the address with SO_REUSEPORT: the kernel spreads senders over them
// by a hash of their address and port, so each node's frames arrive in
// order on one socket, and ServeUDP's reader per socket forwards on its own
// core. n <= 0 means one per CPU Go runs on (GOMAXPROCS). Elsewhere it opens
// one socket: SO_REUSEPORT does not spread UDP there. Each socket gets
// socketBuffer bytes of buffer each way.
//
// A port already in use is an error, as for a single socket: the sockets are
// opened only after the address was bound once without SO_REUSEPORT, so
// they never join another program's group, which would take a share of the
// relay's frames.
func ListenUDP(network, addr string, n int) ([]net.PacketConn, error) {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	conns, err := listenUDP(network, addr, n)
	if err != nil {
		return nil, fmt.Errorf("relay: listen %s %s: %w", network, addr, err)
	}
	return conns, nil
}
