package bind

import (
	"net"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/meshnode/meshnode/internal/wire"
)

// streamQueue bounds relay frames waiting for wireguard-go when they arrive
// over a stream (the TCP relay); beyond it frames are dropped like packets
// on a full socket buffer.
const streamQueue = 1024

// DeliverFrame hands the Bind a relay data frame received over a stream. It
// never blocks: a full queue drops the frame.
func (b *Bind) DeliverFrame(frame []byte) {
	b.mu.RLock()
	ch := b.stream
	b.mu.RUnlock()
	if ch == nil {
		return
	}
	select {
	case ch <- frame:
	default:
		b.Stats.QueueDropped.Add(1)
	}
}

// streamReceive is the extra ReceiveFunc Open adds: it feeds wireguard-go
// the WireGuard packets that came over a stream relay.
func (b *Bind) streamReceive(ch chan []byte, closed chan struct{}) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			var frame []byte
			select {
			case frame = <-ch:
			case <-closed:
				return 0, net.ErrClosed
			}
			f, err := wire.ParseRelay(frame)
			if err != nil || f.Type != wire.RelayData {
				b.Stats.Garbage.Add(1)
				continue
			}
			if !b.relayedPayload(f) {
				continue
			}
			b.Stats.RelayedIn.Add(1)
			sizes[0] = copy(bufs[0], f.Payload)
			eps[0] = b.fromPeer(f.Key, bufs[0][:sizes[0]])
			return 1, nil
		}
	}
}
