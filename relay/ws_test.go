package relay

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// wsNode is a node relaying over a WebSocket.
type wsNode struct {
	t    *testing.T
	priv crypto.PrivateKey
	pub  crypto.PublicKey
	c    *websocket.Conn
}

// serveHTTP serves the harness's relay over HTTP on loopback at
// wire.PathRelay and returns the base URL.
func (h *harness) serveHTTP(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(wire.PathRelay, h.s)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// serveWS serves the relay and returns its WebSocket URL.
func (h *harness) serveWS(t *testing.T) string {
	t.Helper()
	return "ws" + strings.TrimPrefix(h.serveHTTP(t), "http") + wire.PathRelay
}

func dialWS(t *testing.T, url string, priv crypto.PrivateKey) *wsNode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetReadLimit(maxFrame)
	t.Cleanup(func() { c.CloseNow() })
	return &wsNode{t: t, priv: priv, pub: priv.Public(), c: c}
}

func (n *wsNode) key() crypto.PublicKey { return n.pub }

func (n *wsNode) send(frame []byte) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := n.c.Write(ctx, websocket.MessageBinary, frame); err != nil {
		n.t.Fatalf("websocket send: %v", err)
	}
}

func (n *wsNode) expect(typ wire.RelayType) wire.RelayFrame {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	mt, msg, err := n.c.Read(ctx)
	if err != nil {
		n.t.Fatalf("node %s: no frame from the relay: %v", n.pub.Short(), err)
	}
	if mt != websocket.MessageBinary {
		n.t.Fatalf("node %s: %v message from the relay, want binary", n.pub.Short(), mt)
	}
	f, err := wire.ParseRelay(msg)
	if err != nil {
		n.t.Fatalf("node %s: bad frame from the relay: %v", n.pub.Short(), err)
	}
	if f.Type != typ {
		n.t.Fatalf("node %s: got frame type %d, want %d", n.pub.Short(), f.Type, typ)
	}
	return f
}

func (n *wsNode) handshake(coord crypto.PublicKey) {
	n.t.Helper()
	n.send(wire.RelayFrame{Type: wire.RelayHello, Key: n.pub}.Marshal())
	c := n.expect(wire.RelayChallenge)
	n.send(authFrame(n.t, n.priv, coord, c.Challenge))
	n.expect(wire.RelayOK)
}

func TestWebSocketHandshake(t *testing.T) {
	tests := []struct {
		name    string
		unknown bool
		prover  func(n *wsNode) crypto.PrivateKey
		want    result
	}{
		{"real proof binds", false, func(n *wsNode) crypto.PrivateKey { return n.priv }, resBound},
		{"proof by another key", false, func(*wsNode) crypto.PrivateKey { return newKey(t) }, resBadProof},
		{"unknown key", true, func(n *wsNode) crypto.PrivateKey { return n.priv }, resUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, false)
			n := dialWS(t, h.serveWS(t), newKey(t))
			if !tt.unknown {
				h.auth.add(n.pub)
			}
			n.send(wire.RelayFrame{Type: wire.RelayHello, Key: n.pub}.Marshal())
			c := n.expect(wire.RelayChallenge).Challenge
			proof, err := crypto.Proof(tt.prover(n), h.coord.Public(), wire.RelayProofLabel, c)
			if err != nil {
				t.Fatal(err)
			}
			n.send(wire.RelayFrame{Type: wire.RelayAuth, Key: n.pub, Challenge: c, Proof: proof}.Marshal())
			h.waitCount(t, tt.want, 1)
			want := 0
			if tt.want == resBound {
				n.expect(wire.RelayOK)
				want = 1
			} else {
				n.send(wire.RelayFrame{Type: wire.RelayHello, Key: n.pub}.Marshal())
				n.expect(wire.RelayChallenge)
			}
			if got := h.s.boundCount(); got != want {
				t.Fatalf("bound nodes = %d, want %d", got, want)
			}
		})
	}
}

