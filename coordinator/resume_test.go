package coordinator_test

import (
	"context"
	"encoding/json"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// groupsPolicy lets tag a reach tag a, and tag b tag b.
const groupsPolicy = "rules:\n  - from: tag:a\n    to: tag:a\n  - from: tag:b\n    to: tag:b\n"

// resumeMesh is the mesh a node leaves and comes back to: a, its peers
// b, c, d and f (tag a), g (tag b, out of a's sight), each connected.
type resumeMesh struct {
	h       *harness
	tokA    string
	nodes   map[string]*node
	streams map[string]*stream
}

func newResumeMesh(t *testing.T, h *harness) *resumeMesh {
	ctx := context.Background()
	if _, err := h.srv.SetPolicy(ctx, groupsPolicy); err != nil {
		t.Fatal(err)
	}
	m := &resumeMesh{h: h, tokA: h.token(coordinator.TokenOptions{Reusable: true, Tags: []string{"a"}}), nodes: map[string]*node{}, streams: map[string]*stream{}}
	tokB := h.token(coordinator.TokenOptions{Reusable: true, Tags: []string{"b"}})
	for _, name := range []string{"a", "b", "c", "d", "f", "g"} {
		tok := m.tokA
		if name == "g" {
			tok = tokB
		}
		m.nodes[name] = newNode(t, h).join(tok, name)
		m.streams[name] = m.nodes[name].connect()
	}
	sa := m.streams["a"]
	eventually(t, func() bool { return onlinePeers(sa) == 4 }, "a sees its 4 peers online")
	return m
}

// onlinePeers counts the peers online in s's map.
func onlinePeers(s *stream) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.peers {
		if p.Online {
			n++
		}
	}
	return n
}

// leave closes a's stream and returns the map it held, and its version.
func (m *resumeMesh) leave(t *testing.T) (wire.MapVersion, map[crypto.PublicKey]wire.Node) {
	sa := m.streams["a"]
	sa.close()
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.welcome.Epoch == 0 {
		t.Fatal("the welcome names no map epoch")
	}
	return wire.MapVersion{Epoch: sa.welcome.Epoch, Version: sa.version}, maps.Clone(sa.peers)
}

// miss makes the changes a misses: b's new candidates, c offline, e
// joining, d removed, f leaving a's sight and g coming into it; and
// waits until b, which stays, has seen them all.
func (m *resumeMesh) miss(t *testing.T) {
	ctx := context.Background()
	sb := m.streams["b"]
	ep := wire.Endpoint{Addr: netip.MustParseAddrPort("198.18.0.7:41641"), Kind: wire.EndpointLAN}
	if err := sb.send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: []wire.Endpoint{ep}}); err != nil {
		t.Fatal(err)
	}
	m.streams["c"].close()
	e := newNode(t, m.h).join(m.tokA, "e")
	m.streams["e"] = e.connect()
	if _, err := m.h.srv.RemoveNode(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.h.srv.TagNode(ctx, "f", []string{"b"}, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.h.srv.TagNode(ctx, "g", []string{"a"}, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		sc, _ := sb.peer(m.nodes["c"].key())
		se, _ := sb.peer(e.key())
		_, hasD := sb.peer(m.nodes["d"].key())
		_, hasF := sb.peer(m.nodes["f"].key())
		_, hasG := sb.peer(m.nodes["g"].key())
		return !sc.Online && se.Online && !hasD && !hasF && hasG
	}, "b sees what a misses")
	eventually(t, func() bool {
		nodes, err := m.h.srv.Nodes(ctx)
		return err == nil && slices.ContainsFunc(nodes, func(n wire.Node) bool {
			return n.Name == "b" && slices.ContainsFunc(n.Endpoints, func(x wire.Endpoint) bool { return x.Addr == ep.Addr })
		})
	}, "b's candidates stored")
}

