package relayclient

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/testenv"
	"github.com/meshnode/meshnode/node/bind"
)

// TestBindsToUDPRelay runs Relays against the real relay: a node the relay
// knows gets the UDP relay route; one it doesn't know gets none.
func TestBindsToUDPRelay(t *testing.T) {
	tests := []struct {
		name  string
		known bool
	}{
		{"registered node gets a relay route", true},
		{"unregistered node gets none", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startRelay(t)
			n := newTestNode(t, fastTiming)
			if tt.known {
				s.auth.add(n.pub)
			}
			n.relays.SetCandidates(s.candidate(), nil)
			if !tt.known {
				select {
				case k := <-s.auth.refused:
					if k != n.pub {
						t.Fatalf("relay refused %s, want %s", k.Short(), n.pub.Short())
					}
				case <-time.After(waitTimeout):
					t.Fatalf("the relay did not refuse the node after %v", waitTimeout)
				}
				select {
				case r := <-n.routes:
					t.Fatalf("unregistered node got route %+v", r.Info())
				default:
				}
				if st := n.relays.Status(); st.UDPBound {
					t.Fatalf("status %+v: bound, want unbound", st)
				}
				return
			}
			r := n.waitRoute(t, "UDP relay route", udpRouteTo(s.udp))
			if i := r.Info(); i.Via != s.udp.String() {
				t.Fatalf("route = %+v, want one via %s", i, s.udp)
			}
			if st := n.relays.Status(); st != (Status{Relay: s.candidate(), Addr: s.udp, UDPBound: true, Coordinator: true}) {
				t.Fatalf("status = %+v, want bound to %s", st, s.udp)
			}
		})
	}
}

// TestUDPRelayCarriesPackets sends packets both ways between two nodes'
// Binds over the routes Relays handed them.
func TestUDPRelayCarriesPackets(t *testing.T) {
	s := startRelay(t)
	a, b := newTestNode(t, fastTiming), newTestNode(t, fastTiming)
	s.auth.add(a.pub, b.pub)
	s.auth.peer(a.pub, b.pub)
	a.relays.SetCandidates(s.candidate(), nil)
	b.relays.SetCandidates(s.candidate(), nil)
	ra := a.waitRoute(t, "UDP relay route", udpRouteTo(s.udp))
	rb := b.waitRoute(t, "UDP relay route", udpRouteTo(s.udp))

	tests := []struct {
		name     string
		from, to *testNode
		route    bind.Route
		pkt      []byte
	}{
		{"a to b", a, b, ra, wgPacket(148, 1)},
		{"b to a", b, a, rb, wgPacket(1420, 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			send(t, tt.route, tt.to.pub, tt.pkt)
			tt.to.expectPacket(t, tt.from.pub, tt.pkt)
		})
	}
}

// TestSelectionFollowsCandidates moves the binding as the candidates
// change: to the lowest-key relay node when one is online, back to the
// coordinator's relay when none is.
func TestSelectionFollowsCandidates(t *testing.T) {
	coord, node1, node2 := startRelay(t), startRelay(t), startRelay(t)
	n := newTestNode(t, fastTiming)
	for _, s := range []*relayServer{coord, node1, node2} {
		s.auth.add(n.pub)
	}
	low, high := node1, node2
	if k1, k2 := node1.key.Public(), node2.key.Public(); bytes.Compare(k1[:], k2[:]) > 0 {
		low, high = node2, node1
	}
	steps := []struct {
		name  string
		nodes []*relayServer
		want  *relayServer
	}{
		{"no relay nodes: the coordinator's relay", nil, coord},
		{"a relay node comes online", []*relayServer{high}, high},
		{"a lower-key relay node comes online", []*relayServer{high, low}, low},
		{"both go offline", nil, coord},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			var nodes []Candidate
			for _, s := range st.nodes {
				nodes = append(nodes, s.candidate())
			}
			n.relays.SetCandidates(coord.candidate(), nodes)
			n.waitRoute(t, "route via "+st.want.udp.String(), udpRouteTo(st.want.udp))
			if got := n.relays.Status(); got.Relay != st.want.candidate() || !got.UDPBound {
				t.Fatalf("status = %+v, want bound to %+v", got, st.want.candidate())
			}
		})
	}
}

// TestRouteWithdrawnAfterExpiry stops the relay: once it has not confirmed
// the binding for Expiry, the route is withdrawn.
func TestRouteWithdrawnAfterExpiry(t *testing.T) {
	t.Parallel() // its own relay and node; it waits for the route to expire
	s := startRelay(t)
	n := newTestNode(t, fastTiming)
	s.auth.add(n.pub)
	n.relays.SetCandidates(s.candidate(), nil)
	n.waitRoute(t, "UDP relay route", udpRouteTo(s.udp))
	s.stop()
	n.waitRoute(t, "route withdrawal", noRoute)
	if st := n.relays.Status(); st.UDPBound {
		t.Fatalf("status = %+v after expiry, want unbound", st)
	}
}

// TestBindsOverEitherFamily: the coordinator's relay has an IPv4 and an
// IPv6 address (stun_listen_v6). A dual-stack node binds over IPv4; an
// IPv6-only node, which can't send to the IPv4 one, binds over IPv6 at
// once; and a node whose IPv4 hellos go unanswered moves to IPv6.
func TestBindsOverEitherFamily(t *testing.T) {
	s := startRelay(t)
	pc6, err := net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[::1]:0")))
	if err != nil {
		testenv.Unavailable(t, "no IPv6 loopback (::1): %v", err)
	}
	t.Cleanup(func() { pc6.Close() })
	udp6, _ := s.serveUDP(t, pc6)
	silent := loopback(t).LocalAddr().(*net.UDPAddr).AddrPort()
	anyAddr := netip.MustParseAddrPort("[::]:0")
	tests := []struct {
		name    string
		network string
		laddr   netip.AddrPort
		relay   Candidate
		want    netip.AddrPort
	}{
		{"dual stack: IPv4 first", "udp", anyAddr, Candidate{Addr: s.udp.String(), Addr6: udp6.String()}, s.udp},
		{"IPv6-only host", "udp6", netip.MustParseAddrPort("[::1]:0"), Candidate{Addr: s.udp.String(), Addr6: udp6.String()}, udp6},
		{"IPv4 unanswered", "udp", anyAddr, Candidate{Addr: silent.String(), Addr6: udp6.String()}, udp6},
		{"IPv6 only announced", "udp6", netip.MustParseAddrPort("[::1]:0"), Candidate{Addr6: udp6.String()}, udp6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNodeOn(t, tt.network, tt.laddr, fastTiming)
			s.auth.add(n.pub)
			tt.relay.Key = s.key.Public()
			n.relays.SetCandidates(tt.relay, nil)
			n.waitRoute(t, "UDP relay route via "+tt.want.String(), udpRouteTo(tt.want))
			if st := n.relays.Status(); !st.UDPBound || st.Addr != tt.want {
				t.Fatalf("status %+v, want bound at %s", st, tt.want)
			}
		})
	}
}
