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
	r.limit.n.Store(int32(maxUnfragmented(addr.Addr())))
	return r
}

func (r *udpRelayRoute) Send(bufs [][]byte, peer crypto.PublicKey) error {
	fb := r.b.frame(bufs, peer)
	err := r.b.sendBatch(fb.frames(), r.ep, &r.limit)
	r.b.sent(fb, err)
	return err
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
	fb := r.b.frame(bufs, peer)
	err := r.s.SendFrames(fb.frames())
	r.b.sent(fb, err)
	return err
}

func (r *streamRoute) Info() RouteInfo { return r.info }

// frameBatch holds the relay frames of one send. It is pooled whole, its
// buffers kept at the size they grew to: framing a batch takes one buffer
// from the pool, and allocates nothing once the pool is warm.
type frameBatch struct {
	bufs [][]byte
	n    int // frames in use
}

func (fb *frameBatch) frames() [][]byte { return fb.bufs[:fb.n] }

// frame frames bufs for peer: the data frames of a relay (wire.RelayData).
func (b *Bind) frame(bufs [][]byte, peer crypto.PublicKey) *frameBatch {
	fb := b.framePool.Get().(*frameBatch)
	for len(fb.bufs) < len(bufs) {
		fb.bufs = append(fb.bufs, nil)
	}
	for i, pkt := range bufs {
		fb.bufs[i] = wire.AppendRelayData(fb.bufs[i][:0], peer, pkt)
	}
	fb.n = len(bufs)
	return fb
}

// sent counts a framed batch that went out and returns it to the pool.
func (b *Bind) sent(fb *frameBatch, err error) {
	if err == nil {
		b.Stats.RelayedOut.Add(uint64(fb.n))
	}
	b.framePool.Put(fb)
}

// maxUnfragmented is the largest UDP payload that fits a 1500-byte link
// unfragmented towards addr (1500 less the IP and UDP headers). A relay
// frame adds wire.RelayHeaderLen to a WireGuard packet, so a full-size
// frame at the default MTU 1420 is over it unless the node fits relayed
// packets to the relay (pmtu.RelayMTU): such a frame goes out on its own,
// for the kernel to fragment it, where in a batch the kernel would refuse
// it (see sendBatch). The relay route starts with this limit rather than
// learn it from a refusal.
func maxUnfragmented(addr netip.Addr) int {
	if addr.Is6() && !addr.Is4In6() {
		return 1500 - ipv6UDPHeaders
	}
	return 1500 - ipv4UDPHeaders
}
