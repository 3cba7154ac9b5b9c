package coordinator_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
)

// Pre-authentication limits as the coordinator applies them (server.go).
const (
	preAuthPerSource = 256
	preAuthTotal     = 1024
)

// attacker holds idle, unauthenticated connections to the coordinator's
// HTTPS port from one loopback address, re-opening each one the
// coordinator closes, until stop.
type attacker struct {
	h    *harness
	from string // 127.0.0.x: Linux routes all of 127/8 to lo
	stop chan struct{}
	wg   sync.WaitGroup
}

// redialPause paces an attacker slot whose connection was closed, so the
// test's own CPU goes to the coordinator rather than to a dial loop.
const redialPause = 100 * time.Millisecond

func (a *attacker) dialer() *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(a.from)}}
}

// tcp holds n raw TCP connections that never start TLS.
func (a *attacker) tcp(n int) {
	for range n {
		a.wg.Go(func() {
			for a.running() {
				c, err := a.dialer().Dial("tcp", strings.TrimPrefix(a.h.url, "https://"))
				if err == nil {
					a.hold(c)
				}
				a.pause()
			}
		})
	}
}

// websockets holds n WebSockets upgraded at path that never authenticate.
func (a *attacker) websockets(n int, path string) {
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig: a.h.client.Transport.(*http.Transport).TLSClientConfig,
		DialContext:     a.dialer().DialContext,
	}}
	url := "wss" + strings.TrimPrefix(a.h.url, "https") + path
	for range n {
		a.wg.Go(func() {
			for a.running() {
				ctx, cancel := context.WithCancel(context.Background())
				c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
				if err == nil {
					go func() {
						<-a.stop
						cancel()
					}()
					// Read until the coordinator closes it; never answer.
					for err == nil {
						_, _, err = c.Read(ctx)
					}
					c.CloseNow()
				}
				cancel()
				a.pause()
			}
		})
	}
}

// hold keeps c open, reading nothing that comes, until the coordinator
// closes it or the attack stops.
func (a *attacker) hold(c net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Read(make([]byte, 1)) //nolint:errcheck // any end will do
	}()
	select {
	case <-done:
	case <-a.stop:
	}
	c.Close()
	<-done
}

func (a *attacker) running() bool {
	select {
	case <-a.stop:
		return false
	default:
		return true
	}
}

func (a *attacker) pause() {
	select {
	case <-a.stop:
	case <-time.After(redialPause):
	}
}

// relaySocket is a node's TCP relay WebSocket, read all along as a relay
// client does (reading answers the relay's pings).
type relaySocket struct {
	c      *websocket.Conn
	frames chan wire.RelayFrame
}

// relayBind binds n's key on the coordinator's TCP relay (a WebSocket) and
// returns the socket.
func relayBind(t *testing.T, n *node) *relaySocket {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	url := "wss" + strings.TrimPrefix(n.h.url, "https") + wire.PathRelay
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: n.h.client})
	if err != nil {
		t.Fatalf("TCP relay dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	c.SetReadLimit(wire.MaxRelayFrame)
	send := func(f wire.RelayFrame) {
		if err := c.Write(ctx, websocket.MessageBinary, f.Marshal()); err != nil {
			t.Fatalf("TCP relay write: %v", err)
		}
	}
	expect := func(typ wire.RelayType) wire.RelayFrame {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("TCP relay read: %v", err)
		}
		f, err := wire.ParseRelay(b)
		if err != nil || f.Type != typ {
			t.Fatalf("TCP relay: frame %+v (%v), want type %d", f, err, typ)
		}
		return f
	}
	send(wire.RelayFrame{Type: wire.RelayHello, Key: n.key()})
	ch := expect(wire.RelayChallenge).Challenge
	proof, err := crypto.Proof(n.priv, n.reg.CoordinatorKey, wire.RelayProofLabel, ch)
	if err != nil {
		t.Fatal(err)
	}
	send(wire.RelayFrame{Type: wire.RelayAuth, Key: n.key(), Challenge: ch, Proof: proof})
	expect(wire.RelayOK)
	rs := &relaySocket{c: c, frames: make(chan wire.RelayFrame, 16)}
	go func() {
		defer close(rs.frames)
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if f, err := wire.ParseRelay(b); err == nil {
				rs.frames <- f
			}
		}
	}()
	return rs
}

