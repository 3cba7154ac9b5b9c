package bind

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

type recorder struct {
	mu                        sync.Mutex
	stun, disco, relayc, echo [][]byte
	self                      crypto.PublicKey // this node's key: frames naming it are echoes
}

func (r *recorder) HandleSTUN(p []byte, _ netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stun = append(r.stun, append([]byte{}, p...))
}

func (r *recorder) HandleDisco(p []byte, _ netip.AddrPort, _ int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.disco = append(r.disco, append([]byte{}, p...))
}

func (r *recorder) HandleRelayedDisco(p []byte, _ crypto.PublicKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.disco = append(r.disco, append([]byte{}, p...))
}

func (r *recorder) HandleRelayControl(p []byte, _ netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.relayc = append(r.relayc, append([]byte{}, p...))
}

func (r *recorder) HandleEcho(p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.echo = append(r.echo, append([]byte{}, p...))
}

// handlers hands the recorder every kind of packet.
func (r *recorder) handlers() Handlers {
	return Handlers{STUN: r.HandleSTUN, Disco: r.HandleDisco, RelayedDisco: r.HandleRelayedDisco, RelayControl: r.HandleRelayControl, Echo: r.HandleEcho, Self: r.self}
}

// newBind is a Bind on loopback with router and handlers attached; the
// router gets the Bind to build its routes.
func newBind(router interface {
	Router
	with(*Bind) Router
}, h Handlers, aux func() (UDPConn, error)) *Bind {
	b := New(NewConnBind(loopbackListen), aux)
	b.Attach(router.with(b), h)
	return b
}

func loopbackListen(port uint16) (UDPConn, error) {
	return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
}

// wgPacket is a minimal WireGuard-shaped transport message.
func wgPacket(fill byte) []byte {
	p := bytes.Repeat([]byte{fill}, 48)
	p[0], p[1], p[2], p[3] = 4, 0, 0, 0
	return p
}

func key(t *testing.T) crypto.PublicKey {
	t.Helper()
	k, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

func TestReceiveDemultiplexes(t *testing.T) {
	peer := key(t)
	sender, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	senderAddr := sender.LocalAddr().(*net.UDPAddr).AddrPort()
	router := staticRouter{
		to:    map[crypto.PublicKey]netip.AddrPort{peer: senderAddr},
		from:  map[netip.AddrPort]crypto.PublicKey{senderAddr: peer},
		relay: senderAddr, // the sender also plays the relay
	}
	rec := &recorder{self: key(t)}
	b := newBind(router, rec.handlers(), nil)
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}
	echo := wire.AppendRelayEcho(nil, [wire.RelayEchoTokenLen]byte{1, 2, 3})

	stunReq := stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw
	disco := append(wire.DiscoMagic[:], 1, 2, 3)
	relayed := wire.AppendRelayData(nil, peer, wgPacket(7))
	relayCtl := wire.RelayFrame{Type: wire.RelayChallenge, Challenge: make([]byte, wire.RelayChallengeLen)}.Marshal()
	for _, tc := range []struct {
		name     string
		pkt      []byte
		wantSize int  // what wireguard-go gets: 0 = consumed
		wantPeer bool // the endpoint is the peer's
		check    func() bool
	}{
		{"wireguard from a known peer", wgPacket(1), 48, true, nil},
		{"stun", stunReq, 0, false, func() bool { return len(rec.stun) == 1 }},
		{"disco", disco, 0, false, func() bool { return len(rec.disco) == 1 }},
		{"relayed wireguard", relayed, 48, true, nil},
		{"relay control", relayCtl, 0, false, func() bool { return len(rec.relayc) == 1 }},
		{"relayed echo naming this node", wire.AppendRelayData(nil, rec.self, echo), 0, false, func() bool {
			return len(rec.echo) == 1 && bytes.Equal(rec.echo[0], echo)
		}},
		{"relayed echo naming a stranger", wire.AppendRelayData(nil, key(t), echo), 0, false, func() bool {
			return len(rec.echo) == 1 && b.Stats.UnknownPeer.Load() == 1
		}},
		{"garbage", []byte("hello, world, this is not a protocol we speak"), 0, false, func() bool { return b.Stats.Garbage.Load() == 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := sender.WriteToUDP(tc.pkt, to); err != nil {
				t.Fatal(err)
			}
			bufs, sizes, eps := [][]byte{make([]byte, 1500)}, []int{0}, []conn.Endpoint{nil}
			n, err := fns[0](bufs, sizes, eps)
			if err != nil || n != 1 {
				t.Fatalf("receive: n=%d err=%v", n, err)
			}
			if sizes[0] != tc.wantSize {
				t.Fatalf("size %d, want %d", sizes[0], tc.wantSize)
			}
			if tc.wantPeer {
				pe, ok := eps[0].(*PeerEndpoint)
				if !ok || pe.Key != peer {
					t.Fatalf("endpoint %v, want the peer's", eps[0])
				}
				if !bytes.Equal(bufs[0][:sizes[0]], wgPacket(bufs[0][4])) {
					t.Fatal("payload damaged")
				}
			}
			if tc.check != nil {
				rec.mu.Lock()
				ok := tc.check()
				rec.mu.Unlock()
				if !ok {
					t.Fatal("not handed to its handler")
				}
			}
		})
	}
}

