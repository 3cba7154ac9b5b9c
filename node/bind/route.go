package bind

import (
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Route is one way to a peer, and it sends: the path manager picks a Route
// per peer, the Bind calls Send. The Bind makes every kind (Direct,
// UDPRelay, Stream), so a route always sends from this node's sockets.
type Route interface {
	// Send sends packets (WireGuard, or sealed discovery) to peer.
	Send(bufs [][]byte, peer crypto.PublicKey) error
	// Info describes the route for status and logs.
	Info() RouteInfo
}

// Route kinds, as `meshnode status --json` prints them.
const (
	KindDirect = "direct"
	KindRelay  = "relay"
)

// RouteInfo describes a route.
type RouteInfo struct {
	Kind string // KindDirect or KindRelay
	// Addr is the peer's address on a direct path, or the UDP relay's;
	// invalid over a stream that has none.
	Addr netip.AddrPort
	// Via names what carries the packets when it is not plain UDP to Addr:
	// a relay's address or URL, a punched TCP connection.
	Via string
}

// directRoute sends plain UDP to the peer's address from the main socket
// or an auxiliary one (sock, see OpenAux).
type directRoute struct {
	b     *Bind
	ep    *conn.StdNetEndpoint // built once: a send allocates nothing
	sock  int
	limit batchLimit
}

// Direct is a direct UDP path to addr from socket sock (0: the main one).
func (b *Bind) Direct(addr netip.AddrPort, sock int) Route {
	return &directRoute{b: b, ep: &conn.StdNetEndpoint{AddrPort: addr}, sock: sock}
}

func (r *directRoute) Send(bufs [][]byte, _ crypto.PublicKey) error {
	if r.sock == 0 {
		return r.b.sendBatch(bufs, r.ep, &r.limit)
	}
	for _, pkt := range bufs {
		if err := r.b.WriteVia(pkt, r.ep.AddrPort, r.sock); err != nil {
			return err
		}
	}
	return nil
}

func (r *directRoute) Info() RouteInfo { return RouteInfo{Kind: KindDirect, Addr: r.ep.AddrPort} }

// udpRelayRoute frames packets for a UDP relay.
type udpRelayRoute struct {
	b     *Bind
	ep    *conn.StdNetEndpoint
	info  RouteInfo // built once: the packet path reads it (bind.Router.RelayAt)
	limit batchLimit
}

// UDPRelay is the path through the UDP relay at addr. Its frames are sent
// in batches only up to maxUnfragmented from the start.
func (b *Bind) UDPRelay(addr netip.AddrPort) Route {
	r := &udpRelayRoute{b: b, ep: &conn.StdNetEndpoint{AddrPort: addr}, info: RouteInfo{Kind: KindRelay, Addr: addr, Via: addr.String()}}
	r.limit.n.Store(maxUnfragmented)
	return r
}

func (r *udpRelayRoute) Send(bufs [][]byte, peer crypto.PublicKey) error {
	return r.b.sendFramed(bufs, peer, func(frames [][]byte) error {
		return r.b.sendBatch(frames, r.ep, &r.limit)
	})
}

func (r *udpRelayRoute) Info() RouteInfo { return r.info }

// FrameSender carries relay frames over a stream: the TCP relay, or a
// punched TCP connection to the peer. SendFrames must not block for long:
// it is called from wireguard-go's send path and from packet handlers.
type FrameSender interface {
	SendFrames(frames [][]byte) error
}

// streamRoute frames packets onto a stream.
type streamRoute struct {
	b    *Bind
	s    FrameSender
	info RouteInfo
}

// Stream is a path over a stream of relay frames; info says what it is (a
// relay, or a direct TCP path to the peer).
func (b *Bind) Stream(s FrameSender, info RouteInfo) Route {
	return &streamRoute{b: b, s: s, info: info}
}

func (r *streamRoute) Send(bufs [][]byte, peer crypto.PublicKey) error {
	return r.b.sendFramed(bufs, peer, r.s.SendFrames)
}

func (r *streamRoute) Info() RouteInfo { return r.info }

// sendFramed frames bufs for peer in pooled buffers and hands them to send.
func (b *Bind) sendFramed(bufs [][]byte, peer crypto.PublicKey, send func([][]byte) error) error {
	frames := make([][]byte, len(bufs))
	ptrs := make([]*[]byte, len(bufs))
	for i, pkt := range bufs {
		ptrs[i] = b.framePool.Get().(*[]byte)
		frames[i] = wire.AppendRelayData((*ptrs[i])[:0], peer, pkt)
	}
	err := send(frames)
	for i, p := range ptrs {
		*p = frames[i][:0]
		b.framePool.Put(p)
	}
	if err == nil {
		b.Stats.RelayedOut.Add(uint64(len(bufs)))
	}
	return err
}

// maxUnfragmented is the largest UDP payload that fits a 1500-byte IPv4
// link unfragmented (1500 - 20 IP - 8 UDP). A relay frame adds
// wire.RelayHeaderLen to a WireGuard packet, so at the default MTU 1420 a
// full-size frame is 17 bytes over: it must go out on its own, for the
// kernel to fragment it, where in a batch the kernel would refuse it (see
// sendBatch). The relay route starts with this limit rather than learn it
// from a refusal.
const maxUnfragmented = 1500 - ipv4UDPHeaders
