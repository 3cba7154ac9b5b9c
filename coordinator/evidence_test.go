package coordinator_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/internal/wire"
)

// A member that reports a third party's public address as its own gets it
// held back: its peers are never offered an address the coordinator did
// not see the member use. Once the member's signed STUN request does come
// from it, the held report is applied without the member sending it again.
// Private addresses pass (peers probe those only inside their own LANs);
// an IPv6 address passes on the evidence of its /64.
func TestUnseenPublicCandidatesAreHeld(t *testing.T) {
	t.Parallel()
	h, nodes := mesh(t, "a", "b")
	a, b := nodes[0], nodes[1]
	sa, sb := a.connect(), b.connect()

	lan := wire.Endpoint{Addr: netip.MustParseAddrPort("192.168.1.20:41820"), Kind: wire.EndpointLAN}
	victim := wire.Endpoint{Addr: netip.MustParseAddrPort("203.0.113.80:443"), Kind: wire.EndpointSTUN}
	sameV6 := wire.Endpoint{Addr: netip.MustParseAddrPort("[2001:db8:1:2::99]:41820"), Kind: wire.EndpointLAN}
	otherV6 := wire.Endpoint{Addr: netip.MustParseAddrPort("[2001:db8:9::1]:41820"), Kind: wire.EndpointLAN}
	coordinator.Observe(h.srv, b.key(), netip.MustParseAddrPort("[2001:db8:1:2::5]:41820"))
	if err := sb.sendUnseen(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: []wire.Endpoint{lan, victim, sameV6, otherV6}}); err != nil {
		t.Fatal(err)
	}
	delivered(t, "the candidates with evidence", func() bool {
		p, _ := sa.peer(b.key())
		return slices.Equal(withoutTCP(p.Endpoints), []wire.Endpoint{lan, sameV6})
	})
	if got := h.metric("meshnode_coordinator_candidates_held_total", "", ""); got != 2 {
		t.Errorf("candidates_held_total %v, want 2", got)
	}

	// b's signed STUN request now comes from the public address.
	coordinator.Observe(h.srv, b.key(), victim.Addr)
	delivered(t, "the candidate once seen", func() bool {
		p, _ := sa.peer(b.key())
		return slices.Equal(withoutTCP(p.Endpoints), []wire.Endpoint{lan, victim, sameV6})
	})
}
