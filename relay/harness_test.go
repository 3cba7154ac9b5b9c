package relay

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
)

// Test timing: generous deadlines for waits that normally end at once.
const (
	waitTimeout = 10 * time.Second
	pollEvery   = 20 * time.Millisecond
)

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.For(t, waitTimeout, what, cond)
}

// fakeAuth is an in-memory Authorizer; peering is symmetric.
type fakeAuth struct {
	mu    sync.Mutex
	known map[crypto.PublicKey]bool
	peers map[[2]crypto.PublicKey]bool
}

func newFakeAuth() *fakeAuth {
	return &fakeAuth{known: make(map[crypto.PublicKey]bool), peers: make(map[[2]crypto.PublicKey]bool)}
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
	defer a.mu.Unlock()
	return a.known[k]
}

func (a *fakeAuth) ArePeers(x, y crypto.PublicKey) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.peers[[2]crypto.PublicKey{x, y}]
}

// fakeClock is a settable clock for expiry and rate-limit tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// harness is a relay serving on a loopback UDP socket.
type harness struct {
	s     *Server
	coord crypto.PrivateKey
	auth  *fakeAuth
	addr  netip.AddrPort
	clock *fakeClock // nil: real time
}

type harnessOpt func(*Options)

// newHarness starts a relay on 127.0.0.1. With clock set, the relay runs on
// a fake clock.
func newHarness(t *testing.T, withClock bool, opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{coord: newKey(t), auth: newFakeAuth()}
	o := Options{Key: h.coord, Auth: h.auth}
	for _, f := range opts {
		f(&o)
	}
	h.s = New(o)
	if withClock {
		h.clock = &fakeClock{t: time.Unix(1_700_000_000, 0)}
		h.s.now, h.s.epoch = h.clock.Now, h.clock.Now()
	}
	// Two sockets sharing the port, as a relay on two cores has: every
	// test also checks that the binding table holds across them.
	conns, err := ListenUDP("udp4", "127.0.0.1:0", 2)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	h.addr = conns[0].LocalAddr().(*net.UDPAddr).AddrPort()
	serve(t, h.s, conns)
	return h
}

// serve runs s on conns until the test ends.
func serve(t *testing.T, s *Server, conns []net.PacketConn) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeUDP(ctx, conns, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeUDP: %v", err)
		}
		for _, pc := range conns {
			pc.Close()
		}
	})
}

// fakeConn is a socket that keeps what the relay sends through it; with
// fail set, the kernel refuses every datagram.
type fakeConn struct {
	fail bool
	sent [][]byte // copies
	to   []netip.AddrPort
}

func (c *fakeConn) readBatch([]message) (int, error) {
	return 0, errors.New("fakeConn is written only")
}

func (*fakeConn) readSlots() int           { return batchSize }
func (*fakeConn) oobLen() int              { return 0 }
func (*fakeConn) segmentSize(*message) int { return 0 }

func (c *fakeConn) writeBatch(ds []datagram, _ *packer, failed []int) []int {
	for i, d := range ds {
		if c.fail {
			failed = append(failed, i)
			continue
		}
		to, err := udpAddr(d.to)
		if err != nil {
			panic(err)
		}
		c.sent = append(c.sent, bytes.Clone(d.frame))
		c.to = append(c.to, to)
	}
	return failed
}

// fakeSock is a socket of its own port, over a fakeConn.
func fakeSock() (*udpSock, *fakeConn) {
	c := &fakeConn{}
	return &udpSock{port: &udpPort{}, conn: c}, c
}

// deliver hands s a copy of pkt from from, as one datagram read on sock.
func deliver(s *Server, sock *udpSock, pkt []byte, from netip.AddrPort) {
	r := &reader{s: s, sock: sock, out: newSink(sock, 1)}
	r.serve([]message{{Buffers: [][]byte{bytes.Clone(pkt)}, N: len(pkt), Addr: net.UDPAddrFromAddrPort(from)}})
}

