package coordinator_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// announce reports endpoints with a relay address; seeing the endpoint at
// a peer proves the coordinator handled the whole message.
func announce(t *testing.T, s *stream, port uint16, relay string) wire.Endpoint {
	t.Helper()
	ep := wire.Endpoint{Addr: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.9"), port), Kind: wire.EndpointSTUN}
	if err := s.send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: []wire.Endpoint{ep}, Relay: relay}); err != nil {
		t.Fatal(err)
	}
	return ep
}

// handled waits until observer sees ep among n's endpoints.
func handled(t *testing.T, observer *stream, n *node, ep wire.Endpoint) wire.Node {
	t.Helper()
	var p wire.Node
	eventually(t, func() bool {
		p, _ = observer.peer(n.key())
		got := withoutTCP(p.Endpoints)
		return len(got) == 1 && got[0] == ep
	}, "endpoints %v not delivered", ep)
	return p
}

// A member that announces relay_public is not offered to anyone: only
// nodes the administrator designated (tag relay) are, and only at a
// literal IP:port. Untagging withdraws a relay from every peer's map, and
// tells the node itself, which must stop serving.
func TestOnlyDesignatedRelaysAreOffered(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	plain := h.token(coordinator.TokenOptions{Reusable: true})
	rogue := newNode(t, h).join(plain, "rogue")
	designated := newNode(t, h).join(h.token(coordinator.TokenOptions{Tags: []string{coordinator.RelayTag}}), "gateway")
	alice := newNode(t, h).join(plain, "alice")
	bob := newNode(t, h).join(plain, "bob")
	sa, sb := alice.connect(), bob.connect()
	sr, sd := rogue.connect(), designated.connect()

	// The rogue's relay at the lowest key or not, it is never offered.
	ep := announce(t, sr, 1001, "198.18.0.66:3479")
	if p := handled(t, sa, rogue, ep); p.Relay != "" {
		t.Fatalf("rogue offered as a relay: %q", p.Relay)
	}
	ep = announce(t, sd, 2001, "198.18.0.77:3479")
	if p := handled(t, sa, designated, ep); p.Relay != "198.18.0.77:3479" {
		t.Fatalf("designated relay offered as %q, want 198.18.0.77:3479", p.Relay)
	}
	handled(t, sb, designated, ep)
	// A node that connects now gets the same map in its welcome.
	carol := newNode(t, h).join(plain, "carol")
	sc := carol.connect()
	for _, p := range sc.welcome.Peers {
		if want := map[string]string{"gateway": "198.18.0.77:3479"}[p.Name]; p.Relay != want {
			t.Errorf("welcome offers %s's relay %q, want %q", p.Name, p.Relay, want)
		}
	}

	// A host name, or an address no one can send to, is not offered either.
	for i, bad := range []string{"relay.example.com:3479", "0.0.0.0:3479", "198.18.0.77:0", "224.0.0.1:3479", "[fe80::1%eth0]:3479"} {
		ep = announce(t, sd, uint16(2100+i), bad)
		if p := handled(t, sa, designated, ep); p.Relay != "" {
			t.Fatalf("relay %q offered as %q", bad, p.Relay)
		}
	}
	ep = announce(t, sd, 2200, "198.18.0.77:3479")
	handled(t, sb, designated, ep)

	// Untagged: withdrawn from every peer's map.
	if _, err := h.srv.TagNode(context.Background(), "gateway", nil, []string{coordinator.RelayTag}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*stream{sa, sb, sc} {
		eventually(t, func() bool { p, _ := s.peer(designated.key()); return p.Relay == "" && p.Name == "gateway" }, "relay not withdrawn")
	}
	eventually(t, func() bool { return !slices.Contains(sd.ownTags(), coordinator.RelayTag) }, "gateway not told it is no longer a relay")
	// Until then no peer was ever offered the rogue, in a welcome or a delta.
	for _, s := range []*stream{sa, sb, sc} {
		if offers := s.offered(rogue.key()); len(offers) != 0 {
			t.Fatalf("rogue offered as a relay: %v", offers)
		}
	}
	// The administrator designates it: offered at once, at the address it
	// announced.
	if n, err := h.srv.TagNode(context.Background(), "rogue", []string{coordinator.RelayTag}, nil); err != nil || n.Relay != "198.18.0.66:3479" {
		t.Fatalf("TagNode(rogue) = %+v, %v", n, err)
	}
	eventually(t, func() bool { p, _ := sb.peer(rogue.key()); return p.Relay == "198.18.0.66:3479" }, "newly designated relay not offered")
	eventually(t, func() bool { return slices.Contains(sr.ownTags(), coordinator.RelayTag) }, "rogue not told it is now a relay")
	// A node hears only its own record: no one else's tags change its view.
	for _, s := range []*stream{sa, sb, sc} {
		if tags := s.ownTags(); len(tags) != 0 {
			t.Errorf("a plain node's own record has tags %v", tags)
		}
	}
}

// sees reports whether the relay pairs let a and b see each other, as a
// relay node tests them.
func sees(p *wire.RelayPairs, a, b crypto.PublicKey) bool {
	var ma, mb *wire.RelayMember
	for i := range p.Members {
		switch p.Members[i].Key {
		case a:
			ma = &p.Members[i]
		case b:
			mb = &p.Members[i]
		}
	}
	return ma != nil && mb != nil && ma.Sees(mb)
}

// A designated relay node is told which nodes may see each other, so that
// it relays only between those: in its welcome and whenever the policy,
// or the nodes it applies to, change; with no policy, every pair. Other
// nodes are told nothing of it.
func TestRelayNodeToldWhichPairsSeeEachOther(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	plain := h.token(coordinator.TokenOptions{Reusable: true})
	relay := newNode(t, h).join(h.token(coordinator.TokenOptions{Tags: []string{coordinator.RelayTag}}), "relay")
	alice := newNode(t, h).join(plain, "alice")
	bob := newNode(t, h).join(plain, "bob")
	carol := newNode(t, h).join(plain, "carol")
	sr, sa := relay.connect(), alice.connect()
	if p := sr.relayPairs(); p != nil {
		t.Fatalf("relay pairs %+v without a policy; want none (every pair)", p)
	}
	if _, err := h.srv.SetPolicy(t.Context(), "rules:\n  - {from: alice, to: bob}\n"); err != nil {
		t.Fatal(err)
	}
	want := func(p *wire.RelayPairs) error {
		for _, c := range []struct {
			a, b *node
			want bool
		}{{alice, bob, true}, {bob, alice, true}, {alice, carol, false}, {bob, carol, false}, {carol, relay, true}} {
			if got := sees(p, c.a.key(), c.b.key()); got != c.want {
				return fmt.Errorf("pairs say %v for a pair, want %v", got, c.want)
			}
		}
		return nil
	}
	eventually(t, func() bool { p := sr.relayPairs(); return p != nil && want(p) == nil }, "the relay node told the policy's pairs")
	if p := sa.relayPairs(); p != nil {
		t.Errorf("alice, no relay node, was told relay pairs %+v", p)
	}

	// A reconnecting relay node gets them in its welcome.
	sr.close()
	sr = relay.connect()
	if err := want(sr.welcome.RelayPairs); err != nil {
		t.Errorf("welcome: %v", err)
	}
	// A new rule: carol and bob now see each other.
	if _, err := h.srv.SetPolicy(t.Context(), "rules:\n  - {from: alice, to: bob}\n  - {from: carol, to: bob}\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { p := sr.relayPairs(); return p != nil && sees(p, carol.key(), bob.key()) }, "the relay node told the new pairs")
	// The policy removed: every pair.
	if _, err := h.srv.SetPolicy(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { p := sr.relayPairs(); return p != nil && p.Open }, "the relay node told every pair")
}