// sameMap fails unless two maps hold the same records.
func sameMap(t *testing.T, got, want map[crypto.PublicKey]wire.Node) {
	t.Helper()
	enc := func(m map[crypto.PublicKey]wire.Node) string {
		keys := slices.SortedFunc(maps.Keys(m), func(a, b crypto.PublicKey) int { return slices.Compare(a[:], b[:]) })
		var out []wire.Node
		for _, k := range keys {
			out = append(out, m[k])
		}
		b, err := json.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if g, w := enc(got), enc(want); g != w {
		t.Fatalf("map after reconnecting:\n%s\nwant, as a fresh node gets it:\n%s", g, w)
	}
}

// freshMap is the map a's stream gets when it holds none.
func (m *resumeMesh) freshMap(t *testing.T, h *harness) map[crypto.PublicKey]wire.Node {
	a := *m.nodes["a"]
	a.h, a.holds, a.held = h, nil, nil
	s := a.connect()
	defer s.close()
	if s.welcome.Resumed {
		t.Fatal("a node that holds no map got a resumed welcome")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.peers)
}

// A node whose stream comes back to the same coordinator says which map
// it holds, and gets only what it missed: its map then is the one a
// fresh node gets. When the coordinator can't tell what it missed (its
// own sight changed, the policy did, a map of another epoch or a version
// never given, or none), it gets the full map, also the same.
func TestReconnectResumes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name    string
		away    func(m *resumeMesh, t *testing.T)
		holds   func(v wire.MapVersion) *wire.MapVersion
		resumed bool
		// ups and rems are the resumed welcome's peers and removals.
		ups, rems int
	}{
		{"missed changes", (*resumeMesh).miss, same, true, 4, 2},
		{"nothing missed", func(*resumeMesh, *testing.T) {}, same, true, 0, 0},
		{"own tags changed", func(m *resumeMesh, t *testing.T) {
			if _, err := m.h.srv.TagNode(ctx, "a", []string{"b"}, nil); err != nil {
				t.Fatal(err)
			}
		}, same, false, 0, 0},
		{"policy changed", func(m *resumeMesh, t *testing.T) {
			if _, err := m.h.srv.SetPolicy(ctx, groupsPolicy+"  - from: tag:a\n    to: tag:b\n"); err != nil {
				t.Fatal(err)
			}
		}, same, false, 0, 0},
		{"another epoch", (*resumeMesh).miss, func(v wire.MapVersion) *wire.MapVersion {
			v.Epoch ^= 2
			return &v
		}, false, 0, 0},
		{"a future version", (*resumeMesh).miss, func(v wire.MapVersion) *wire.MapVersion {
			v.Version = ^uint64(0)
			return &v
		}, false, 0, 0},
		{"no map held (an older node)", (*resumeMesh).miss, func(wire.MapVersion) *wire.MapVersion { return nil }, false, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := start(t, testConfig(t))
			m := newResumeMesh(t, h)
			v, held := m.leave(t)
			tc.away(m, t)
			a := m.nodes["a"]
			a.holds, a.held = tc.holds(v), held
			s := a.connect()
			if s.welcome.Resumed != tc.resumed {
				t.Fatalf("welcome resumed: %v, want %v", s.welcome.Resumed, tc.resumed)
			}
			if tc.resumed && (len(s.welcome.Upsert) != tc.ups || len(s.welcome.Remove) != tc.rems || len(s.welcome.Peers) != 0) {
				t.Errorf("resumed welcome: %d peers, %d removals, %d in full; want %d, %d, 0", len(s.welcome.Upsert), len(s.welcome.Remove), len(s.welcome.Peers), tc.ups, tc.rems)
			}
			s.mu.Lock()
			got := maps.Clone(s.peers)
			s.mu.Unlock()
			s.close()
			sameMap(t, got, m.freshMap(t, h))
		})
	}
}

func same(v wire.MapVersion) *wire.MapVersion { return &v }

// Versions are each coordinator's own: a node that held one
// coordinator's map and reconnects to another on the same database gets
// the full map there, the one a fresh node gets.
func TestReconnectElsewhereGetsFullMap(t *testing.T) {
	t.Parallel()
	_, first, second := twoCoordinators(t)
	m := newResumeMesh(t, first)
	v, held := m.leave(t)
	m.miss(t)
	a := *m.nodes["a"]
	a.h, a.holds, a.held = second, &v, held
	eventually(t, func() bool {
		_, s, err := a.dial(nil)
		if err != nil || s == nil {
			return false
		}
		defer s.close()
		c, _ := s.peer(m.nodes["c"].key())
		_, hasG := s.peer(m.nodes["g"].key())
		// e came online at the first coordinator: its presence reaches
		// the second through the database, a moment later.
		eOnline := slices.ContainsFunc(s.welcome.Peers, func(p wire.Node) bool { return p.Name == "e" && p.Online })
		return len(s.welcome.Peers) == 4 && !c.Online && hasG && eOnline
	}, "the second coordinator has what a missed")
	s := a.connect()
	if s.welcome.Resumed {
		t.Fatal("a map of another coordinator was resumed")
	}
	s.mu.Lock()
	got := maps.Clone(s.peers)
	s.mu.Unlock()
	s.close()
	sameMap(t, got, m.freshMap(t, second))
}