// count reads one packets_total counter.
func (h *harness) count(r result) float64 {
	var m dto.Metric
	if err := h.s.metrics.packets[r].Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// waitCount waits until counter r reaches want.
func (h *harness) waitCount(t *testing.T, r result, want float64) {
	t.Helper()
	waitFor(t, r.String()+" counter", func() bool { return h.count(r) >= want })
}

func newKey(t testing.TB) crypto.PrivateKey {
	t.Helper()
	k, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatalf("key: %v", err)
	}
	return k
}

// testNode is a node talking to the relay over UDP or WebSocket.
type testNode interface {
	key() crypto.PublicKey
	send(frame []byte)
	expect(typ wire.RelayType) wire.RelayFrame
	handshake(coord crypto.PublicKey)
}

// udpNode is a node's socket talking to the relay.
type udpNode struct {
	t     *testing.T
	priv  crypto.PrivateKey
	pub   crypto.PublicKey
	conn  *net.UDPConn
	relay netip.AddrPort
}

// newUDPNode opens a socket for a node with key priv.
func (h *harness) newUDPNode(t *testing.T, priv crypto.PrivateKey) *udpNode {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpNode{t: t, priv: priv, pub: priv.Public(), conn: c, relay: h.addr}
}

func (n *udpNode) key() crypto.PublicKey { return n.pub }

func (n *udpNode) send(frame []byte) {
	n.t.Helper()
	if _, err := n.conn.WriteToUDPAddrPort(frame, n.relay); err != nil {
		n.t.Fatalf("send: %v", err)
	}
}

// recv returns the next frame from the relay; the frame owns its bytes.
func (n *udpNode) recv() wire.RelayFrame {
	n.t.Helper()
	buf := make([]byte, maxFrame)
	n.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		m, from, err := n.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			n.t.Fatalf("node %s: no frame from the relay: %v", n.pub.Short(), err)
		}
		if from != n.relay {
			continue
		}
		f, err := wire.ParseRelay(buf[:m])
		if err != nil {
			n.t.Fatalf("node %s: bad frame from the relay: %v", n.pub.Short(), err)
		}
		return f
	}
}

// expect returns the next frame, failing unless it has type typ.
func (n *udpNode) expect(typ wire.RelayType) wire.RelayFrame {
	n.t.Helper()
	f := n.recv()
	if f.Type != typ {
		n.t.Fatalf("node %s: got frame type %d, want %d", n.pub.Short(), f.Type, typ)
	}
	return f
}

// handshake binds the node: hello, challenge, auth, ok.
func (n *udpNode) handshake(coord crypto.PublicKey) {
	n.t.Helper()
	n.send(wire.RelayFrame{Type: wire.RelayHello, Key: n.pub}.Marshal())
	c := n.expect(wire.RelayChallenge)
	n.send(authFrame(n.t, n.priv, coord, c.Challenge))
	n.expect(wire.RelayOK)
}

// authFrame answers challenge with a real proof for priv.
func authFrame(t *testing.T, priv crypto.PrivateKey, coord crypto.PublicKey, challenge []byte) []byte {
	t.Helper()
	proof, err := crypto.Proof(priv, coord, wire.RelayProofLabel, challenge)
	if err != nil {
		t.Fatalf("proof: %v", err)
	}
	return wire.RelayFrame{Type: wire.RelayAuth, Key: priv.Public(), Challenge: challenge, Proof: proof}.Marshal()
}

// wgPacket looks like a WireGuard transport message (type 4) of n bytes,
// tagged so tests can tell packets apart.
func wgPacket(n int, tag byte) []byte {
	p := make([]byte, n)
	p[0] = 4
	for i := 4; i < n; i++ {
		p[i] = tag
	}
	return p
}

// discoPacket looks like a sealed discovery message.
func discoPacket(tag byte) []byte {
	p := append(wire.DiscoMagic[:], make([]byte, crypto.SealOverhead)...)
	p[len(p)-1] = tag
	return p
}
