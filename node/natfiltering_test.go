package node_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/natlab"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
)

// Each node measures its NAT's filtering (RFC 5780 §4.4) from a socket of
// its own and reports it with its candidates, so that the coordinator's
// node table shows what each site's NAT lets in.
func TestNodesReportTheirNATFiltering(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{})
	cases := []struct {
		nat  func() natlab.NATConfig // nil: a host on the internet, no NAT
		want wire.NATFiltering
	}{
		{natlab.FullCone, wire.FilteringEndpointIndependent},
		{natlab.RestrictedCone, wire.FilteringAddressDependent},
		{natlab.PortRestrictedCone, wire.FilteringAddressPortDependent},
		{natlab.Symmetric, wire.FilteringAddressPortDependent},
		{nil, wire.FilteringNone},
	}
	want := map[string]wire.NATFiltering{}
	var nodes []*meshlab.Node
	for i, c := range cases {
		name := fmt.Sprintf("n%d", i)
		var h *natlab.Host
		if c.nat == nil {
			h = m.Lab.NewHost(name, netip.MustParseAddr("198.18.5.2"))
		} else {
			cfg := c.nat()
			cfg.Name = name + "-nat"
			h = m.NAT(cfg).NewHost(name, netip.MustParseAddr("192.168.1.2"))
		}
		nodes = append(nodes, m.AddNode(name, h, meshlab.NodeOptions{}))
		want[name] = c.want
	}
	got := map[string]wire.NATFiltering{}
	wait.For(t, pathDeadline, "every node's NAT filtering reported", func() bool {
		nodes, err := m.Coord.Nodes(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if n.NAT != nil {
				got[n.Name] = n.NAT.Filtering
			}
		}
		for name, f := range want {
			if got[name] != f {
				return false
			}
		}
		return true
	})
	t.Logf("reported: %v", got)
	for _, n := range nodes {
		if f := n.Engine.Status().Self.NAT.Filtering; f != want[n.Name] {
			t.Errorf("%s's status: filtering %q, want %q", n.Name, f, want[n.Name])
		}
	}
}
