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

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Route says where packets for a peer go now.
type Route struct {
	// Addr is the peer's direct address, or the relay's when Relay is set.
	Addr netip.AddrPort
	// Relay marks a relayed route: packets are framed for the relay.
	Relay bool
	// Stream, when set, carries relay frames instead of UDP (a relay over
	// TCP/TLS for networks that block UDP).
	Stream FrameSender
	// Via names the relay for status: its address or URL.
	Via string
	// Sock is the auxiliary socket a direct path uses (0: the main one).
	Sock int
}

// FrameSender sends relay frames over a stream.
type FrameSender interface {
	SendFrames(frames [][]byte) error
}

// Router is the path manager as the Bind sees it.
type Router interface {
	// RouteTo returns the route for a packet to peer; false when there is
	// none yet (the Router should start finding one).
	RouteTo(peer crypto.PublicKey) (Route, bool)
	// PeerAt returns the peer authenticated at a UDP source address.
	PeerAt(addr netip.AddrPort) (crypto.PublicKey, bool)
	// IsPeer reports whether key is a current peer (relayed frames name it).
	IsPeer(key crypto.PublicKey) bool
}

// Handler takes the packets that are not WireGuard's. The slice is only
// valid during the call.
type Handler interface {
	HandleSTUN(pkt []byte, from netip.AddrPort)
	// HandleDisco takes a discovery packet that arrived on socket sock (0:
	// the main socket; see OpenAux).
	HandleDisco(pkt []byte, from netip.AddrPort, sock int)
	// HandleRelayedDisco takes a discovery packet that a relay forwarded
	// from peer.
	HandleRelayedDisco(pkt []byte, peer crypto.PublicKey)
	HandleRelayControl(pkt []byte, from netip.AddrPort)
}

// Stats counts what the Bind saw; all fields are safe to read concurrently.
type Stats struct {
	Garbage      atomic.Uint64 // unrecognised payloads, dropped
	UnknownPeer  atomic.Uint64 // WireGuard from an address no peer was seen at, dropped
	NoRoute      atomic.Uint64 // sends to a peer with no path yet, dropped
	RelayedIn    atomic.Uint64
	RelayedOut   atomic.Uint64
	DiscoIn      atomic.Uint64
	STUNIn       atomic.Uint64
	RelayControl atomic.Uint64
	QueueDropped atomic.Uint64 // frames from a stream relay or an auxiliary socket dropped on a full queue
}

// ErrNoRoute is returned by Send when a peer has no path yet. wireguard-go
// drops the packet; the Router has been asked to find one.
var ErrNoRoute = errors.New("no path to peer yet")

// ErrClosed is returned by WriteTo while the socket is closed (between
// wireguard-go's rebinds).
var ErrClosed = errors.New("bind is closed")

// Bind implements conn.Bind.
type Bind struct {
	inner   conn.Bind
	router  Router
	handler Handler
	Stats   Stats

	mu     sync.RWMutex
	open   bool
	port   uint16
	stream chan []byte   // frames from a stream relay, while open
	closed chan struct{} // closed by Close, ends streamReceive
	// Auxiliary sockets (aux.go), guarded by mu.
	auxListen func() (UDPConn, error)
	aux       map[int]UDPConn
	auxNext   int
	auxCh     chan auxPacket

	epMu sync.Mutex
	eps  map[crypto.PublicKey]*PeerEndpoint

	framePool sync.Pool
}

// New wraps inner. router and handler must be set before Open. auxListen
// opens auxiliary sockets for the birthday technique; nil disables them.
func New(inner conn.Bind, router Router, handler Handler, auxListen func() (UDPConn, error)) *Bind {
	return &Bind{
		inner:     inner,
		router:    router,
		handler:   handler,
		auxListen: auxListen,
		aux:       make(map[int]UDPConn),
		eps:       make(map[crypto.PublicKey]*PeerEndpoint),
		framePool: sync.Pool{New: func() any {
			b := make([]byte, 0, wire.RelayHeaderLen+maxPacket)
			return &b
		}},
	}
}

// maxPacket is the largest UDP payload wireguard-go sends (device.MaxMessageSize).
const maxPacket = 65535

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
	b.closeAllAux()
	b.mu.Unlock()
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
	b.epMu.Lock()
	defer b.epMu.Unlock()
	ep, ok := b.eps[k]
	if !ok {
		ep = &PeerEndpoint{Key: k}
		b.eps[k] = ep
	}
	return ep
}

// Forget drops a removed peer's endpoint.
func (b *Bind) Forget(k crypto.PublicKey) {
	b.epMu.Lock()
	defer b.epMu.Unlock()
	delete(b.eps, k)
}

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
