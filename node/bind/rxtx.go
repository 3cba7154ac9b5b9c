package bind

import (
	"fmt"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/meshnode/meshnode/internal/wire"
)

// wrap demultiplexes one receive batch in place: WireGuard packets from a
// known peer get that peer's endpoint; relayed WireGuard packets are
// unframed; everything else goes to the handler and its size is set to 0,
// which wireguard-go skips (device.MinMessageSize).
//
// The receive goroutine of a socket is serial: what it does per packet
// bounds the throughput of every peer on that socket, whatever the cores.
// A batch mostly holds one peer's packets (UDP GRO coalesces a flow), so
// the previous packet's source and endpoint are kept for the next.
func (b *Bind) wrap(fn conn.ReceiveFunc) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, err := fn(bufs, sizes, eps)
		var last lastPeer
		for i := range n {
			if sizes[i] == 0 {
				continue
			}
			from := srcOf(eps[i])
			pkt := bufs[i][:sizes[i]]
			switch wire.Classify(pkt) {
			case wire.KindWireGuard:
				if ep := b.peerAt(from, &last); ep != nil {
					b.received(ep, pkt)
					eps[i] = ep
					continue
				}
				b.Stats.UnknownPeer.Add(1)
			case wire.KindRelay:
				if b.unframe(bufs[i], sizes, eps, i, from) {
					continue
				}
			case wire.KindSTUN:
				b.Stats.STUNIn.Add(1)
				b.handler.STUN(pkt, from)
			case wire.KindDisco:
				b.Stats.DiscoIn.Add(1)
				b.handler.Disco(pkt, from, 0)
			default:
				b.Stats.Garbage.Add(1)
			}
			sizes[i] = 0
		}
		return n, err
	}
}

// lastPeer is the source of the previous WireGuard packet in a batch and
// its peer's endpoint (nil: none yet).
type lastPeer struct {
	from netip.AddrPort
	ep   *PeerEndpoint
}

// peerAt is the endpoint of the peer authenticated at from, nil if none.
// Within one batch the path manager's answer is taken as fixed: a batch
// is what one system call returned.
func (b *Bind) peerAt(from netip.AddrPort, last *lastPeer) *PeerEndpoint {
	if last.ep != nil && last.from == from {
		return last.ep
	}
	peer, ok := b.router.PeerAt(from)
	if !ok {
		return nil
	}
	last.from, last.ep = from, b.Endpoint(peer)
	return last.ep
}

// unframe turns a relayed data frame into the WireGuard packet it carries,
// in place, and reports whether it did. Control frames go to the handler.
func (b *Bind) unframe(buf []byte, sizes []int, eps []conn.Endpoint, i int, from netip.AddrPort) bool {
	f, err := wire.ParseRelay(buf[:sizes[i]])
	if err != nil {
		b.Stats.Garbage.Add(1)
		return false
	}
	if f.Type != wire.RelayData {
		b.Stats.RelayControl.Add(1)
		b.handler.RelayControl(buf[:sizes[i]], from)
		return false
	}
	if !b.router.RelayAt(from) {
		b.Stats.RelayForged.Add(1)
		return false
	}
	if !b.relayedPayload(f) {
		return false
	}
	b.Stats.RelayedIn.Add(1)
	sizes[i] = copy(buf, f.Payload)
	eps[i] = b.fromPeer(f.Key, buf[:sizes[i]])
	return true
}

// srcOf is the sender's address, IPv4 unmapped so that lookups match.
func srcOf(ep conn.Endpoint) netip.AddrPort {
	if se, ok := ep.(*conn.StdNetEndpoint); ok {
		return netip.AddrPortFrom(se.Addr().Unmap(), se.Port())
	}
	ap, _ := netip.ParseAddrPort(ep.DstToString())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Send sends WireGuard packets to the peer behind ep along its current route.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	pe, ok := ep.(*PeerEndpoint)
	if !ok {
		return fmt.Errorf("bind: send to %T %s: only peer endpoints are routed", ep, ep.DstToString())
	}
	r := b.router.RouteTo(pe.Key)
	// wireguard-go sends each handshake message alone.
	handshake := len(bufs) == 1 && len(bufs[0]) > 0 && bufs[0][0] != device.MessageTransportType
	if handshake {
		pe.hs.outbound(bufs[0], r != nil, time.Now())
	}
	if r == nil {
		if handshake && isInitiation(bufs[0]) {
			// Kept: ResendHandshake sends it once a path is up.
			b.Stats.HandshakesHeld.Add(1)
			return nil
		}
		b.Stats.NoRoute.Add(uint64(len(bufs)))
		return ErrNoRoute
	}
	return r.Send(bufs, pe.Key)
}

// relayedPayload checks a relayed data frame: discovery packets go to the
// handler (false), WireGuard packets from a peer pass (true). A frame
// naming this node itself is an echo.
func (b *Bind) relayedPayload(f wire.RelayFrame) bool {
	if !b.router.IsPeer(f.Key) {
		if f.Key == b.handler.Self && b.handler.Echo != nil && wire.Classify(f.Payload) == wire.KindDisco {
			b.handler.Echo(f.Payload)
			return false
		}
		b.Stats.UnknownPeer.Add(1)
		return false
	}
	switch wire.Classify(f.Payload) {
	case wire.KindWireGuard:
		return true
	case wire.KindDisco:
		b.Stats.DiscoIn.Add(1)
		b.handler.RelayedDisco(f.Payload, f.Key)
	default:
		b.Stats.Garbage.Add(1)
	}
	return false
}
