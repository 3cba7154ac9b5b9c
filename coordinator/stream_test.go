package coordinator_test

import (
	"context"
	"github.com/meshnode/meshnode/internal/wait"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/coordinator/stunserver"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// mesh starts a coordinator with n registered nodes.
func mesh(t testing.TB, names ...string) (*harness, []*node) {
	t.Helper()
	h := start(t, testConfig(t))
	token := h.token(coordinator.TokenOptions{Reusable: true})
	var nodes []*node
	for _, name := range names {
		nodes = append(nodes, newNode(t, h).join(token, name))
	}
	return h, nodes
}

func TestWelcome(t *testing.T) {
	t.Parallel()
	h, nodes := mesh(t, "a", "b", "c")
	s := nodes[0].connect()
	w := s.welcome
	if w.Self == nil || w.Self.Name != "a" || !w.Self.Online || len(w.Self.Addresses) != 2 {
		t.Fatalf("welcome self %+v", w.Self)
	}
	if len(w.Peers) != 2 || w.Peers[0].Name != "b" || w.Peers[1].Name != "c" {
		t.Fatalf("welcome peers %+v, want b and c", w.Peers)
	}
	if w.Version == 0 {
		t.Fatal("welcome without a version")
	}
	eventually(t, func() bool { return h.metric("meshnode_coordinator_nodes_online", "", "") == 1 }, "online gauge not 1")
	eventually(t, func() bool {
		return h.metric("meshnode_coordinator_stream_messages_total", "type", wire.MsgWelcome) == 1
	}, "welcome not counted")
	eventually(t, func() bool { return h.metric("meshnode_coordinator_stream_messages_total", "type", wire.MsgAuth) == 1 }, "auth not counted")
}

// delivered polls until cond holds on the stream's map and logs how long it
// took; the promise is under a second, the deadline generous for -race.
func delivered(t *testing.T, what string, cond func() bool) {
	t.Helper()
	t.Logf("%s delivered in %v", what, wait.For(t, waitFor, what+" delivered", cond))
}

func TestPeerMapDelivery(t *testing.T) {
	t.Parallel()
	h, nodes := mesh(t, "a", "b")
	a, b := nodes[0], nodes[1]
	sa := a.connect()

	// Join: a new node appears in a's map.
	c := newNode(t, h).join(h.token(coordinator.TokenOptions{}), "c")
	delivered(t, "join", func() bool { p, ok := sa.peer(c.key()); return ok && p.Name == "c" && !p.Online })

	// Presence: b comes online, then goes offline with a last-seen time.
	sb := b.connect()
	delivered(t, "online", func() bool { p, _ := sa.peer(b.key()); return p.Online })
	sb.close()
	delivered(t, "offline", func() bool { p, _ := sa.peer(b.key()); return !p.Online && !p.LastSeen.IsZero() })
	eventually(t, func() bool { return h.metric("meshnode_coordinator_nodes_online", "", "") == 1 }, "online gauge not back to 1")

	// Candidate change: c reports endpoints and NAT.
	sc := c.connect()
	eps := []wire.Endpoint{
		{Addr: netip.MustParseAddrPort("192.168.1.20:41820"), Kind: wire.EndpointLAN},
		{Addr: netip.MustParseAddrPort("198.18.0.9:61000"), Kind: wire.EndpointSTUN},
	}
	nat := &wire.NATInfo{Mapping: wire.MappingEndpointIndependent, PortAlloc: wire.PortAllocRandom}
	if err := sc.send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: eps, NAT: nat}); err != nil {
		t.Fatal(err)
	}
	delivered(t, "endpoints", func() bool {
		p, _ := sa.peer(c.key())
		got := withoutTCP(p.Endpoints)
		return len(got) == 2 && got[1] == eps[1] && hasTCP(p.Endpoints) && p.NAT != nil && *p.NAT == *nat
	})

	// Leave: removing c takes it out of a's map; c is told and closed.
	if _, err := h.srv.RemoveNode(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
	delivered(t, "removal", func() bool { _, ok := sa.peer(c.key()); return !ok })
	eventually(t, func() bool { return sc.closed() && sc.errorCode() == wire.ErrCodeNodeRemoved }, "removed node's stream not ended with node_removed")

	// Versions only grow.
	sa.mu.Lock()
	v := sa.version
	sa.mu.Unlock()
	if v <= sa.welcome.Version {
		t.Fatalf("delta version %d not above welcome's %d", v, sa.welcome.Version)
	}
}