func TestSendFollowsTheRoute(t *testing.T) {
	direct, relay, missing := key(t), key(t), key(t)
	dst, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	addr := dst.LocalAddr().(*net.UDPAddr).AddrPort()
	router := relayRouter{direct: direct, relay: relay, addr: addr}
	b := newBind(router, (&recorder{}).handlers(), nil)
	if _, _, err := b.Open(0); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	read := func() []byte {
		buf := make([]byte, 1500)
		dst.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := dst.ReadFromUDP(buf)
		if err != nil {
			t.Fatal(err)
		}
		return buf[:n]
	}
	if err := b.Send([][]byte{wgPacket(1)}, b.Endpoint(direct)); err != nil {
		t.Fatal(err)
	}
	if got := read(); !bytes.Equal(got, wgPacket(1)) {
		t.Fatalf("direct: got %x", got)
	}
	if err := b.Send([][]byte{wgPacket(2)}, b.Endpoint(relay)); err != nil {
		t.Fatal(err)
	}
	f, err := wire.ParseRelay(read())
	if err != nil || f.Type != wire.RelayData || f.Key != relay || !bytes.Equal(f.Payload, wgPacket(2)) {
		t.Fatalf("relay: frame %+v, err %v; want data for the peer", f, err)
	}
	if err := b.Send([][]byte{wgPacket(3)}, b.Endpoint(missing)); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("no route: err %v, want ErrNoRoute", err)
	}
}

func TestStreamFramesReachWireGuard(t *testing.T) {
	peer := key(t)
	router := staticRouter{to: map[crypto.PublicKey]netip.AddrPort{peer: {}}, from: map[netip.AddrPort]crypto.PublicKey{}}
	b := newBind(router, (&recorder{}).handlers(), nil)
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	streamFn := fns[len(fns)-2]                                    // Open appends the stream, then the auxiliary, receive functions
	b.DeliverFrame(wire.AppendRelayData(nil, key(t), wgPacket(8))) // not a peer: dropped
	b.DeliverFrame(wire.AppendRelayData(nil, peer, wgPacket(9)))
	bufs, sizes, eps := [][]byte{make([]byte, 1500)}, []int{0}, []conn.Endpoint{nil}
	if n, err := streamFn(bufs, sizes, eps); n != 1 || err != nil {
		t.Fatalf("stream receive: %d, %v", n, err)
	}
	if !bytes.Equal(bufs[0][:sizes[0]], wgPacket(9)) || eps[0].(*PeerEndpoint).Key != peer {
		t.Fatal("wrong packet or endpoint from the stream")
	}
	if b.Stats.UnknownPeer.Load() != 1 {
		t.Fatalf("frame from a non-peer not counted: %d", b.Stats.UnknownPeer.Load())
	}
	b.Close()
	if _, err := streamFn(bufs, sizes, eps); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after Close: %v, want net.ErrClosed", err)
	}
}

func TestParseEndpoint(t *testing.T) {
	b := newBind(staticRouter{}, (&recorder{}).handlers(), nil)
	k := key(t)
	ep, err := b.ParseEndpoint(k.Hex())
	if err != nil || ep.(*PeerEndpoint).Key != k || ep != b.Endpoint(k) {
		t.Fatalf("ParseEndpoint(hex key) = %v, %v", ep, err)
	}
	for _, bad := range []string{"", "127.0.0.1:1", k.String(), k.Hex()[:62] + "zz"} {
		if _, err := b.ParseEndpoint(bad); err == nil {
			t.Errorf("ParseEndpoint(%q) accepted", bad)
		}
	}
}

// relayRouter routes one peer directly and another through a relay, both at addr.
type relayRouter struct {
	direct, relay crypto.PublicKey
	addr          netip.AddrPort
	b             *Bind
}

func (r relayRouter) with(b *Bind) Router { r.b = b; return r }

func (r relayRouter) RouteTo(k crypto.PublicKey) Route {
	switch k {
	case r.direct:
		return r.b.Direct(r.addr, 0)
	case r.relay:
		return r.b.UDPRelay(r.addr)
	}
	return nil
}
func (r relayRouter) PeerAt(netip.AddrPort) (crypto.PublicKey, bool) {
	return crypto.PublicKey{}, false
}
func (r relayRouter) IsPeer(k crypto.PublicKey) bool { return k == r.direct || k == r.relay }
func (r relayRouter) RelayAt(a netip.AddrPort) bool  { return a == r.addr }

// sockRecorder remembers which socket each discovery packet came in on.
type sockRecorder struct {
	recorder
	socks chan int
}

