package coordinator

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
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
