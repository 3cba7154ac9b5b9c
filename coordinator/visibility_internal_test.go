package coordinator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/policy"
)

// TestVisibilityMatchesPeers: the index of who sees whom agrees with
// peersUnder for every pair, with and without a policy, with a relay
// node and with nodes no rule names; each node's list is by name.
func TestVisibilityMatchesPeers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, policy string }{
		{"no policy", ""},
		{"groups", "rules:\n  - from: tag:a\n    to: tag:a\n  - from: tag:b\n    to: tag:b\n"},
		{"one way", "rules:\n  - from: tag:a\n    to: tag:b\n    ports: [22]\n    proto: tcp\n"},
		{"by name", "rules:\n  - from: n03\n    to: tag:b\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := map[crypto.PublicKey]*store.Node{}
			var pn []policy.Node
			for i := range 12 {
				k, err := crypto.NewPrivateKey()
				if err != nil {
					t.Fatal(err)
				}
				n := &store.Node{Key: k.Public(), Name: fmt.Sprintf("n%02d", 11-i), IPv4: netip.AddrFrom4([4]byte{100, 88, 0, byte(i + 1)})}
				switch i % 4 {
				case 0:
					n.Tags = []string{"a"}
				case 1:
					n.Tags = []string{"b"}
				case 2:
					n.Tags = []string{"a", "b"}
				}
				if i == 5 {
					n.Tags = append(n.Tags, RelayTag)
				}
				nodes[n.Key] = n
				pn = append(pn, policyNode(n))
			}
			var pol *policy.Policy
			if tc.policy != "" {
				var err error
				if pol, err = policy.Parse("test", []byte(tc.policy)); err != nil {
					t.Fatal(err)
				}
			}
			cfg := config.DefaultCoordinator()
			res, err := policy.Resolve(pol, 1, pn, policy.Network{V4: cfg.Network, V6: cfg.NetworkV6})
			if err != nil {
				t.Fatal(err)
			}
			v := buildVisibility(res, nodes)
			for _, a := range nodes {
				seen := v.seen[v.class[a.Key]]
				in := map[crypto.PublicKey]bool{}
				for i, o := range seen {
					in[o.Key] = true
					if i > 0 && seen[i-1].Name >= o.Name {
						t.Errorf("%s's list is not by name: %s before %s", a.Name, seen[i-1].Name, o.Name)
					}
				}
				for _, b := range nodes {
					if want := peersUnder(res, a, b); want != (in[b.Key] && a.Key != b.Key) {
						t.Errorf("%s sees %s: index says %v, peersUnder %v", a.Name, b.Name, in[b.Key], want)
					}
				}
			}
		})
	}
}

// hubView is what one connected node was told: its peers and its filter.
type hubView struct {
	sess   *session
	peers  map[crypto.PublicKey]bool
	filter *wire.Filter
}

// drain applies what waits in the view's session, as the node would.
func (v *hubView) drain() {
	s := v.sess
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.ups {
		v.peers[k] = true
	}
	for k := range s.rems {
		delete(v.peers, k)
	}
	if s.filter != nil {
		v.filter = s.filter
	}
	clear(s.ups)
	clear(s.rems)
	s.filter = nil
}

