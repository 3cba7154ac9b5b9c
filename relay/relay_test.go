package relay

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/testenv"
	"github.com/meshnode/meshnode/internal/wire"
)

// mesh is a relay with bound UDP nodes a, b (peers of each other), c (peer
// of a, known, never bound) and d (bound, nobody's peer).
type mesh struct {
	*harness
	a, b, c, d *udpNode
}

func newMesh(t *testing.T, withClock bool, opts ...harnessOpt) *mesh {
	t.Helper()
	h := newHarness(t, withClock, opts...)
	m := &mesh{harness: h}
	m.a, m.b, m.c, m.d = h.newUDPNode(t, newKey(t)), h.newUDPNode(t, newKey(t)), h.newUDPNode(t, newKey(t)), h.newUDPNode(t, newKey(t))
	h.auth.add(m.a.pub, m.b.pub, m.c.pub, m.d.pub)
	h.auth.peer(m.a.pub, m.b.pub)
	h.auth.peer(m.a.pub, m.c.pub)
	for _, n := range []*udpNode{m.a, m.b, m.d} {
		n.handshake(h.coord.Public())
	}
	return m
}

// expectData fails unless n's next frame is data from src carrying payload.
func expectData(t *testing.T, n testNode, src crypto.PublicKey, payload []byte) {
	t.Helper()
	f := n.expect(wire.RelayData)
	if f.Key != src {
		t.Fatalf("data at %s names source %s, want %s (the relay must rewrite the key)", n.key().Short(), f.Key.Short(), src.Short())
	}
	if !bytes.Equal(f.Payload, payload) {
		t.Fatalf("data at %s: payload %x..., want %x...", n.key().Short(), head(f.Payload), head(payload))
	}
}

func head(b []byte) []byte { return b[:min(len(b), 8)] }

// assertNextFromA sends a marker a → b and checks it is b's next frame.
func assertNextFromA(t *testing.T, m *mesh, tag byte) {
	t.Helper()
	marker := wgPacket(64, tag)
	m.a.send(wire.AppendRelayData(nil, m.b.pub, marker))
	expectData(t, m.b, m.a.pub, marker)
}

func TestForwardUDP(t *testing.T) {
	m := newMesh(t, false)
	unknown := newKey(t).Public()
	tests := []struct {
		name    string
		from    func() *udpNode
		to      func() crypto.PublicKey
		payload []byte
		want    result
	}{
		{"wireguard forwarded with source key", func() *udpNode { return m.a }, func() crypto.PublicKey { return m.b.pub }, wgPacket(148, 1), resForwarded},
		{"reverse direction", func() *udpNode { return m.b }, func() crypto.PublicKey { return m.a.pub }, wgPacket(1400, 2), resForwarded},
		{"discovery forwarded", func() *udpNode { return m.a }, func() crypto.PublicKey { return m.b.pub }, discoPacket(3), resForwarded},
		{"not peers", func() *udpNode { return m.d }, func() crypto.PublicKey { return m.b.pub }, wgPacket(148, 4), resNotPeer},
		{"echo: a node's frame to itself comes back, peers or not", func() *udpNode { return m.d }, func() crypto.PublicKey { return m.d.pub }, wire.AppendRelayEcho(nil, [wire.RelayEchoTokenLen]byte{9}), resForwarded},
		{"peer offline", func() *udpNode { return m.a }, func() crypto.PublicKey { return m.c.pub }, wgPacket(148, 5), resOffline},
		{"unknown destination", func() *udpNode { return m.a }, func() crypto.PublicKey { return unknown }, wgPacket(148, 6), resOffline},
		{"unbound sender", func() *udpNode { return m.c }, func() crypto.PublicKey { return m.a.pub }, wgPacket(148, 7), resUnbound},
		{"payload not wireguard", func() *udpNode { return m.a }, func() crypto.PublicKey { return m.b.pub }, []byte("plaintext is never relayed, whatever its length"), resBadPayload},
		{"short wireguard", func() *udpNode { return m.a }, func() crypto.PublicKey { return m.b.pub }, wgPacket(16, 8), resBadPayload},
		{"empty payload", func() *udpNode { return m.a }, func() crypto.PublicKey { return m.b.pub }, nil, resBadPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, to := tt.from(), tt.to()
			before := m.count(tt.want)
			from.send(wire.AppendRelayData(nil, to, tt.payload))
			if tt.want == resForwarded {
				dst := m.a
				for _, n := range []*udpNode{m.b, m.d} {
					if to == n.pub {
						dst = n
					}
				}
				expectData(t, dst, from.pub, tt.payload)
				m.waitCount(t, resForwarded, before+1)
				return
			}
			m.waitCount(t, tt.want, before+1)
			// The relay handles frames in order: b's next frame is the
			// marker, not the dropped packet.
			assertNextFromA(t, m, 0xEE)
		})
	}
}

func TestRebindMovesForwarding(t *testing.T) {
	m := newMesh(t, false)
	moved := m.newUDPNode(t, m.a.priv) // a roams to a new address
	moved.handshake(m.coord.Public())

	p := wgPacket(200, 9)
	m.b.send(wire.AppendRelayData(nil, m.a.pub, p))
	expectData(t, moved, m.b.pub, p)

	before := m.count(resUnbound)
	m.a.send(wire.AppendRelayData(nil, m.b.pub, wgPacket(64, 10)))
	m.waitCount(t, resUnbound, before+1)
	if got := m.s.boundCount(); got != 3 {
		t.Fatalf("bound nodes = %d after a roam, want 3 (a, b, d)", got)
	}
}

