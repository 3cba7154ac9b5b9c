// Package bind is meshnode's conn.Bind: it wraps another Bind (wireguard-go's
// StdNetBind in production, keeping its recvmmsg/sendmmsg batching and UDP
// GSO/GRO) and shares its one UDP socket among WireGuard, STUN, discovery and
// relay frames. WireGuard sees one endpoint per peer; the Bind picks the real
// path (a direct address or a relay) at each send, so wireguard-go's roaming
// never fights the path manager.
package bind

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/meshnode/meshnode/crypto"
)

// Router is the path manager as the Bind sees it.
type Router interface {
	// RouteTo returns the route for a packet to peer; nil when there is
	// none yet (the Router should start finding one).
	RouteTo(peer crypto.PublicKey) Route
	// PeerAt returns the peer authenticated at a UDP source address.
	PeerAt(addr netip.AddrPort) (crypto.PublicKey, bool)
	// IsPeer reports whether key is a current peer (relayed frames name it).
	IsPeer(key crypto.PublicKey) bool
	// RelayAt reports whether addr is the UDP relay in use: the only
	// source whose relayed data frames are accepted.
	RelayAt(addr netip.AddrPort) bool
}

// Handlers take the packets that are not WireGuard's, each straight to its
// owner (STUN to the prober, discovery to the path manager, relay control to
// the relay client). They run on wireguard-go's receive goroutines: they
// must not block. The slice is only valid during the call.
type Handlers struct {
	STUN func(pkt []byte, from netip.AddrPort)
	// Disco takes a discovery packet that arrived on socket sock (0: the
	// main socket; see OpenAux).
	Disco func(pkt []byte, from netip.AddrPort, sock int)
	// RelayedDisco takes a discovery packet a relay forwarded from peer.
	RelayedDisco func(pkt []byte, peer crypto.PublicKey)
	// RelayControl takes a relay control frame (challenge, OK).
	RelayControl func(pkt []byte, from netip.AddrPort)
	// Echo takes the payload of a relayed frame that names Self, this
	// node's own key: an echo the relay client sent through the relay it
	// checks (wire.AppendRelayEcho). Nil drops them.
	Echo func(pkt []byte)
	Self crypto.PublicKey
	// NoSession hears of a peer that sends transport data although no
	// handshake with it was seen answered (handshake.go): this node
	// restarted and the peer kept the old session. The node asks
	// wireguard-go for a handshake. Nil ignores it.
	NoSession func(peer crypto.PublicKey)
}

// Stats counts what the Bind saw; all fields are safe to read concurrently.
type Stats struct {
	Garbage      atomic.Uint64 // unrecognised payloads, dropped
	UnknownPeer  atomic.Uint64 // WireGuard from an address no peer was seen at, dropped
	NoRoute      atomic.Uint64 // sends to a peer with no path yet, dropped
	RelayedIn    atomic.Uint64
	RelayForged  atomic.Uint64 // relayed data frames from a source other than the relay in use, dropped
	RelayedOut   atomic.Uint64
	DiscoIn      atomic.Uint64
	STUNIn       atomic.Uint64
	RelayControl atomic.Uint64
	QueueDropped atomic.Uint64 // frames from a stream relay or an auxiliary socket dropped on a full queue
	BatchesSplit atomic.Uint64 // UDP GSO batches the kernel refused as too large for the path, sent again split
	// Handshakes (handshake.go): initiations kept for want of a path,
	// copies sent again, and handshakes asked for by a peer's stray data.
	HandshakesHeld, HandshakesResent, HandshakesAsked atomic.Uint64
}

// ErrNoRoute is returned by Send when a peer has no path yet. wireguard-go
// drops the packet; the Router has been asked to find one. A handshake
// initiation is kept instead (handshake.go).
var ErrNoRoute = errors.New("no path to peer yet")

// ErrClosed is returned by WriteTo while the socket is closed (between
// wireguard-go's rebinds).
var ErrClosed = errors.New("bind is closed")