func TestEndpointsPersist(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	h := start(t, cfg)
	n := newNode(t, h).join(h.token(coordinator.TokenOptions{}), "a")
	s := n.connect()
	eps := []wire.Endpoint{{Addr: netip.MustParseAddrPort("198.18.0.9:61000"), Kind: wire.EndpointSTUN}}
	if err := s.send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: eps}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		list, _ := h.srv.Nodes(context.Background())
		return len(list) == 1 && len(withoutTCP(list[0].Endpoints)) == 1
	}, "endpoints not stored")
	s.close()
	h.stop()
	h2 := start(t, cfg)
	list, err := h2.srv.Nodes(context.Background())
	if err != nil || len(list) != 1 || len(list[0].Endpoints) != 1 || list[0].Endpoints[0] != eps[0] || list[0].LastSeen.IsZero() {
		t.Fatalf("after restart: %+v, %v", list, err)
	}
}

func TestStreamResume(t *testing.T) {
	t.Parallel()
	h, nodes := mesh(t, "a", "b")
	a := nodes[0]
	s1 := a.connect()
	s1.close()
	// While a is away, a node joins.
	c := newNode(t, h).join(h.token(coordinator.TokenOptions{}), "c")
	s2 := a.connect()
	if len(s2.welcome.Peers) != 2 || s2.welcome.Peers[1].PublicKey != c.key() {
		t.Fatalf("resumed welcome peers %+v, want b and c", s2.welcome.Peers)
	}
	if s2.welcome.Version <= s1.welcome.Version {
		t.Fatalf("resumed welcome version %d not above %d", s2.welcome.Version, s1.welcome.Version)
	}
	if s2.welcome.Self.Addresses[0] != s1.welcome.Self.Addresses[0] {
		t.Fatal("addresses changed on resume")
	}
}

func TestNewerStreamReplacesOlder(t *testing.T) {
	t.Parallel()
	_, nodes := mesh(t, "a", "b")
	a, b := nodes[0], nodes[1]
	sb := b.connect()
	old := a.connect()
	newer := a.connect()
	eventually(t, old.closed, "older stream not closed")
	if newer.closed() {
		t.Fatal("newer stream closed")
	}
	// a is still online for its peers.
	delivered(t, "presence after replace", func() bool { p, _ := sb.peer(a.key()); return p.Online })
}

func TestStreamAuthRejects(t *testing.T) {
	t.Parallel()
	h, nodes := mesh(t, "a", "removed")
	if _, err := h.srv.RemoveNode(context.Background(), "removed"); err != nil {
		t.Fatal(err)
	}
	stranger := newNode(t, h)
	stranger.reg.CoordinatorKey = nodes[0].reg.CoordinatorKey
	other, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		node  *node
		proof func(challenge []byte) []byte
		code  string
	}{
		{"wrong proof", nodes[0], func(c []byte) []byte {
			p, _ := crypto.Proof(other, nodes[0].reg.CoordinatorKey, wire.ProofLabel, c)
			return p
		}, wire.ErrCodeUnauthorized},
		{"proof for another label", nodes[0], func(c []byte) []byte {
			p, _ := crypto.Proof(nodes[0].priv, nodes[0].reg.CoordinatorKey, "relay", c)
			return p
		}, wire.ErrCodeUnauthorized},
		{"empty proof", nodes[0], func([]byte) []byte { return nil }, wire.ErrCodeUnauthorized},
		{"removed node", nodes[1], nil, wire.ErrCodeNodeRemoved},
		{"never registered", stranger, nil, wire.ErrCodeUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, s, err := tt.node.dial(tt.proof)
			if err != nil {
				t.Fatal(err)
			}
			if s != nil {
				s.close()
				t.Fatal("got a welcome")
			}
			if first.Type != wire.MsgError || first.Code != tt.code || first.Error == "" {
				t.Fatalf("got %+v, want error %s with a reason", first, tt.code)
			}
		})
	}
}

