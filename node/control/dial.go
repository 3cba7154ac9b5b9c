package control

import (
	"net"

	"github.com/meshnode/meshnode/internal/underlay"
	"github.com/meshnode/meshnode/internal/wire"
)

// Dialer opens the node's TCP connections to a coordinator (registration,
// the stream, the TCP relay): marked as the node's own, and with the
// keepalive that notices a coordinator whose host is lost within
// wire.NodeKeepaliveDeadline (userTimeout adds TCP_USER_TIMEOUT where
// there is one). The node's stream leaves from its TCP punch port with
// these settings (tcppunch.FromPort).
func Dialer() *net.Dialer {
	return &net.Dialer{
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