// Bind implements conn.Bind.
//
// Locking: mu guards the socket's open state and the auxiliary sockets. It
// is not held while creating, closing or writing to a socket, nor while
// calling the router or a handler (which take their own locks). The
// endpoint table is a sync.Map: the receive path looks a peer's endpoint
// up for every batch, and a lock there would serialise the receive
// goroutines (one per socket) on each other.
type Bind struct {
	inner   conn.Bind
	router  Router
	handler Handlers
	Stats   Stats

	mu     sync.RWMutex
	open   bool
	port   uint16
	stream chan []byte   // frames from a stream relay, while open
	closed chan struct{} // closed by Close, ends streamReceive
	// pathMTU is the kernel's path MTU to an address (gso.go).
	pathMTU func(netip.Addr) (int, error)
	// Auxiliary sockets (aux.go), guarded by mu.
	auxListen func() (UDPConn, error)
	aux       map[int]UDPConn
	auxNext   int
	auxCh     chan auxPacket

	eps sync.Map // crypto.PublicKey → *PeerEndpoint

	framePool sync.Pool
}

// New wraps inner. auxListen opens auxiliary sockets for the birthday
// technique; nil disables them. Attach must be called before Open.
func New(inner conn.Bind, auxListen func() (UDPConn, error)) *Bind {
	return &Bind{
		inner:     inner,
		auxListen: auxListen,
		aux:       make(map[int]UDPConn),
		framePool: sync.Pool{New: func() any { return new(frameBatch) }},
	}
}

// Attach gives the Bind its router and handlers. It must happen before
// wireguard-go opens the Bind (device.Up): the packet paths read both
// without a lock, and Open's lock orders this write before them.
func (b *Bind) Attach(router Router, h Handlers) {
	b.mu.Lock()
	b.router, b.handler = router, h
	b.mu.Unlock()
}

// maxPacket is the largest UDP payload wireguard-go sends.
const maxPacket = device.MaxMessageSize

// Open opens the inner Bind and wraps its receive functions. wireguard-go
// calls it again on every rebind.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.inner.Open(port)
	if err != nil {
		return nil, 0, err
	}
	wrapped := make([]conn.ReceiveFunc, 0, len(fns)+1)
	for _, fn := range fns {
		wrapped = append(wrapped, b.wrap(fn))
	}
	stream, closed := make(chan []byte, streamQueue), make(chan struct{})
	auxCh := make(chan auxPacket, auxQueue)
	wrapped = append(wrapped, b.streamReceive(stream, closed), b.auxReceive(auxCh, closed))
	b.mu.Lock()
	b.open, b.port, b.stream, b.closed, b.auxCh = true, actual, stream, closed, auxCh
	b.mu.Unlock()
	return wrapped, actual, nil
}

// Port is the bound UDP port (0 while closed).
func (b *Bind) Port() uint16 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.port
}

// Close closes the inner Bind.
func (b *Bind) Close() error {
	b.mu.Lock()
	b.open = false
	if b.closed != nil {
		close(b.closed)
		b.closed, b.stream = nil, nil
	}
	aux := b.takeAllAux()
	b.mu.Unlock()
	closeAll(aux)
	return b.inner.Close()
}

// SetMark passes the fwmark to the inner Bind.
func (b *Bind) SetMark(mark uint32) error { return b.inner.SetMark(mark) }

// BatchSize is the inner Bind's.
func (b *Bind) BatchSize() int { return b.inner.BatchSize() }

// ParseEndpoint accepts a peer's public key in hex, the form the engine
// writes into wireguard-go's UAPI "endpoint=" key.
func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != crypto.KeyLen {
		return nil, fmt.Errorf("endpoint %q: want a peer key in hex (%d characters)", s, 2*crypto.KeyLen)
	}
	return b.Endpoint(crypto.PublicKey(raw)), nil
}

// Endpoint returns the one endpoint value for a peer.
func (b *Bind) Endpoint(k crypto.PublicKey) *PeerEndpoint {
	if ep, ok := b.eps.Load(k); ok {
		return ep.(*PeerEndpoint)
	}
	ep, _ := b.eps.LoadOrStore(k, &PeerEndpoint{Key: k})
	return ep.(*PeerEndpoint)
}

// Forget drops a removed peer's endpoint.
func (b *Bind) Forget(k crypto.PublicKey) { b.eps.Delete(k) }

// WriteTo sends a raw packet (STUN, discovery, relay control) from the shared
// socket.
func (b *Bind) WriteTo(pkt []byte, to netip.AddrPort) error {
	b.mu.RLock()
	open := b.open
	b.mu.RUnlock()
	if !open {
		return ErrClosed
	}
	return b.inner.Send([][]byte{pkt}, &conn.StdNetEndpoint{AddrPort: to})
}