// TestTransitionsMatchFullResolve: over randomized, seeded meshes and
// policies, nodes join, leave, change tags (the relay designation
// among them) and names through the hub, each with the policy updated
// for that node alone (Server.accessAfter); after every step each
// connected node's map and filter, as the deltas left them, are what a
// full resolve of the mesh gives, and the visibility index kept up by
// the changes is the one built from scratch; and a map held at an
// earlier step and resumed (hub.resume), where the hub can, is the map
// the node has.
func TestTransitionsMatchFullResolve(t *testing.T) {
	cfg := config.DefaultCoordinator()
	net := policy.Network{V4: cfg.Network, V6: cfg.NetworkV6}
	tags := []string{"a", "b", "c", RelayTag}
	resumed := 0
	for seed := range uint64(60) {
		rng := rand.New(rand.NewPCG(seed, 14))
		text := ""
		if seed%6 != 0 { // some meshes have no policy
			var b strings.Builder
			b.WriteString("rules:\n")
			pick := func() string {
				switch k := rng.IntN(8); {
				case k == 0:
					return `"*"`
				case k < 6:
					return "tag:" + tags[rng.IntN(3)]
				}
				return fmt.Sprintf("n%d", rng.IntN(20))
			}
			for range 1 + rng.IntN(4) {
				fmt.Fprintf(&b, "  - from: [%s, %s]\n    to: [%s]\n", pick(), pick(), pick())
			}
			text = b.String()
		}
		var pol *policy.Policy
		if text != "" {
			var err error
			if pol, err = policy.Parse("test", []byte(text)); err != nil {
				t.Fatal(err)
			}
		}
		made := 0
		newNode := func() store.Node {
			k, err := crypto.NewPrivateKey()
			if err != nil {
				t.Fatal(err)
			}
			made++
			n := store.Node{Key: k.Public(), Name: fmt.Sprintf("n%d", made), IPv4: netip.AddrFrom4([4]byte{100, 88, byte(made >> 8), byte(made)})}
			for _, tag := range tags {
				if rng.IntN(4) == 0 {
					n.Tags = append(n.Tags, tag)
				}
			}
			return n
		}
		var initial []store.Node
		var pn []policy.Node
		for range rng.IntN(8) {
			n := newNode()
			initial = append(initial, n)
			pn = append(pn, policyNode(&n))
		}
		res, err := policy.Resolve(pol, 1, pn, net)
		if err != nil {
			t.Fatal(err)
		}
		h := newHub(initial, access{pol: pol, version: 1, res: res})
		views := map[crypto.PublicKey]*hubView{}
		connect := func(key crypto.PublicKey) {
			h.mu.Lock()
			defer h.mu.Unlock()
			n := h.nodes[key]
			s := newSession(key, netip.AddrPort{}, nil, nil, streamLimits{})
			h.sessions[key] = s
			v := &hubView{sess: s, peers: map[crypto.PublicKey]bool{}, filter: h.welcomeFilter(n)}
			for _, o := range h.seenBy(n) {
				if o.Key != key {
					v.peers[o.Key] = true
				}
			}
			views[key] = v
		}
		for _, n := range initial {
			if rng.IntN(4) != 0 {
				connect(n.Key)
			}
		}
		after := func(key crypto.PublicKey, now *store.Node) access {
			acc, was := h.accessFor(key)
			var p *policy.Node
			if now != nil {
				x := policyNode(now)
				p = &x
			}
			acc.res, _ = acc.res.Update(was, p)
			return acc
		}
		// held are the maps the connected nodes held at step 10, to
		// resume at the end.
		type heldMap struct {
			version uint64
			peers   map[crypto.PublicKey]bool
		}
		held := map[crypto.PublicKey]heldMap{}
		for step := range 30 {
			keys := h.keys()
			slices.SortFunc(keys, func(a, b crypto.PublicKey) int { return bytes.Compare(a[:], b[:]) })
			switch k := rng.IntN(5); {
			case k == 0 && len(keys) > 0:
				key := keys[rng.IntN(len(keys))]
				h.remove(key, after(key, nil))
				delete(views, key)
			case k == 1 && len(keys) > 0:
				key := keys[rng.IntN(len(keys))]
				n, _ := h.record(key)
				n.Tags = newNode().Tags
				h.setTags(n, after(key, &n))
			case k == 2 && len(keys) > 0:
				key := keys[rng.IntN(len(keys))]
				n, _ := h.record(key)
				made++
				n.Name = fmt.Sprintf("r%d", made)
				h.setName(key, n.Name, after(key, &n))
			default:
				n := newNode()
				h.upsert(n, after(n.Key, &n))
				if rng.IntN(4) != 0 {
					connect(n.Key)
				}
			}
			h.mu.Lock()
			var all []policy.Node
			for _, n := range h.nodes {
				all = append(all, policyNode(n))
			}
			full, err := policy.Resolve(pol, 1, all, net)
			if err != nil {
				t.Fatal(err)
			}
			fresh := buildVisibility(full, h.nodes)
			for key, v := range views {
				v.drain()
				a := h.nodes[key]
				for _, o := range h.nodes {
					if want := peersUnder(full, a, o); v.peers[o.Key] != want {
						t.Fatalf("seed %d step %d: %s has %s in its map: %v, want %v\n%s", seed, step, a.Name, o.Name, v.peers[o.Key], want, text)
					}
				}
				if !full.Open() && !policy.SameFilter(v.filter, full.Filter(a.Name)) {
					t.Fatalf("seed %d step %d: %s's filter %+v, want %+v\n%s", seed, step, a.Name, v.filter, full.Filter(a.Name), text)
				}
			}
			if step == 10 {
				for key, v := range views {
					held[key] = heldMap{h.version, maps.Clone(v.peers)}
				}
			}
			for _, a := range h.nodes {
				got := slices.Collect(func(yield func(string) bool) {
					for _, o := range h.seenBy(a) {
						yield(o.Name)
					}
				})
				want := slices.Collect(func(yield func(string) bool) {
					for _, o := range fresh.seen[fresh.class[a.Key]] {
						yield(o.Name)
					}
				})
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d step %d: %s's index lists %v, built anew %v\n%s", seed, step, a.Name, got, want, text)
				}
			}
			h.mu.Unlock()
		}
		h.mu.Lock()
		for key, m := range held {
			n, v := h.nodes[key], views[key]
			if n == nil || v == nil {
				continue
			}
			ups, rems, ok := h.resume(n, &wire.MapVersion{Epoch: h.changes.epoch, Version: m.version})
			if !ok {
				continue
			}
			resumed++
			for _, k := range rems {
				delete(m.peers, k)
			}
			for _, b := range ups {
				var w wire.Node
				if err := json.Unmarshal(b, &w); err != nil {
					t.Fatal(err)
				}
				m.peers[w.PublicKey] = true
			}
			if !maps.Equal(m.peers, v.peers) {
				t.Fatalf("seed %d: %s's map resumed from version %d: %v, want %v\n%s", seed, n.Name, m.version, m.peers, v.peers, text)
			}
		}
		h.mu.Unlock()
	}
	if resumed < 50 {
		t.Errorf("%d maps resumed; want the test to resume at least 50", resumed)
	}
}
