package coordinator_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/meshnode/meshnode/coordinator"
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