func (r *sockRecorder) HandleDisco(p []byte, from netip.AddrPort, sock int) {
	r.recorder.HandleDisco(p, from, sock)
	r.socks <- sock
}

func TestAuxiliarySockets(t *testing.T) {
	peer := key(t)
	remote, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	raddr := remote.LocalAddr().(*net.UDPAddr).AddrPort()
	router := staticRouter{to: map[crypto.PublicKey]netip.AddrPort{peer: raddr}, from: map[netip.AddrPort]crypto.PublicKey{raddr: peer}}
	rec := &sockRecorder{socks: make(chan int, 1)}
	h := rec.handlers()
	h.Disco = rec.HandleDisco
	b := newBind(router, h, func() (UDPConn, error) { return loopbackListen(0) })
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	auxFn := fns[len(fns)-1]
	ids, err := b.OpenAux(3)
	if err != nil || len(ids) != 3 {
		t.Fatalf("OpenAux: %v, %v", ids, err)
	}
	// Out through socket ids[1]: the remote sees that socket's port.
	if err := b.WriteVia(append(wire.DiscoMagic[:], 1), raddr, ids[1]); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	remote.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, auxAddr, err := remote.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	// Discovery back into that socket reaches the handler tagged with it.
	remote.WriteToUDPAddrPort(append(wire.DiscoMagic[:], 2), auxAddr)
	done := make(chan struct{})
	go func() {
		defer close(done)
		bufs, sizes, eps := [][]byte{make([]byte, 1500)}, []int{0}, []conn.Endpoint{nil}
		n, err := auxFn(bufs, sizes, eps) // the WireGuard packet sent below
		if n != 1 || err != nil || eps[0].(*PeerEndpoint).Key != peer {
			t.Errorf("aux receive: %d %v %v", n, err, eps[0])
		}
	}()
	select {
	case s := <-rec.socks:
		if s != ids[1] {
			t.Fatalf("discovery tagged socket %d, want %d", s, ids[1])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("discovery from the auxiliary socket never reached the handler")
	}
	// WireGuard from the peer into the auxiliary socket goes to wireguard-go.
	remote.WriteToUDPAddrPort(wgPacket(3), auxAddr)
	<-done
	// A route through the auxiliary socket sends from it.
	if err := b.Send([][]byte{wgPacket(4)}, b.Endpoint(peer)); err != nil {
		t.Fatal(err)
	}
	b.CloseAux(ids...)
	if err := b.WriteVia([]byte("x"), raddr, ids[0]); err == nil {
		t.Fatal("write through a closed auxiliary socket succeeded")
	}
}

// staticRouter routes each peer to one fixed address.
type staticRouter struct {
	to    map[crypto.PublicKey]netip.AddrPort
	from  map[netip.AddrPort]crypto.PublicKey
	relay netip.AddrPort // the UDP relay in use, if any
	b     *Bind
}

func (r staticRouter) RelayAt(a netip.AddrPort) bool { return r.relay.IsValid() && a == r.relay }

func (r staticRouter) with(b *Bind) Router { r.b = b; return r }

func (r staticRouter) RouteTo(k crypto.PublicKey) Route {
	a, ok := r.to[k]
	if !ok {
		return nil
	}
	return r.b.Direct(a, 0)
}

func (r staticRouter) PeerAt(a netip.AddrPort) (crypto.PublicKey, bool) {
	k, ok := r.from[a]
	return k, ok
}

func (r staticRouter) IsPeer(k crypto.PublicKey) bool { _, ok := r.to[k]; return ok }

// A relayed data frame naming a peer is taken only from the relay in use:
// anyone else could otherwise inject packets that claim to come from that
// peer (wireguard-go would drop them, but each costs a decryption attempt
// and a forged source can steer nothing).
func TestRelayedFramesOnlyFromTheRelay(t *testing.T) {
	peer := key(t)
	forger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	router := staticRouter{
		to:    map[crypto.PublicKey]netip.AddrPort{peer: netip.MustParseAddrPort("127.0.0.1:9")},
		from:  map[netip.AddrPort]crypto.PublicKey{},
		relay: netip.MustParseAddrPort("127.0.0.1:9"),
	}
	b := newBind(router, (&recorder{}).handlers(), nil)
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}
	if _, err := forger.WriteToUDP(wire.AppendRelayData(nil, peer, wgPacket(5)), to); err != nil {
		t.Fatal(err)
	}
	bufs, sizes, eps := [][]byte{make([]byte, 1500)}, []int{0}, []conn.Endpoint{nil}
	if n, err := fns[0](bufs, sizes, eps); err != nil || n != 1 {
		t.Fatalf("receive: n=%d err=%v", n, err)
	}
	if sizes[0] != 0 {
		t.Fatalf("a relayed frame from %v (not the relay) reached wireguard-go", forger.LocalAddr())
	}
	if b.Stats.RelayForged.Load() != 1 {
		t.Fatalf("forged relayed frames counted %d, want 1", b.Stats.RelayForged.Load())
	}
}
