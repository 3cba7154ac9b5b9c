package node

import (
	"net/netip"
	"testing"

	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/discovery"
	"github.com/meshnode/meshnode/node/path"
)

func TestRelayWhy(t *testing.T) {
	public := netip.MustParseAddrPort("198.18.5.1:41820")
	hard := discovery.Mapping{Behaviour: wire.MappingAddressPortDependent, PortAlloc: wire.PortAllocRandom, Public: public}
	easy := discovery.Mapping{Behaviour: wire.MappingEndpointIndependent, PortAlloc: wire.PortAllocPreserve, Public: public}
	hardPeer := &wire.NATInfo{Mapping: wire.MappingAddressDependent, PortAlloc: wire.PortAllocRandom}
	for _, tc := range []struct {
		name string
		pp   path.PeerPath
		own  discovery.Result
		peer *wire.NATInfo
		want wire.RelayWhy
	}{
		{"the peer gave nothing to punch", path.PeerPath{}, discovery.Result{Mapping: easy}, nil, wire.WhyNoCandidates},
		{"no STUN answer here", path.PeerPath{Candidates: 2}, discovery.Result{}, nil, wire.WhyUDPBlocked},
		{"an IPv6 answer is UDP", path.PeerPath{Candidates: 2}, discovery.Result{Mapping6: discovery.Mapping{Public: netip.MustParseAddrPort("[2001:2::5]:41820")}}, nil, wire.WhyUnknown},
		{"both NATs hard", path.PeerPath{Candidates: 2, PunchFailures: 3}, discovery.Result{Mapping: hard}, hardPeer, wire.WhyHardNATs},
		{"one hard NAT, rounds failed", path.PeerPath{Candidates: 2, PunchFailures: 1}, discovery.Result{Mapping: easy}, hardPeer, wire.WhyPunchFailed},
		{"still punching", path.PeerPath{Candidates: 2}, discovery.Result{Mapping: hard}, nil, wire.WhyUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := relayWhy(tc.pp, tc.own, tc.peer); got != tc.want {
				t.Fatalf("relayWhy = %v, want %v", got, tc.want)
			}
		})
	}
}
