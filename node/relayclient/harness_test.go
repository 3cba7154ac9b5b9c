package relayclient

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/relayfault"
	"github.com/meshnode/meshnode/internal/testenv"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/relay"
)

// waitTimeout is generous for waits that normally end at once.
const waitTimeout = 10 * time.Second

// fastTiming scales the relays' timers down; TCPGrace stays above a UDP
// bind on loopback, so the fallback only opens where UDP is blocked.
var fastTiming = Timing{Retry: 20 * time.Millisecond, Refresh: 50 * time.Millisecond, Expiry: 250 * time.Millisecond, TCPGrace: 500 * time.Millisecond, StreamRetry: 50 * time.Millisecond}

func newKey(t testing.TB) crypto.PrivateKey {
	t.Helper()
	k, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatalf("key: %v", err)
	}
	return k
}

func loopback(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fakeAuth is the relay's Authorizer: registered keys, symmetric peering.
// refused hears each key the relay turned away.
type fakeAuth struct {
	mu      sync.Mutex
	known   map[crypto.PublicKey]bool
	peers   map[[2]crypto.PublicKey]bool
	refused chan crypto.PublicKey
}

func newFakeAuth() *fakeAuth {
	return &fakeAuth{known: map[crypto.PublicKey]bool{}, peers: map[[2]crypto.PublicKey]bool{}, refused: make(chan crypto.PublicKey, 64)}
}

func (a *fakeAuth) add(keys ...crypto.PublicKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range keys {
		a.known[k] = true
	}
}

func (a *fakeAuth) peer(x, y crypto.PublicKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.peers[[2]crypto.PublicKey{x, y}] = true
	a.peers[[2]crypto.PublicKey{y, x}] = true
}

func (a *fakeAuth) Known(k crypto.PublicKey) bool {
	a.mu.Lock()
	ok := a.known[k]
	a.mu.Unlock()
	if !ok {
		select {
		case a.refused <- k:
		default:
		}
	}
	return ok
}

func (a *fakeAuth) ArePeers(x, y crypto.PublicKey) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.peers[[2]crypto.PublicKey{x, y}]
}

// relayServer is a real relay (package relay) on loopback UDP and, once
// serveTLS is called, over WebSocket on an httptest TLS server.
type relayServer struct {
	key  crypto.PrivateKey
	auth *fakeAuth
	srv  *relay.Server
	udp  netip.AddrPort
	stop func() // stops serving UDP; the relay then stays silent there
	// fault makes the relay drop what it should carry (relayfault.Set).
	fault *relayfault.Conn
	// After serveTLS: the coordinator's https URL, a client pinned to its
	// certificate, and how many relay WebSockets are open.
	url    string
	client *http.Client
	wsOpen atomic.Int64
}

func startRelay(t *testing.T) *relayServer {
	t.Helper()
	s := &relayServer{key: newKey(t), auth: newFakeAuth()}
	s.srv = relay.New(relay.Options{Key: s.key, Auth: s.auth})
	pc := loopback(t)
	s.fault = relayfault.Wrap(pc)
	s.udp, s.stop = s.serveUDP(t, s.fault)
	return s
}

// serveUDP serves the relay on pc (one more socket, as the coordinator's
// stun_listen_v6 is) until the test ends or stop is called; it returns
// pc's address.
func (s *relayServer) serveUDP(t *testing.T, pc net.PacketConn) (addr netip.AddrPort, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.srv.ServeUDP(ctx, []net.PacketConn{pc}, nil) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ServeUDP: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), stop
}

// candidate is the relay as the coordinator announces it.
func (s *relayServer) candidate() Candidate {
	return Candidate{Key: s.key.Public(), Addr: s.udp.String()}
}

// serveTLS serves the relay's WebSocket at wire.PathRelay over TLS, as the
// coordinator does, with a client that trusts only its certificate's pin.
func (s *relayServer) serveTLS(t *testing.T) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc(wire.PathRelay, func(w http.ResponseWriter, r *http.Request) {
		s.wsOpen.Add(1)
		defer s.wsOpen.Add(-1)
		s.srv.ServeHTTP(w, r)
	})
	s.url, s.client = serveTLS(t, mux)
}

