package path

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
)

// fabric delivers packets between managers by address, synchronously
// unless the destination has a delay, and lets a test tap or drop them.
type fabric struct {
	mu    sync.Mutex
	at    map[netip.AddrPort]*Manager
	byKey map[crypto.PublicKey]*Manager // for the relay (order_test.go)
	tap   func(pkt []byte, from, to netip.AddrPort)
	block map[netip.AddrPort]bool
	// mtu, when set, drops IPv4 datagrams larger than it without a word:
	// a path with an ICMP black hole. With icmp, the first one a sender
	// sends teaches its kernel the path MTU (learned), and later ones are
	// fragmented and arrive, as under Linux's IP_PMTUDISC_WANT.
	mtu     int
	icmp    bool
	learned map[netip.AddrPort]bool
	delay   map[netip.AddrPort]time.Duration // one way, to that address
	primes  int                              // low-TTL packets written, none delivered
	// noTTL makes low-TTL writes from these addresses fail.
	noTTL map[netip.AddrPort]bool
	// resends lists the peers each node asked to resend a handshake to.
	resends map[netip.AddrPort][]crypto.PublicKey
}

// port is a node's socket on the fabric: it sends from self, or from self6
// to an IPv6 address when the node has one.
type port struct {
	f     *fabric
	self  netip.AddrPort
	self6 netip.AddrPort
}

func (p port) WriteVia(pkt []byte, to netip.AddrPort, _ int) error {
	from := p.self
	if to.Addr().Is6() && p.self6.IsValid() {
		from = p.self6
	}
	p.f.mu.Lock()
	m, tap, blocked, delay := p.f.at[to], p.f.tap, p.f.block[to], p.f.delay[to]
	if p.f.mtu > 0 && len(pkt)+20+8 > p.f.mtu {
		blocked = blocked || !p.f.icmp || !p.f.learned[p.self]
		if p.f.icmp {
			p.f.learned[p.self] = true
		}
	}
	p.f.mu.Unlock()
	if tap != nil {
		tap(append([]byte{}, pkt...), from, to)
	}
	if m == nil || blocked {
		return nil
	}
	pkt = append([]byte{}, pkt...)
	if delay > 0 {
		time.AfterFunc(delay, func() { m.HandleDisco(pkt, from, 0) })
		return nil
	}
	m.HandleDisco(pkt, from, 0)
	return nil
}

// WriteTTL drops the packet: a low-TTL prime dies on the way.
func (p port) WriteTTL(pkt []byte, to netip.AddrPort, _, _ int) error {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	if p.f.noTTL[p.self] {
		return bind.ErrNoTTL
	}
	p.f.primes++
	return nil
}

// CanSendTTL is true: the fabric takes primes.
func (port) CanSendTTL() bool { return true }

// ResendHandshake records the request: the fabric carries no WireGuard.
func (p port) ResendHandshake(peer crypto.PublicKey) {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	p.f.resends[p.self] = append(p.f.resends[p.self], peer)
}

// Direct is a route over the fabric.
func (p port) Direct(addr netip.AddrPort, sock int) bind.Route {
	return fabricRoute{p, addr, sock}
}

// fabricRoute sends over the fabric like a direct UDP path.
type fabricRoute struct {
	p    port
	addr netip.AddrPort
	sock int
}

func (r fabricRoute) Send(bufs [][]byte, _ crypto.PublicKey) error {
	for _, b := range bufs {
		if err := r.p.WriteVia(b, r.addr, r.sock); err != nil {
			return err
		}
	}
	return nil
}

func (r fabricRoute) Info() bind.RouteInfo {
	return bind.RouteInfo{Kind: bind.KindDirect, Addr: r.addr}
}

type node struct {
	m    *Manager
	key  crypto.PublicKey
	addr netip.AddrPort
}

func fastTiming() Timing {
	t := DefaultTiming(time.Second)
	t.PunchInterval = 20 * time.Millisecond
	t.Settle = 50 * time.Millisecond
	t.Tick = 5 * time.Millisecond
	// No relay carries readies on the fabric unless a test adds one: hold
	// only briefly.
	t.HoldTimeout = 50 * time.Millisecond
	return t
}

func (f *fabric) add(t *testing.T, addr string) *node {
	t.Helper()
	return f.addTimed(t, addr, fastTiming())
}

