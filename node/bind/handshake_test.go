package bind

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wait"
)

// handshakeMsg is a WireGuard handshake message of type typ and its size,
// filled with fill.
func handshakeMsg(typ byte, fill byte) []byte {
	size := device.MessageInitiationSize
	if typ == device.MessageResponseType {
		size = device.MessageResponseSize
	}
	p := bytes.Repeat([]byte{fill}, size)
	p[0], p[1], p[2], p[3] = typ, 0, 0, 0
	return p
}

// peerSocket is a peer's socket on loopback, closed when the test ends.
func peerSocket(t *testing.T) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// gateRouter has no path to its peer until open is set; then a direct
// one to addr, where the peer also sends from.
type gateRouter struct {
	peer crypto.PublicKey
	addr netip.AddrPort
	open *atomic.Bool
	b    *Bind
}

func (r gateRouter) with(b *Bind) Router { r.b = b; return r }

func (r gateRouter) RouteTo(k crypto.PublicKey) Route {
	if k != r.peer || !r.open.Load() {
		return nil
	}
	return r.b.Direct(r.addr, 0)
}

func (r gateRouter) PeerAt(a netip.AddrPort) (crypto.PublicKey, bool) { return r.peer, a == r.addr }
func (r gateRouter) IsPeer(k crypto.PublicKey) bool                   { return k == r.peer }
func (gateRouter) RelayAt(netip.AddrPort) bool                        { return false }

// An initiation that finds no path is kept, not lost: once a path is up,
// ResendHandshake sends that same initiation along it.
func TestHandshakeWaitsForAPath(t *testing.T) {
	peer := key(t)
	dst, addr := peerSocket(t)
	open := new(atomic.Bool)
	b := newBind(gateRouter{peer: peer, addr: addr, open: open}, (&recorder{}).handlers(), nil)
	if _, _, err := b.Open(0); err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	init := handshakeMsg(device.MessageInitiationType, 7)
	if err := b.Send([][]byte{init}, b.Endpoint(peer)); err != nil {
		t.Fatalf("initiation with no path: %v, want it kept", err)
	}
	if b.Stats.HandshakesHeld.Load() != 1 {
		t.Fatalf("held %d initiations, want 1", b.Stats.HandshakesHeld.Load())
	}
	b.ResendHandshake(peer) // still no path: nothing to send along
	if n := b.Stats.HandshakesResent.Load(); n != 0 {
		t.Fatalf("%d copies sent with no path", n)
	}
	open.Store(true)
	b.ResendHandshake(peer)
	buf := make([]byte, 1500)
	dst.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := dst.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no initiation once the path is up: %v", err)
	}
	if !bytes.Equal(buf[:n], init) {
		t.Fatalf("sent %x, want the kept initiation", buf[:n])
	}
	// Other packets that find no path are dropped as before.
	if err := b.Send([][]byte{wgPacket(1)}, b.Endpoint(key(t))); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("data with no path: %v, want ErrNoRoute", err)
	}
}

// The kept message's life: sent again at most every handshakeResendGap
// and maxHandshakeResends times, never once answered (an initiation by a
// response, a response by transport data) or older than RekeyTimeout, and
// a newer one replaces it.
func TestHandshakeCopies(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const (
		initiation = device.MessageInitiationType
		response   = device.MessageResponseType
	)
	for _, tc := range []struct {
		name   string
		typ    byte
		routed bool // the message went out along a route
		steps  func(h *handshake)
		at     time.Duration
		want   bool
	}{
		{"unrouted, at once", initiation, false, nil, 0, true},
		{"routed, before the gap", initiation, true, nil, handshakeResendGap / 2, false},
		{"routed, after the gap", initiation, true, nil, handshakeResendGap, true},
		{"stale", initiation, false, nil, device.RekeyTimeout, false},
		{"answered", initiation, false, func(h *handshake) { h.responded() }, handshakeResendGap, false},
		{"data does not answer an initiation", initiation, false, func(h *handshake) { h.confirmed() }, handshakeResendGap, true},
		{"a response, routed, after the gap", response, true, nil, handshakeResendGap, true},
		{"a response answered by data", response, true, func(h *handshake) { h.confirmed() }, handshakeResendGap, false},
		{"a response does not answer a response", response, true, func(h *handshake) { h.responded() }, handshakeResendGap, true},
		{"a stale response", response, true, nil, device.RekeyTimeout, false},
		{"copies used up", initiation, false, func(h *handshake) {
			for i := range maxHandshakeResends {
				if h.take(t0.Add(time.Duration(i)*handshakeResendGap)) == nil {
					panic("copy refused")
				}
			}
		}, maxHandshakeResends * handshakeResendGap, false},
		{"a newer initiation", initiation, false, func(h *handshake) {
			for i := range maxHandshakeResends {
				h.take(t0.Add(time.Duration(i) * handshakeResendGap))
			}
			h.outbound(handshakeMsg(device.MessageInitiationType, 2), false, t0.Add(time.Second))
		}, time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h handshake
			h.outbound(handshakeMsg(tc.typ, 1), tc.routed, t0)
			if tc.steps != nil {
				tc.steps(&h)
			}
			if got := h.take(t0.Add(tc.at)) != nil; got != tc.want {
				t.Fatalf("copy due at +%v: %v, want %v", tc.at, got, tc.want)
			}
		})
	}
}

