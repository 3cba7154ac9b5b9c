package control

import (
	"net"
	"time"

	"github.com/meshnode/meshnode/internal/underlay"
	"github.com/meshnode/meshnode/internal/wire"
)

// connectTimeout bounds a TCP connect to a coordinator (and the name
// lookup before it): its SYN and two retransmissions, at 1 s and 3 s
// (RFC 6298's initial RTO, doubled), get their chance, and a token's next
// coordinator is tried 4 s after a lost one's first (otherwise
// wire.NodeKeepaliveDeadline, TCP_USER_TIMEOUT's bound on SYN retries).
const connectTimeout = 4 * time.Second

// Dialer opens the node's TCP connections to a coordinator (registration,
// the stream, the TCP relay): marked as the node's own, and with the
// keepalive that notices a coordinator whose host is lost within
// wire.NodeKeepaliveDeadline (userTimeout adds TCP_USER_TIMEOUT where
// there is one). The node's stream leaves from its TCP punch port with
// these settings (tcppunch.FromPort).
func Dialer() *net.Dialer {
	return &net.Dialer{
		Timeout: connectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     wire.NodeKeepaliveIdle,
			Interval: wire.NodeKeepaliveInterval,
			Count:    wire.NodeKeepaliveCount,
		},
		Control:  underlay.Chain(userTimeout),
		Resolver: underlay.Resolver,
	}
}