// TestUDPWebSocketInterop: nodes bound over UDP and over WebSocket reach
// each other in every combination.
func TestUDPWebSocketInterop(t *testing.T) {
	tests := []struct {
		name           string
		fromWS, destWS bool
	}{
		{"udp to websocket", false, true},
		{"websocket to udp", true, false},
		{"websocket to websocket", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, false)
			url := h.serveWS(t)
			mk := func(ws bool) testNode {
				if ws {
					return dialWS(t, url, newKey(t))
				}
				return h.newUDPNode(t, newKey(t))
			}
			src, dst := mk(tt.fromWS), mk(tt.destWS)
			h.auth.add(src.key(), dst.key())
			h.auth.peer(src.key(), dst.key())
			src.handshake(h.coord.Public())
			dst.handshake(h.coord.Public())

			for i, p := range [][]byte{wgPacket(148, 1), discoPacket(2), wgPacket(1400, 3)} {
				src.send(wire.AppendRelayData(nil, dst.key(), p))
				expectData(t, dst, src.key(), p)
				reply := wgPacket(92, byte(10+i))
				dst.send(wire.AppendRelayData(nil, src.key(), reply))
				expectData(t, src, dst.key(), reply)
			}
		})
	}
}

func TestWebSocketEndUnbinds(t *testing.T) {
	tests := []struct {
		name string
		end  func(h *harness, n *wsNode)
	}{
		{"client closes", func(_ *harness, n *wsNode) { n.c.CloseNow() }},
		{"node forgotten", func(h *harness, n *wsNode) { h.s.Forget(n.pub) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, false)
			n := dialWS(t, h.serveWS(t), newKey(t))
			peer := h.newUDPNode(t, newKey(t))
			h.auth.add(n.pub, peer.pub)
			h.auth.peer(n.pub, peer.pub)
			n.handshake(h.coord.Public())
			peer.handshake(h.coord.Public())

			tt.end(h, n)
			waitFor(t, "the websocket's binding to go", func() bool { return h.s.boundCount() == 1 })
			waitFor(t, "the websocket to close", func() bool { return h.s.wsConns.Load() == 0 })
			before := h.count(resOffline)
			peer.send(wire.AppendRelayData(nil, n.pub, wgPacket(64, 1)))
			h.waitCount(t, resOffline, before+1)
		})
	}
}

func TestWebSocketBadMessages(t *testing.T) {
	h := newHarness(t, false)
	url := h.serveWS(t)

	n := dialWS(t, url, newKey(t))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := n.c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	h.waitCount(t, resGarbage, 1)

	// A frame over the read limit ends the connection.
	if err := n.c.Write(ctx, websocket.MessageBinary, make([]byte, maxFrame+1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the oversized sender to be cut off", func() bool { return h.s.wsConns.Load() == 0 })

	// A plain request is refused, not upgraded.
	resp, err := http.Get(strings.Replace(url, "ws://", "http://", 1))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Fatalf("plain GET: status %d, want a 4xx", resp.StatusCode)
	}
}

// TestWebSocketQueueBounded: a reader that never drains its socket costs
// at most wsQueueBytes; further frames are dropped, never waited for.
func TestWebSocketQueueBounded(t *testing.T) {
	tests := []struct {
		name      string
		frameSize int
		wantFit   int
	}{
		{"small frames hit the frame cap", 64, wsQueueFrames},
		{"large frames hit the byte cap", 1500, wsQueueBytes / 1500},
		{"a frame over the byte cap never fits", wsQueueBytes + 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &wsConn{queue: make(chan []byte, wsQueueFrames)}
			fit := 0
			for range wsQueueFrames + 10 {
				if w.enqueue(make([]byte, tt.frameSize)) == resForwarded {
					fit++
				}
			}
			if fit != tt.wantFit {
				t.Fatalf("%d frames queued, want %d", fit, tt.wantFit)
			}
			if q := w.queued.Load(); q > wsQueueBytes {
				t.Fatalf("%d bytes queued, over the %d cap", q, wsQueueBytes)
			}
		})
	}
}

// TestWebSocketBindingOutlivesIdle: a stream client proves its key once per
// connection, so its binding must not expire like a silent UDP one.
func TestWebSocketBindingOutlivesIdle(t *testing.T) {
	h := newHarness(t, true)
	n := dialWS(t, h.serveWS(t), newKey(t))
	peer := h.newUDPNode(t, newKey(t))
	h.auth.add(n.pub, peer.pub)
	h.auth.peer(n.pub, peer.pub)
	n.handshake(h.coord.Public())
	peer.handshake(h.coord.Public())

	h.clock.advance(2 * bindingIdle)
	peer.handshake(h.coord.Public()) // the UDP node refreshes, as relayclient does
	p := wgPacket(148, 1)
	peer.send(wire.AppendRelayData(nil, n.pub, p))
	expectData(t, n, peer.pub, p)
	if got := h.s.boundCount(); got != 2 {
		t.Fatalf("bound nodes = %d, want 2", got)
	}
}