// Stray data asks for a handshake at most once a handshakeKickGap.
func TestHandshakeKickGap(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var h handshake
	for _, step := range []struct {
		at   time.Duration
		want bool
	}{
		{0, true},
		{handshakeKickGap / 2, false},
		{handshakeKickGap, true},
		{handshakeKickGap + 1, false},
	} {
		if got := h.kick(t0.Add(step.at)); got != step.want {
			t.Fatalf("kick at +%v: %v, want %v", step.at, got, step.want)
		}
	}
}

// A peer that sends transport data when no handshake with it was seen
// answered (this node restarted; the peer kept the old session) asks for a
// handshake; once one was, its data asks for nothing.
func TestStrayDataAsksForAHandshake(t *testing.T) {
	peer := key(t)
	sender, addr := peerSocket(t)
	var mu sync.Mutex
	var asked []crypto.PublicKey
	h := (&recorder{}).handlers()
	h.NoSession = func(k crypto.PublicKey) {
		mu.Lock()
		asked = append(asked, k)
		mu.Unlock()
	}
	b := newBind(gateRouter{peer: peer, addr: addr, open: new(atomic.Bool)}, h, nil)
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}
	for _, step := range []struct {
		pkt       []byte
		wantAsked int
	}{
		{wgPacket(1), 1},
		{handshakeMsg(device.MessageResponseType, 2), 1},
		{wgPacket(3), 1},
	} {
		if _, err := sender.WriteToUDP(step.pkt, to); err != nil {
			t.Fatal(err)
		}
		bufs, sizes, eps := [][]byte{make([]byte, 1500)}, []int{0}, []conn.Endpoint{nil}
		if n, err := fns[0](bufs, sizes, eps); n != 1 || err != nil {
			t.Fatalf("receive: %d, %v", n, err)
		}
		if eps[0].(*PeerEndpoint).Key != peer || !bytes.Equal(bufs[0][:sizes[0]], step.pkt) {
			t.Fatal("packet not handed to wireguard-go as the peer's")
		}
		mu.Lock()
		got := len(asked)
		mu.Unlock()
		if got != step.wantAsked {
			t.Fatalf("after a type %d packet: %d handshakes asked, want %d", step.pkt[0], got, step.wantAsked)
		}
	}
}

// A WireGuard packet from an address where no peer is confirmed is dropped,
// and its source goes to Handlers.Stray: the path manager may know it.
func TestStrayWireGuardSourceIsReported(t *testing.T) {
	_, peerAddr := peerSocket(t)
	stranger, strangerAddr := peerSocket(t)
	strays := make(chan netip.AddrPort, 1)
	h := (&recorder{}).handlers()
	h.Stray = func(from netip.AddrPort) { strays <- from }
	b := newBind(gateRouter{peer: key(t), addr: peerAddr, open: new(atomic.Bool)}, h, nil)
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := stranger.WriteToUDP(wgPacket(1), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}); err != nil {
		t.Fatal(err)
	}
	bufs, sizes, eps := [][]byte{make([]byte, 1500)}, []int{0}, []conn.Endpoint{nil}
	if n, err := fns[0](bufs, sizes, eps); n != 1 || err != nil || sizes[0] != 0 {
		t.Fatalf("receive: %d, %v, size %d; want the packet dropped", n, err, sizes[0])
	}
	select {
	case from := <-strays:
		if from != strangerAddr {
			t.Fatalf("stray from %v, want %v", from, strangerAddr)
		}
	default:
		t.Fatal("the stray's source was not reported")
	}
}

// A note that comes within handshakeResendGap of a copy (here, of the
// initiation itself, which went out along the path) is not lost: one more
// copy goes when the gap ends, however many notes came within it.
func TestHandshakeNoteWithinTheGap(t *testing.T) {
	peer := key(t)
	dst, addr := peerSocket(t)
	open := new(atomic.Bool)
	open.Store(true)
	b := newBind(gateRouter{peer: peer, addr: addr, open: open}, (&recorder{}).handlers(), nil)
	if _, _, err := b.Open(0); err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	init := handshakeMsg(device.MessageInitiationType, 9)
	if err := b.Send([][]byte{init}, b.Endpoint(peer)); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b.ResendHandshake(peer)
	}
	buf := make([]byte, 1500)
	for i, what := range []string{"the initiation", "its deferred copy"} {
		dst.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := dst.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("%s did not arrive: %v", what, err)
		}
		if !bytes.Equal(buf[:n], init) {
			t.Fatalf("packet %d is %x, want the initiation", i, buf[:n])
		}
	}
	dst.SetReadDeadline(time.Now().Add(10 * handshakeResendGap))
	if n, _, err := dst.ReadFromUDP(buf); err == nil {
		t.Errorf("another packet of %d bytes after the deferred copy", n)
	}
	// Counted once its send returned, which may be after it arrived.
	wait.For(t, 5*time.Second, "the deferred copy counted", func() bool { return b.Stats.HandshakesResent.Load() >= 1 })
	if n := b.Stats.HandshakesResent.Load(); n != 1 {
		t.Errorf("%d copies for 5 notes within the gap, want 1", n)
	}
}