func TestForget(t *testing.T) {
	m := newMesh(t, false)
	m.s.Forget(m.b.pub)
	tests := []struct {
		name string
		from *udpNode
		to   crypto.PublicKey
		want result
	}{
		{"to the removed node", m.a, m.b.pub, resOffline},
		{"from the removed node", m.b, m.a.pub, resUnbound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := m.count(tt.want)
			tt.from.send(wire.AppendRelayData(nil, tt.to, wgPacket(64, 1)))
			m.waitCount(t, tt.want, before+1)
		})
	}
	if got := m.s.boundCount(); got != 2 {
		t.Fatalf("bound nodes = %d after Forget, want 2", got)
	}
}

func TestBindingExpiry(t *testing.T) {
	m := newMesh(t, true)
	// Traffic keeps b bound; a stays silent.
	m.clock.advance(bindingIdle / 2)
	before := m.count(resForwarded)
	m.b.send(wire.AppendRelayData(nil, m.a.pub, wgPacket(64, 1)))
	m.waitCount(t, resForwarded, before+1)
	m.clock.advance(bindingIdle/2 + time.Second)

	tests := []struct {
		name string
		from *udpNode
		to   crypto.PublicKey
		want result
	}{
		{"to the idle node", m.b, m.a.pub, resOffline},
		{"from the idle node", m.a, m.b.pub, resUnbound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := m.count(tt.want)
			tt.from.send(wire.AppendRelayData(nil, tt.to, wgPacket(64, 2)))
			m.waitCount(t, tt.want, before+1)
		})
	}
	if got := m.s.boundCount(); got != 1 {
		t.Fatalf("bound nodes = %d, want 1 (only b had traffic)", got)
	}
	m.s.mu.Lock()
	m.s.sweepLocked(m.s.stamp())
	entries := len(m.s.byKey) + len(m.s.byEp)
	m.s.mu.Unlock()
	if entries != 2 {
		t.Fatalf("tables hold %d entries after a sweep, want 2 (b by key and by address)", entries)
	}
}

func TestRateLimit(t *testing.T) {
	// A frozen clock: buckets never refill, so the outcome is exact.
	m := newMesh(t, true, func(o *Options) { o.Rate, o.Burst = 1, maxFrame })
	m.auth.peer(m.d.pub, m.b.pub)
	// Large packets keep the count that fits in the bucket (and so in
	// b's socket buffer) small.
	const flood, size = 40, 8000
	frame := wire.AppendRelayData(nil, m.b.pub, wgPacket(size, 1))
	fit := maxFrame / len(frame)
	// In chunks, waiting for each to be handled, so the flood is not
	// lost in the relay's socket buffer instead of its limiter.
	const chunk = 4
	for sent := chunk; sent <= flood; sent += chunk {
		for range chunk {
			m.a.send(frame)
		}
		waitFor(t, "the relay to handle a's flood", func() bool {
			return m.count(resForwarded)+m.count(resRateLimited) >= float64(sent)
		})
	}

	// d's own bucket is untouched: its packet goes through after a's.
	p := wgPacket(size, 2)
	m.d.send(wire.AppendRelayData(nil, m.b.pub, p))
	for i := 0; ; i++ {
		f := m.b.expect(wire.RelayData)
		if f.Key == m.d.pub {
			if !bytes.Equal(f.Payload, p) {
				t.Fatalf("d's packet arrived altered")
			}
			break
		}
		if i+1 > fit {
			t.Fatalf("b got more than %d of a's packets; the limit let the flood through", fit)
		}
	}
	if got := m.count(resRateLimited); got != flood-float64(fit) {
		t.Fatalf("rate_limited = %v, want %d (flood %d, bucket fits %d)", got, flood-fit, flood, fit)
	}
}

func TestRateLimitSurvivesRebind(t *testing.T) {
	m := newMesh(t, true, func(o *Options) { o.Rate, o.Burst = 1, maxFrame })
	frame := wire.AppendRelayData(nil, m.b.pub, wgPacket(8000, 1))
	for range maxFrame/len(frame) + 1 {
		m.a.send(frame)
	}
	m.waitCount(t, resRateLimited, 1)
	m.a.handshake(m.coord.Public())
	m.a.send(frame)
	m.waitCount(t, resRateLimited, 2)
}

// TestForwardAcrossFamilies: a node bound over IPv6 and one bound over IPv4
// (the coordinator's stun_listen_v6 and stun_listen sockets, one relay)
// reach each other: each frame leaves by the socket its destination bound
// with.
func TestForwardAcrossFamilies(t *testing.T) {
	m := newMesh(t, false)
	conns, err := ListenUDP("udp6", "[::1]:0", 2)
	if err != nil {
		testenv.Unavailable(t, "no IPv6 loopback (::1): %v", err)
	}
	pc := conns[0]
	serve(t, m.s, conns)
	c, err := net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[::1]:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	v6 := &udpNode{t: t, priv: newKey(t), conn: c, relay: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	v6.pub = v6.priv.Public()
	m.auth.add(v6.pub)
	m.auth.peer(v6.pub, m.a.pub)
	v6.handshake(m.coord.Public())

	out, back := wgPacket(148, 0x61), wgPacket(1400, 0x16)
	v6.send(wire.AppendRelayData(nil, m.a.pub, out))
	expectData(t, m.a, v6.pub, out)
	m.a.send(wire.AppendRelayData(nil, v6.pub, back))
	expectData(t, v6, m.a.pub, back)
}