// Strangers open idle, unauthenticated connections to the HTTPS port:
// raw TCP that never starts TLS, and WebSockets on the stream and relay
// paths that never answer their challenge, from several sources, more
// than one source may hold and more than the coordinator holds in all.
// Meanwhile an established node keeps its stream, and a new node
// registers, gets its stream and binds the TCP relay, and relayed
// traffic flows.
func TestUnauthenticatedFloodLeavesNodesConnected(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	token := h.token(coordinator.TokenOptions{Reusable: true})
	established := newNode(t, h).join(token, "established")
	se := established.connect()
	relayE := relayBind(t, established)

	stop := make(chan struct{})
	var attackers []*attacker
	launch := func(from string, f func(a *attacker)) {
		a := &attacker{h: h, from: from, stop: stop}
		f(a)
		attackers = append(attackers, a)
	}
	defer func() {
		close(stop)
		for _, a := range attackers {
			a.wg.Wait()
		}
	}()
	preauth := func() float64 { return h.metric("meshnode_coordinator_preauth_connections", "", "") }
	closed := func(reason string) float64 {
		return h.metric("meshnode_coordinator_preauth_closed_total", "reason", reason)
	}
	// One source asks for more than its share...
	launch("127.0.0.2", func(a *attacker) { a.tcp(preAuthPerSource + 44) })
	wait.For(t, waitFor, "one source to reach its share", func() bool {
		return preauth() >= preAuthPerSource && closed("per_source") > 0
	})
	// ...and more sources ask for more than the coordinator holds in all.
	for _, from := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"} {
		launch(from, func(a *attacker) { a.tcp(200) })
	}
	launch("127.0.0.7", func(a *attacker) {
		a.websockets(40, wire.PathStream)
		a.websockets(40, wire.PathRelay)
	})
	took := wait.For(t, waitFor, "the flood to fill the coordinator", func() bool {
		return preauth() >= preAuthTotal-10 && closed("evicted") > 0
	})
	t.Logf("flood filled the coordinator in %v", took)

	// During the flood: a new node registers, connects and binds the relay.
	newcomer := newNode(t, h).join(token, "newcomer")
	sn := newcomer.connect()
	relayN := relayBind(t, newcomer)
	delivered(t, "newcomer online at the established node", func() bool { p, _ := se.peer(newcomer.key()); return p.Online })

	// Relayed traffic flows between them over TCP.
	relayed(t, relayN, relayE, newcomer, established, "relayed through a flood")
	if se.closed() || sn.closed() {
		t.Fatal("a node's stream was closed during the flood")
	}
	t.Logf("flood: %v unauthenticated connections held; closed %v over the per-source cap, %v evicted, %v timed out",
		preauth(), closed("per_source"), closed("evicted"), closed("timeout"))
	if p := preauth(); p > preAuthTotal {
		t.Fatalf("%v unauthenticated connections held, more than %d", p, preAuthTotal)
	}

	// Authenticated connections outlive the pre-authentication deadline:
	// an idle connection opened after them is closed first.
	idle, err := (&attacker{from: "127.0.0.8"}).dialer().Dial("tcp", strings.TrimPrefix(h.url, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.SetReadDeadline(time.Now().Add(waitFor)) //nolint:errcheck // the read reports it
	if _, err := idle.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("an idle unauthenticated connection was not closed (%v)", err)
	}
	relayed(t, relayE, relayN, established, newcomer, "relayed after the deadline")
	if se.closed() || sn.closed() {
		t.Fatal("a node's stream was closed at the pre-authentication deadline")
	}
}

// relayed sends a packet from one node's relay socket to another's and
// waits for it.
func relayed(t *testing.T, from, to *relaySocket, src, dst *node, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	// A WireGuard transport message (type 4) is at least 32 bytes.
	payload := append(append([]byte{4, 0, 0, 0}, text...), make([]byte, 32)...)
	if err := from.c.Write(ctx, websocket.MessageBinary, wire.AppendRelayData(nil, dst.key(), payload)); err != nil {
		t.Fatalf("%s: %v", text, err)
	}
	for {
		select {
		case f, ok := <-to.frames:
			if !ok {
				t.Fatalf("%s: not received, the relay socket closed", text)
			}
			if f.Type == wire.RelayData && f.Key == src.key() && string(f.Payload) == string(payload) {
				return
			}
		case <-ctx.Done():
			t.Fatalf("%s: not received within %v", text, waitFor)
		}
	}
}