func TestRendezvous(t *testing.T) {
	t.Parallel()
	h, nodes := mesh(t, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	sa, sb := a.connect(), b.connect()
	epA := []wire.Endpoint{{Addr: netip.MustParseAddrPort("198.18.1.1:1111"), Kind: wire.EndpointSTUN}}
	epB := []wire.Endpoint{{Addr: netip.MustParseAddrPort("198.18.2.2:2222"), Kind: wire.EndpointSTUN}}
	natB := &wire.NATInfo{Mapping: wire.MappingAddressPortDependent, PortAlloc: wire.PortAllocSequential, PortStep: 1}
	if err := sa.send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: epA}); err != nil {
		t.Fatal(err)
	}
	if err := sb.send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: epB, NAT: natB}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		pa, _ := sa.peer(b.key())
		pb, _ := sb.peer(a.key())
		return len(withoutTCP(pa.Endpoints)) == 1 && len(withoutTCP(pb.Endpoints)) == 1
	}, "endpoints not exchanged")

	// c is offline: no punch.
	ck := c.key()
	if err := sa.send(wire.StreamMsg{Type: wire.MsgRendezvous, Peer: &ck}); err != nil {
		t.Fatal(err)
	}
	bk := b.key()
	if err := sa.send(wire.StreamMsg{Type: wire.MsgRendezvous, Peer: &bk}); err != nil {
		t.Fatal(err)
	}
	punches := func(s *stream) []wire.StreamMsg {
		s.mu.Lock()
		defer s.mu.Unlock()
		return append([]wire.StreamMsg(nil), s.punches...)
	}
	eventually(t, func() bool { return len(punches(sa)) > 0 && len(punches(sb)) > 0 }, "punch not sent to both")
	pa, pb := punches(sa), punches(sb)
	if len(pa) != 1 || len(pb) != 1 {
		t.Fatalf("punches: a got %d, b got %d; want one each (none for offline c)", len(pa), len(pb))
	}
	pa[0].Endpoints, pb[0].Endpoints = withoutTCP(pa[0].Endpoints), withoutTCP(pb[0].Endpoints)
	if *pa[0].Peer != b.key() || len(pa[0].Endpoints) != 1 || pa[0].Endpoints[0] != epB[0] || pa[0].NAT == nil || *pa[0].NAT != *natB {
		t.Fatalf("a's punch %+v", pa[0])
	}
	if *pb[0].Peer != a.key() || len(pb[0].Endpoints) != 1 || pb[0].Endpoints[0] != epA[0] {
		t.Fatalf("b's punch %+v", pb[0])
	}
	if got := h.metric("meshnode_coordinator_rendezvous_total", "", ""); got != 1 {
		t.Fatalf("rendezvous counter %v, want 1", got)
	}
}

func TestBadStreamMessages(t *testing.T) {
	t.Parallel()
	_, nodes := mesh(t, "a")
	withNAT := func(nat wire.NATInfo) wire.StreamMsg {
		return wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: []wire.Endpoint{{Addr: netip.MustParseAddrPort("10.0.0.1:1"), Kind: wire.EndpointLAN}}, NAT: &nat}
	}
	withSoftware := func(sw wire.Software) wire.StreamMsg {
		m := withNAT(wire.NATInfo{Mapping: wire.MappingNone, PortAlloc: wire.PortAllocRandom})
		m.Software = &sw
		return m
	}
	tests := []struct {
		name string
		msg  wire.StreamMsg
		want string // in the error's text; "": not checked
	}{
		{"unspecified endpoint", wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: []wire.Endpoint{{Addr: netip.MustParseAddrPort("0.0.0.0:1"), Kind: "lan"}}}, ""},
		{"endpoint without kind", wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: []wire.Endpoint{{Addr: netip.MustParseAddrPort("10.0.0.1:1")}}}, ""},
		{"rendezvous without peer", wire.StreamMsg{Type: wire.MsgRendezvous}, ""},
		{"unknown NAT mapping", withNAT(wire.NATInfo{Mapping: "symmetric", PortAlloc: wire.PortAllocRandom}), `nat mapping "symmetric"`},
		{"empty NAT mapping", withNAT(wire.NATInfo{PortAlloc: wire.PortAllocRandom}), `nat mapping ""`},
		{"unknown port allocation", withNAT(wire.NATInfo{Mapping: wire.MappingAddressPortDependent, PortAlloc: "incremental"}), `nat port allocation "incremental"`},
		{"unknown NAT filtering", withNAT(wire.NATInfo{Mapping: wire.MappingEndpointIndependent, PortAlloc: wire.PortAllocRandom, Filtering: "porous"}), `nat filtering "porous"`},
		{"overlong NAT value", withNAT(wire.NATInfo{Mapping: wire.NATMapping(strings.Repeat("x", 1000)), PortAlloc: wire.PortAllocRandom}), `nat mapping "xxx`},
		{"overlong version", withSoftware(wire.Software{Version: strings.Repeat("v", 1000), OS: "linux/amd64"}), "software version is 1000 bytes; at most 64"},
		{"control characters in OS", withSoftware(wire.Software{Version: "v1.0.0", OS: "linux\r\n\x1b[31m"}), "software os"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := nodes[0].connect()
			if err := s.send(tt.msg); err != nil {
				t.Fatal(err)
			}
			eventually(t, func() bool { return s.closed() && s.errorCode() == wire.ErrCodeBadRequest }, "stream not ended with bad_request")
			if got := s.errorText(); !strings.Contains(got, tt.want) {
				t.Errorf("error %q, want it to contain %q", got, tt.want)
			}
		})
	}
	t.Run("unknown type ignored", func(t *testing.T) {
		s := nodes[0].connect()
		if err := s.send(wire.StreamMsg{Type: "from-the-future"}); err != nil {
			t.Fatal(err)
		}
		// The stream still works: the next message is handled.
		ep := []wire.Endpoint{{Addr: netip.MustParseAddrPort("10.0.0.1:1"), Kind: "lan"}}
		if err := s.send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: ep}); err != nil {
			t.Fatal(err)
		}
		eventually(t, func() bool {
			list, _ := nodes[0].h.srv.Nodes(context.Background())
			return len(list) == 1 && len(list[0].Endpoints) == 1
		}, "endpoints after an unknown message not stored")
		if s.closed() {
			t.Fatal("stream closed by an unknown message type")
		}
	})
}