// serveTLS starts an httptest TLS server and returns its URL and a client
// pinned to its certificate (crypto.PinnedTLSConfig), as a node's is.
func serveTLS(t *testing.T, h http.Handler) (string, *http.Client) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	pin := crypto.CertFingerprint(srv.Certificate().Raw)
	tr := &http.Transport{TLSClientConfig: crypto.PinnedTLSConfig(pin)}
	t.Cleanup(tr.CloseIdleConnections)
	return srv.URL, &http.Client{Transport: tr}
}

// router is the test node's path manager: every key but the node's own is
// a peer, and the test sends on routes itself.
type router struct{ self crypto.PublicKey }

func (router) RouteTo(crypto.PublicKey) bind.Route            { return nil }
func (router) PeerAt(netip.AddrPort) (crypto.PublicKey, bool) { return crypto.PublicKey{}, false }
func (r router) IsPeer(k crypto.PublicKey) bool               { return k != r.self }

// RelayAt takes relayed frames from anywhere: the Bind's source check is
// node/bind's to test; these tests are about the relay client.
func (router) RelayAt(netip.AddrPort) bool { return true }

// packet is a WireGuard packet the test node's Bind delivered.
type packet struct {
	from crypto.PublicKey
	data []byte
}

// testNode is a node's Bind on a loopback socket, with Relays wired to it
// as the engine wires them. Its receive loops stand in for wireguard-go.
type testNode struct {
	priv   crypto.PrivateKey
	pub    crypto.PublicKey
	bind   *bind.Bind
	addr   netip.AddrPort
	relays *Relays
	routes chan bind.Route // OnRoute's calls, in order
	recv   chan packet
}

// nodeOpts adjust a test node's Options.
type nodeOpts func(*Options)

// withTCP gives the node the TCP relay at url.
func withTCP(url string, client *http.Client, coord crypto.PublicKey) nodeOpts {
	return func(o *Options) { o.CoordinatorURL, o.HTTPClient, o.CoordinatorKey = url, client, coord }
}

// withOnRoute replaces the test's OnRoute.
func withOnRoute(f func(bind.Route)) nodeOpts { return func(o *Options) { o.OnRoute = f } }

// report is one call of Options.Report.
type report struct {
	relay crypto.PublicKey
	peer  *crypto.PublicKey
}

// withReports sends the node's reports to ch.
func withReports(ch chan report) nodeOpts {
	return func(o *Options) {
		o.Report = func(relay crypto.PublicKey, peer *crypto.PublicKey) {
			select {
			case ch <- report{relay, peer}:
			default:
			}
		}
	}
}

func newTestNode(t *testing.T, timing Timing, opts ...nodeOpts) *testNode {
	t.Helper()
	return newTestNodeOn(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"), timing, opts...)
}

// newTestNodeOn is newTestNode with its socket on laddr: "udp6" is an
// IPv6-only host, "udp" on [::] a dual-stack one.
func newTestNodeOn(t *testing.T, network string, laddr netip.AddrPort, timing Timing, opts ...nodeOpts) *testNode {
	t.Helper()
	n := &testNode{priv: newKey(t), routes: make(chan bind.Route, 64), recv: make(chan packet, 64)}
	n.pub = n.priv.Public()
	n.bind = bind.New(bind.NewConnBind(func(uint16) (bind.UDPConn, error) {
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(laddr))
		if err != nil {
			testenv.Unavailable(t, "listen %s %s: %v", network, laddr, err)
		}
		return c, err
	}), nil)
	o := Options{
		Priv:    n.priv,
		Sockets: n.bind,
		Deliver: n.bind.DeliverFrame,
		OnRoute: func(r bind.Route) { n.routes <- r },
		Timing:  timing,
	}
	for _, f := range opts {
		f(&o)
	}
	n.relays = New(o)
	n.bind.Attach(router{self: n.pub}, bind.Handlers{
		STUN:         func([]byte, netip.AddrPort) {},
		Disco:        func([]byte, netip.AddrPort, int) {},
		RelayedDisco: func([]byte, crypto.PublicKey) {},
		RelayControl: n.relays.HandleControl,
		Echo:         n.relays.HandleEcho,
		Self:         n.pub,
	})
	fns, port, err := n.bind.Open(0)
	if err != nil {
		t.Fatalf("open bind: %v", err)
	}
	n.addr = netip.AddrPortFrom(laddr.Addr(), port)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Go(func() { n.receive(fn) })
	}
	wg.Go(func() { n.relays.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		n.bind.Close()
		wg.Wait()
	})
	return n
}

