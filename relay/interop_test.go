package relay

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/node/relayclient"
)

// udpTransport is relayclient's Transport on a plain socket.
type udpTransport struct{ c *net.UDPConn }

// routes makes routes for status only: the test sends frames itself.
var statusRoutes = bind.New(nil, nil)

func (u udpTransport) UDPRelay(addr netip.AddrPort) bind.Route { return statusRoutes.UDPRelay(addr) }

func (u udpTransport) WriteTo(pkt []byte, to netip.AddrPort) error {
	_, err := u.c.WriteToUDPAddrPort(pkt, to)
	return err
}

// clientNode is a node running the real relay client on its own socket:
// its read loop feeds control frames to the client, as bind does, and
// hands data frames to the test.
type clientNode struct {
	pub    crypto.PublicKey
	conn   *net.UDPConn
	client *relayclient.Client
	routes chan bind.Route
	data   chan wire.RelayFrame
}

func (h *harness) newClientNode(t *testing.T) *clientNode {
	t.Helper()
	priv := newKey(t)
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	n := &clientNode{
		pub:    priv.Public(),
		conn:   c,
		routes: make(chan bind.Route, 8),
		data:   make(chan wire.RelayFrame, 8),
	}
	log := slog.New(slog.DiscardHandler)
	n.client = relayclient.New(priv, udpTransport{c}, log, func(r bind.Route) { n.routes <- r })

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { n.client.Run(ctx) })
	wg.Go(func() { n.readLoop() })
	t.Cleanup(func() {
		cancel()
		c.Close()
		wg.Wait()
	})
	return n
}

// readLoop runs until the socket closes.
func (n *clientNode) readLoop() {
	buf := make([]byte, maxFrame)
	for {
		m, from, err := n.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		pkt := buf[:m]
		f, err := wire.ParseRelay(pkt)
		if err != nil {
			continue
		}
		if f.Type != wire.RelayData {
			n.client.HandleControl(pkt, from)
			continue
		}
		f.Payload = bytes.Clone(f.Payload)
		select {
		case n.data <- f:
		default:
		}
	}
}

// route waits for the client's relay route.
func (n *clientNode) route(t *testing.T) bind.Route {
	t.Helper()
	select {
	case r := <-n.routes:
		if r == nil {
			t.Fatalf("client %s: relay route withdrawn, want one", n.pub.Short())
		}
		return r
	case <-time.After(waitTimeout):
		t.Fatalf("client %s: no relay route after %v", n.pub.Short(), waitTimeout)
	}
	return nil
}

// recvData waits for a data frame at n.
func (n *clientNode) recvData(t *testing.T) wire.RelayFrame {
	t.Helper()
	select {
	case f := <-n.data:
		return f
	case <-time.After(waitTimeout):
		t.Fatalf("client %s: no relayed data after %v", n.pub.Short(), waitTimeout)
	}
	return wire.RelayFrame{}
}

// TestRelayClientInterop runs node/relayclient against the server: the
// client must get a relay route only when the coordinator knows it, and
// packets framed as bind.Send frames them must cross.
func TestRelayClientInterop(t *testing.T) {
	tests := []struct {
		name  string
		known bool
	}{
		{"registered node gets a relay route", true},
		{"unregistered node gets none", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, false)
			n := h.newClientNode(t)
			if tt.known {
				h.auth.add(n.pub)
			}
			n.client.SetServer(h.addr, h.coord.Public())
			if !tt.known {
				h.waitCount(t, resUnknownKey, 1)
				select {
				case r := <-n.routes:
					t.Fatalf("unregistered client got route %+v", r)
				default:
				}
				return
			}
			r := n.route(t)
			if i := r.Info(); i.Kind != bind.KindRelay || i.Addr != h.addr {
				t.Fatalf("route = %+v, want a UDP relay route via %s", i, h.addr)
			}
		})
	}
}

func TestRelayClientsExchangeData(t *testing.T) {
	h := newHarness(t, false)
	a, b := h.newClientNode(t), h.newClientNode(t)
	h.auth.add(a.pub, b.pub)
	h.auth.peer(a.pub, b.pub)
	a.client.SetServer(h.addr, h.coord.Public())
	b.client.SetServer(h.addr, h.coord.Public())
	ra, rb := a.route(t), b.route(t)

	tests := []struct {
		name     string
		from, to *clientNode
		route    bind.Route
		payload  []byte
	}{
		{"a to b", a, b, ra, wgPacket(148, 1)},
		{"b to a", b, a, rb, wgPacket(1420, 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// As bind.Send frames a packet on a relayed route.
			if err := (udpTransport{tt.from.conn}).WriteTo(wire.AppendRelayData(nil, tt.to.pub, tt.payload), tt.route.Info().Addr); err != nil {
				t.Fatal(err)
			}
			f := tt.to.recvData(t)
			if f.Key != tt.from.pub || !bytes.Equal(f.Payload, tt.payload) {
				t.Fatalf("got data from %s (%d bytes), want from %s (%d bytes)", f.Key.Short(), len(f.Payload), tt.from.pub.Short(), len(tt.payload))
			}
		})
	}
}

// TestStreamClientInterop runs node/relayclient's WebSocket client against
// the server, exchanging packets with a node on the UDP relay.
func TestStreamClientInterop(t *testing.T) {
	h := newHarness(t, false)
	base := h.serveHTTP(t)
	priv := newKey(t)
	pub := priv.Public()
	routes := make(chan bind.Route, 8)
	frames := make(chan []byte, 8)
	sc := &relayclient.StreamClient{
		URL:      base,
		Client:   &http.Client{},
		Priv:     priv,
		CoordKey: h.coord.Public(),
		Log:      slog.New(slog.DiscardHandler),
		Deliver: func(f []byte) {
			select {
			case frames <- f:
			default:
			}
		},
		OnChange: func(r bind.Route) {
			select {
			case routes <- r:
			default:
			}
		},
		Routes: statusRoutes.Stream,
		Want:   func() bool { return true },
	}
	peer := h.newUDPNode(t, newKey(t))
	h.auth.add(pub, peer.pub)
	h.auth.peer(pub, peer.pub)
	peer.handshake(h.coord.Public())

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { sc.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})

	select {
	case r := <-routes:
		if r == nil || r.Info().Kind != bind.KindRelay || r.Info().Via == "" {
			t.Fatalf("stream client route = %+v, want a relay route over its stream", r)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("stream client: no route after %v", waitTimeout)
	}

	out := wgPacket(1420, 1)
	if err := sc.SendFrames([][]byte{wire.AppendRelayData(nil, peer.pub, out)}); err != nil {
		t.Fatalf("SendFrames: %v", err)
	}
	expectData(t, peer, pub, out)

	in := wgPacket(148, 2)
	peer.send(wire.AppendRelayData(nil, pub, in))
	select {
	case f := <-frames:
		got, err := wire.ParseRelay(f)
		if err != nil || got.Type != wire.RelayData || got.Key != peer.pub || !bytes.Equal(got.Payload, in) {
			t.Fatalf("stream client got %x..., want data from %s", head(f), peer.pub.Short())
		}
	case <-time.After(waitTimeout):
		t.Fatalf("stream client: no relayed data after %v", waitTimeout)
	}
}