func (f *fabric) addTimed(t *testing.T, addr string, tm Timing) *node {
	t.Helper()
	return f.addDual(t, addr, "", tm)
}

// addDual adds a node with an IPv4 and, unless addr6 is empty, an IPv6
// address.
func (f *fabric) addDual(t *testing.T, addr, addr6 string, tm Timing) *node {
	t.Helper()
	priv, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(addr)
	var ap6 netip.AddrPort
	if addr6 != "" {
		ap6 = netip.MustParseAddrPort(addr6)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := New(crypto.NewSealer(priv), port{f, ap, ap6}, tm, log)
	// The node's STUN has answered: its address on the fabric is its
	// mapping.
	m.SetSelfNAT(wire.NATInfo{Mapping: wire.MappingEndpointIndependent, PortAlloc: wire.PortAllocPreserve})
	f.mu.Lock()
	f.at[ap] = m
	if ap6.IsValid() {
		f.at[ap6] = m
	}
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &node{m: m, key: priv.Public(), addr: ap}
}

// pair adds two nodes on the fabric with timing tm, introduces them and
// waits until each has a direct path to the other.
func (f *fabric) pair(t *testing.T, tm Timing) (a, b *node) {
	t.Helper()
	a = f.addTimed(t, "198.18.1.1:41820", tm)
	b = f.addTimed(t, "198.18.2.1:41820", tm)
	introduce(a, b, b.addr)
	introduce(b, a, a.addr)
	waitPath(t, a, b, b.addr)
	waitPath(t, b, a, a.addr)
	return a, b
}

func newFabric() *fabric {
	return &fabric{at: make(map[netip.AddrPort]*Manager), byKey: make(map[crypto.PublicKey]*Manager), block: make(map[netip.AddrPort]bool), learned: make(map[netip.AddrPort]bool), delay: make(map[netip.AddrPort]time.Duration), noTTL: make(map[netip.AddrPort]bool), resends: make(map[netip.AddrPort][]crypto.PublicKey)}
}

func introduce(a, b *node, bAddrs ...netip.AddrPort) {
	var eps []wire.Endpoint
	for _, x := range bAddrs {
		eps = append(eps, wire.Endpoint{Addr: x, Kind: wire.EndpointSTUN})
	}
	a.m.UpsertPeer(PeerInfo{Key: b.key, Name: "peer", Online: true, Endpoints: eps})
}

func waitPath(t *testing.T, n, peer *node, want netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if p := n.m.Path(peer.key); p.Path == PathDirect && p.Endpoint == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no direct path to %v; have %+v", want, n.m.Path(peer.key))
}

func TestPunchFindsDirectPathBothWays(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a := f.add(t, "198.18.1.1:41820")
	b := f.add(t, "198.18.2.1:41820")
	dead := netip.MustParseAddrPort("10.9.9.9:1") // an unreachable LAN candidate
	introduce(a, b, dead, b.addr)
	introduce(b, a, a.addr)
	waitPath(t, a, b, b.addr)
	waitPath(t, b, a, a.addr)
	if r := a.m.RouteTo(b.key); r == nil || r.Info() != (bind.RouteInfo{Kind: bind.KindDirect, Addr: b.addr}) {
		t.Fatalf("RouteTo = %+v; want direct to %v", r, b.addr)
	}
	if k, ok := b.m.PeerAt(a.addr); !ok || k != a.key {
		t.Fatalf("PeerAt(%v) = %v, %v; want a's key", a.addr, k, ok)
	}
}

func TestLANCandidateWins(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a := f.add(t, "192.168.1.2:41820")
	b := f.add(t, "192.168.1.3:41820")
	public := netip.MustParseAddrPort("198.18.1.1:41821")
	// b's public mapping hairpins to b in this fabric.
	f.at[public] = b.m
	a.m.UpsertPeer(PeerInfo{Key: b.key, Name: "b", Online: true, Endpoints: []wire.Endpoint{
		{Addr: public, Kind: wire.EndpointSTUN},
		{Addr: b.addr, Kind: wire.EndpointLAN},
	}})
	introduce(b, a, a.addr)
	waitPath(t, a, b, b.addr)
}

func TestPeerReflexiveCandidate(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a := f.add(t, "198.18.1.1:41820")
	b := f.add(t, "198.18.2.1:41820")
	// a knows no address of b; b knows a's. b's pings teach a where b is.
	introduce(a, b)
	introduce(b, a, a.addr)
	waitPath(t, a, b, b.addr)
}

func TestRejectsForgedAndReplayedDiscovery(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a := f.add(t, "198.18.1.1:41820")
	b := f.add(t, "198.18.2.1:41820")
	var mu sync.Mutex
	var captured [][]byte
	f.mu.Lock()
	f.tap = func(pkt []byte, from, to netip.AddrPort) {
		mu.Lock()
		defer mu.Unlock()
		if from == b.addr && to == a.addr {
			captured = append(captured, pkt)
		}
	}
	f.mu.Unlock()
	introduce(a, b, b.addr)
	introduce(b, a, a.addr)
	waitPath(t, a, b, b.addr)
	f.mu.Lock()
	f.tap = nil
	f.mu.Unlock()

	// A stranger (not a peer) sends a well-formed sealed ping.
	stranger := f.add(t, "198.18.3.1:41820")
	stranger.m.UpsertPeer(PeerInfo{Key: a.key, Name: "a", Online: true, Endpoints: []wire.Endpoint{{Addr: a.addr, Kind: wire.EndpointSTUN}}})
	deadline := time.Now().Add(5 * time.Second)
	for a.m.Stats.Rejected.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if a.m.Stats.Rejected.Load() == 0 {
		t.Fatal("a ping from a key that is not a peer was not rejected")
	}
	if p := stranger.m.Path(a.key); p.Path != PathNone {
		t.Fatalf("stranger got a path to a: %+v", p)
	}

	tests := []struct {
		name string
		pkt  func() []byte
	}{
		{"replayed", func() []byte { mu.Lock(); defer mu.Unlock(); return captured[0] }},
		{"tampered", func() []byte {
			mu.Lock()
			defer mu.Unlock()
			p := append([]byte{}, captured[len(captured)-1]...)
			p[len(p)-1] ^= 1
			return p
		}},
		{"truncated", func() []byte { return wire.DiscoMagic[:] }},
		{"garbage", func() []byte { return append(wire.DiscoMagic[:], make([]byte, 100)...) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := a.m.Stats.Rejected.Load()
			pongs := b.m.Stats.PongsReceived.Load()
			// Replayed from an attacker's address: it must not become b's path.
			attacker := netip.MustParseAddrPort("198.18.66.6:666")
			a.m.HandleDisco(tc.pkt(), attacker, 0)
			if got := a.m.Stats.Rejected.Load(); got != before+1 {
				t.Fatalf("rejected count %d → %d, want one more", before, got)
			}
			if _, ok := a.m.PeerAt(attacker); ok {
				t.Fatal("the attacker's address was mapped to b")
			}
			if b.m.Stats.PongsReceived.Load() < pongs {
				t.Fatal("pong count went backwards")
			}
		})
	}
	if p := a.m.Path(b.key); p.Endpoint != b.addr {
		t.Fatalf("a's path to b moved to %v", p.Endpoint)
	}
}

func TestDeadPathIsNoticedAndRepunched(t *testing.T) {
	t.Parallel()
	// a's active heartbeat is short, so its MissedPongs heartbeats go
	// unanswered in a fraction of a second rather than the default 6 s.
	tm := fastTiming()
	tm.ActiveHeartbeat = 50 * time.Millisecond
	f := newFabric()
	a := f.addTimed(t, "198.18.1.1:41820", tm)
	b := f.add(t, "198.18.2.1:41820")
	introduce(a, b, b.addr)
	introduce(b, a, a.addr)
	waitPath(t, a, b, b.addr)
	// Keep a active so heartbeats run at the active rate, then cut b off.
	a.m.RouteTo(b.key)
	f.mu.Lock()
	f.block[b.addr] = true
	f.mu.Unlock()
	wait.For(t, 20*time.Second, "a to notice its path to b died", func() bool {
		a.m.RouteTo(b.key)
		return a.m.Stats.PathsLost.Load() > 0
	})
	if p := a.m.Path(b.key); p.Path != PathNone {
		t.Fatalf("path after loss = %+v, want none (no relay configured)", p)
	}
	f.mu.Lock()
	f.block[b.addr] = false
	f.mu.Unlock()
	waitPath(t, a, b, b.addr)
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	tm := DefaultTiming(time.Second)
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{
		{1, tm.RetryMin}, {2, 2 * tm.RetryMin}, {3, 4 * tm.RetryMin}, {20, tm.RetryMax},
	} {
		if got := backoff(tc.failures, tm); got != tc.want {
			t.Errorf("backoff(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

// A public host's TCP candidate shares ip:port with its UDP one: offering
// both must not hide the UDP candidate from punching.
func TestTCPCandidateDoesNotHideUDPCandidate(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a := f.add(t, "198.18.1.10:41820")
	b := f.add(t, "198.18.2.10:41820")
	for _, pair := range [][2]*node{{a, b}, {b, a}} {
		x, y := pair[0], pair[1]
		x.m.UpsertPeer(PeerInfo{Key: y.key, Name: "peer", Online: true, Endpoints: []wire.Endpoint{
			{Addr: y.addr, Kind: wire.EndpointLAN},
			{Addr: y.addr, Kind: wire.EndpointTCP},
		}})
	}
	waitPath(t, a, b, b.addr)
	waitPath(t, b, a, a.addr)
}

// TestFasterFamilyWins: dual-stack peers whose IPv6 path opens only after
// their IPv4 one answered (a firewall slower to open, say) switch to it
// when it is faster, and stay on IPv4 when IPv6 is slower.
func TestFasterFamilyWins(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		delay4, delay6 time.Duration // one way
		want6          bool
	}{
		{"IPv6 faster", 20 * time.Millisecond, time.Millisecond, true},
		{"IPv6 slower", time.Millisecond, 20 * time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tm := fastTiming()
			tm.Settle = time.Second // the later family answers within it
			f := newFabric()
			a := f.addDual(t, "198.18.1.1:41820", "[2001:2:0:1::2]:41820", tm)
			b := f.addDual(t, "198.18.2.1:41820", "[2001:2:0:2::2]:41820", tm)
			a6, b6 := netip.MustParseAddrPort("[2001:2:0:1::2]:41820"), netip.MustParseAddrPort("[2001:2:0:2::2]:41820")
			f.mu.Lock()
			f.delay[a.addr], f.delay[b.addr], f.delay[a6], f.delay[b6] = tt.delay4, tt.delay4, tt.delay6, tt.delay6
			f.block[a6], f.block[b6] = true, true
			f.mu.Unlock()
			for _, x := range []struct {
				n, peer *node
				addr6   netip.AddrPort
			}{{a, b, b6}, {b, a, a6}} {
				x.n.m.UpsertPeer(PeerInfo{Key: x.peer.key, Name: "peer", Online: true, Endpoints: []wire.Endpoint{
					{Addr: x.peer.addr, Kind: wire.EndpointSTUN},
					{Addr: x.addr6, Kind: wire.EndpointPublic},
				}})
			}
			waitPath(t, a, b, b.addr)
			f.mu.Lock()
			f.block[a6], f.block[b6] = false, false
			f.mu.Unlock()
			want := b.addr
			if tt.want6 {
				want = b6
			}
			wait.For(t, 10*time.Second, "the round to end on "+want.String(), func() bool {
				a.m.mu.Lock()
				defer a.m.mu.Unlock()
				p := a.m.peers[b.key]
				return !p.punching(time.Now()) && p.best == want
			})
		})
	}
}

// TestPreferAcrossFamilies: between IPv4 and IPv6 the faster path wins,
// past the hysteresis; a dual-stack peer's pings from the other family
// are no sign that its mapping moved; LAN still beats a public address.
func TestPreferAcrossFamilies(t *testing.T) {
	t.Parallel()
	v4 := netip.MustParseAddrPort("198.18.1.1:41820")
	v4moved := netip.MustParseAddrPort("198.18.1.1:50000")
	v6 := netip.MustParseAddrPort("[2001:2:0:1::2]:41820")
	lan := netip.MustParseAddrPort("10.1.0.2:41820")
	ms := time.Millisecond
	tests := []struct {
		name     string
		best     netip.AddrPort
		bestKind string
		bestRTT  time.Duration
		pingSrc  netip.AddrPort // where the peer's last ping came from
		a        netip.AddrPort
		kind     string
		rtt      time.Duration
		want     bool
	}{
		{"IPv6 much faster", v4, wire.EndpointSTUN, 20 * ms, v4, v6, wire.EndpointPublic, 10 * ms, true},
		{"IPv6 about as fast", v4, wire.EndpointSTUN, 20 * ms, v4, v6, wire.EndpointPublic, 19 * ms, false},
		{"IPv4 much faster", v6, wire.EndpointPublic, 30 * ms, v6, v4, wire.EndpointSTUN, 10 * ms, true},
		{"the peer pinged from IPv4: no move", v6, wire.EndpointPublic, 10 * ms, v4, v4, wire.EndpointSTUN, 12 * ms, false},
		{"the peer's IPv4 mapping moved", v4, wire.EndpointSTUN, 10 * ms, v4moved, v4moved, wire.EndpointSTUN, 30 * ms, true},
		{"a public address is no LAN", v4, wire.EndpointSTUN, 20 * ms, v4, v6, wire.EndpointPublic, 30 * ms, false},
		{"LAN beats a public address", v6, wire.EndpointPublic, 10 * ms, v6, lan, wire.EndpointLAN, 30 * ms, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &peer{hasBest: true, best: tt.best, bestKind: tt.bestKind, bestRTT: tt.bestRTT, lastPingSrc: tt.pingSrc}
			if got := p.prefer(tt.a, tt.kind, tt.rtt); got != tt.want {
				t.Fatalf("prefer(%v %s %v) over %v %s %v = %v, want %v", tt.a, tt.kind, tt.rtt, tt.best, tt.bestKind, tt.bestRTT, got, tt.want)
			}
		})
	}
}

// familyScope permits IPv6 only once the host has it.
type familyScope struct{ has6 *bool }

func (s familyScope) Permit(a netip.AddrPort, _ string) bool { return a.Addr().Is4() || *s.has6 }

// TestRepunchAppliesTheScopeAgain: a host that gains IPv6 (a link change)
// probes its peers' IPv6 candidates from then on, without waiting for the
// peers to report again.
func TestRepunchAppliesTheScopeAgain(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a := f.add(t, "198.18.1.1:41820")
	has6 := false
	a.m.SetScope(familyScope{&has6})
	peerKey, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	a.m.UpsertPeer(PeerInfo{Key: peerKey.Public(), Name: "b", Online: true, Endpoints: []wire.Endpoint{
		{Addr: netip.MustParseAddrPort("198.18.2.1:41820"), Kind: wire.EndpointSTUN},
		{Addr: netip.MustParseAddrPort("[2001:2:0:2::2]:41820"), Kind: wire.EndpointPublic},
	}})
	if n := a.m.Path(peerKey.Public()).Candidates; n != 1 {
		t.Fatalf("%d candidates before the host has IPv6, want 1", n)
	}
	a.m.mu.Lock()
	has6 = true
	a.m.mu.Unlock()
	a.m.Repunch()
	if n := a.m.Path(peerKey.Public()).Candidates; n != 2 {
		t.Fatalf("%d candidates after the host gained IPv6, want 2", n)
	}
}

// fabricRelay carries relayed discovery between the fabric's managers by
// key, as the coordinator's relay does.
type fabricRelay struct {
	f    *fabric
	self crypto.PublicKey
}

func (r fabricRelay) Send(bufs [][]byte, peer crypto.PublicKey) error {
	r.f.mu.Lock()
	m := r.f.byKey[peer]
	r.f.mu.Unlock()
	if m == nil {
		return ErrNoPath
	}
	for _, b := range bufs {
		m.HandleRelayedDisco(append([]byte{}, b...), r.self)
	}
	return nil
}

func (fabricRelay) Info() bind.RouteInfo {
	return bind.RouteInfo{Kind: bind.KindRelay, Addr: netip.MustParseAddrPort("198.18.0.1:3478")}
}

// relay gives the nodes a relay between them.
func (f *fabric) relay(nodes ...*node) {
	f.mu.Lock()
	for _, n := range nodes {
		f.byKey[n.key] = n.m
	}
	f.mu.Unlock()
	for _, n := range nodes {
		n.m.SetRelay(fabricRelay{f, n.key})
	}
}