// receive plays wireguard-go's receive goroutine: it reads fn until the
// Bind closes and keeps the WireGuard packets the Bind passes on.
func (n *testNode) receive(fn conn.ReceiveFunc) {
	bufs, sizes, eps := [][]byte{make([]byte, maxFrame)}, make([]int, 1), make([]conn.Endpoint, 1)
	for {
		got, err := fn(bufs, sizes, eps)
		if err != nil {
			return
		}
		for i := range got {
			if sizes[i] == 0 {
				continue
			}
			select {
			case n.recv <- packet{from: eps[i].(*bind.PeerEndpoint).Key, data: bytes.Clone(bufs[i][:sizes[i]])}:
			default:
			}
		}
	}
}

// waitRoute waits for OnRoute to hand over a route that ok accepts (nil
// included), skipping the ones before it.
func (n *testNode) waitRoute(t *testing.T, what string, ok func(bind.Route) bool) bind.Route {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case r := <-n.routes:
			if ok(r) {
				return r
			}
		case <-deadline:
			t.Fatalf("node %s: no %s after %v (status %+v)", n.pub.Short(), what, waitTimeout, n.relays.Status())
		}
	}
}

// udpRouteTo accepts the UDP relay route through addr.
func udpRouteTo(addr netip.AddrPort) func(bind.Route) bool {
	return func(r bind.Route) bool {
		return r != nil && r.Info().Kind == bind.KindRelay && r.Info().Addr == addr
	}
}

// streamRouteVia accepts the TCP relay route to the coordinator at url.
func streamRouteVia(url string) func(bind.Route) bool {
	return func(r bind.Route) bool {
		return r != nil && r.Info().Kind == bind.KindRelay && !r.Info().Addr.IsValid() && r.Info().Via == url+wire.PathRelay
	}
}

func noRoute(r bind.Route) bool { return r == nil }

// send sends a packet to peer on route r, as wireguard-go's Send does.
func send(t *testing.T, r bind.Route, peer crypto.PublicKey, pkt []byte) {
	t.Helper()
	if err := r.Send([][]byte{pkt}, peer); err != nil {
		t.Fatalf("send on %+v: %v", r.Info(), err)
	}
}

// expectPacket waits for a packet from peer at n.
func (n *testNode) expectPacket(t *testing.T, from crypto.PublicKey, want []byte) {
	t.Helper()
	select {
	case p := <-n.recv:
		if p.from != from || !bytes.Equal(p.data, want) {
			t.Fatalf("node %s got %d bytes from %s, want %d from %s", n.pub.Short(), len(p.data), p.from.Short(), len(want), from.Short())
		}
	case <-time.After(waitTimeout):
		t.Fatalf("node %s: no packet from %s after %v", n.pub.Short(), from.Short(), waitTimeout)
	}
}

// wgPacket looks like a WireGuard transport message (type 4) of n bytes,
// tagged so that packets can be told apart.
func wgPacket(n int, tag byte) []byte {
	p := make([]byte, n)
	p[0] = 4
	for i := 4; i < n; i++ {
		p[i] = tag
	}
	return p
}

// waitStatus polls the node's status until ok accepts it.
func (n *testNode) waitStatus(t *testing.T, what string, ok func(Status) bool) {
	t.Helper()
	wait.For(t, waitTimeout, what, func() bool { return ok(n.relays.Status()) })
}