func TestWelcomeAdvertisesSTUN(t *testing.T) {
	t.Parallel()
	h, nodes := mesh(t, "a")
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.srv.ServeSTUN(ctx, stunserver.Conns{Primary: conn}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeSTUN: %v", err)
		}
	}()
	eventually(t, func() bool {
		first, s, err := nodes[0].dial(nil)
		if err != nil || s == nil {
			t.Fatalf("stream: %+v %v", first, err)
		}
		s.close()
		return len(first.STUN) == 1 && first.STUN[0] == conn.LocalAddr().String()
	}, "welcome does not list the STUN server %v", conn.LocalAddr())
}

// BenchmarkEndpointDelivery measures how long a node's new candidates take
// to reach a peer: the store write, the coalescing delay and the push.
func BenchmarkEndpointDelivery(b *testing.B) {
	h := start(b, testConfig(b), coordinator.UnlimitEndpointReports)
	token := h.token(coordinator.TokenOptions{Reusable: true})
	nodes := []*node{newNode(b, h).join(token, "a"), newNode(b, h).join(token, "b")}
	sa, sb := nodes[0].connect(), nodes[1].connect()
	key := nodes[0].key()
	i := 0
	for b.Loop() {
		i++
		port := uint16(i%60000 + 1)
		ep := []wire.Endpoint{{Addr: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), port), Kind: wire.EndpointSTUN}}
		if err := sa.send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: ep}); err != nil {
			b.Fatal(err)
		}
		for {
			if p, _ := sb.peer(key); len(withoutTCP(p.Endpoints)) == 1 && withoutTCP(p.Endpoints)[0].Addr.Port() == port {
				break
			}
			select {
			case <-sb.updates:
			case <-time.After(waitFor):
				b.Fatalf("endpoints not delivered within %v", waitFor)
			}
		}
	}
}

func TestStreamAuthMalformed(t *testing.T) {
	t.Parallel()
	h, _ := mesh(t, "a")
	url := "wss" + strings.TrimPrefix(h.url, "https") + wire.PathStream
	c, _, err := websocket.Dial(context.Background(), url, &websocket.DialOptions{HTTPClient: h.client})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	var ch wire.StreamMsg
	if err := readJSON(context.Background(), c, &ch); err != nil || ch.Type != wire.MsgChallenge {
		t.Fatalf("challenge %+v, %v", ch, err)
	}
	if err := c.Write(context.Background(), websocket.MessageText, []byte(`{"type": "auth", "public_key": 7`)); err != nil {
		t.Fatal(err)
	}
	var m wire.StreamMsg
	if err := readJSON(context.Background(), c, &m); err != nil || m.Type != wire.MsgError || m.Code != wire.ErrCodeBadRequest || !strings.Contains(m.Error, "malformed") {
		t.Fatalf("got %+v, %v; want a bad_request error naming the malformed message", m, err)
	}
}

// withoutTCP drops the tcp candidate the coordinator adds from the stream's
// source address.
func withoutTCP(eps []wire.Endpoint) []wire.Endpoint {
	var out []wire.Endpoint
	for _, e := range eps {
		if e.Kind != wire.EndpointTCP {
			out = append(out, e)
		}
	}
	return out
}

// hasTCP reports whether the coordinator offered the node's observed TCP
// source (loopback here) as a hole-punching candidate.
func hasTCP(eps []wire.Endpoint) bool {
	for _, e := range eps {
		if e.Kind == wire.EndpointTCP && e.Addr.Addr().IsLoopback() {
			return true
		}
	}
	return false
}
