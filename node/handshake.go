package node

import (
	"context"

	"golang.zx2c4.com/wireguard/device"

	"github.com/meshnode/meshnode/crypto"
)

// A peer that sends transport data although the Bind saw no handshake
// with it answered (bind.Handlers.NoSession) keeps a session this node no
// longer has: this node restarted. Its packets are dropped here (their
// receiver index is unknown), and it would start a new handshake only
// after hearing nothing back for 15 s (wireguard-go's
// KeepaliveTimeout + RekeyTimeout). So this node initiates one at once.
// SendHandshakeInitiation is wireguard-go's own, throttled as ever to one
// initiation a RekeyTimeout, so asking more often costs nothing.

// handshakeQueue bounds the peers waiting for a handshake to be asked;
// beyond it a request is dropped, and the peer's next packet asks again
// (the Bind asks at most once a second per peer).
const handshakeQueue = 64

// askHandshake queues a handshake with peer; it never blocks (it runs on
// the Bind's receive path).
func (e *Engine) askHandshake(peer crypto.PublicKey) {
	select {
	case e.handshakeAsks <- peer:
	default:
	}
}

// handshakes starts the handshakes asked for until ctx ends.
func (e *Engine) handshakes(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case peer := <-e.handshakeAsks:
			if p := e.dev.LookupPeer(device.NoisePublicKey(peer)); p != nil {
				e.log.Debug("peer sends with a session this node doesn't have (restarted?); starting a handshake", "peer", peer.Short())
				p.SendHandshakeInitiation(false)
			}
		}
	}
}
