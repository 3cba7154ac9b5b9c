package perf

import (
	"context"
	"fmt"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

const (
	// meshnodeMTU is the node's default TUN MTU (config.DefaultMTU).
	meshnodeMTU = 1420
	// directTimeout bounds two port-restricted cones punching: seconds
	// normally, a failed round and a retry at worst.
	directTimeout = 45 * time.Second
)

// setUpMeshnode starts a node on each host, named prefix+"a" and
// prefix+"b", running bin (empty: the lab's binary), and waits until both
// report the direct path to the other. down takes them down and off the
// coordinator.
func setUpMeshnode(ctx context.Context, env Env, a, b *netlab.Host, bin, prefix string) (contender, func(), error) {
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	na, err := env.Lab.StartNode(sctx, a, netlab.NodeConfig{Name: prefix + "a", Token: env.Token, Bin: bin})
	if err != nil {
		return contender{}, nil, err
	}
	nb, err := env.Lab.StartNode(sctx, b, netlab.NodeConfig{Name: prefix + "b", Token: env.Token, Bin: bin})
	if err != nil {
		env.leave(na)
		return contender{}, nil, err
	}
	down := func() { env.leave(nb); env.leave(na) }
	if err := waitDirect(ctx, na, nb); err != nil {
		down()
		return contender{}, nil, err
	}
	st, err := nb.Status(ctx)
	if err != nil {
		down()
		return contender{}, nil, err
	}
	return contender{target: st.Me().V4(), procs: []*netlab.Proc{na.Proc(), nb.Proc()}, nodes: []*netlab.Node{na, nb}}, down, nil
}

// waitDirect polls until each node sees the other online on the direct
// path.
func waitDirect(ctx context.Context, a, b *netlab.Node) error {
	return netlab.Poll(ctx, directTimeout, netlab.PollInterval, func(ctx context.Context) error {
		for _, n := range [][2]*netlab.Node{{a, b}, {b, a}} {
			st, err := n[0].Status(ctx)
			if err != nil {
				return err
			}
			p, ok := st.Peer(n[1].Name)
			if !ok {
				return fmt.Errorf("%s doesn't list %s yet", n[0].Name, n[1].Name)
			}
			if !p.Online || p.Path != netlab.PathDirect {
				return fmt.Errorf("%s sees %s online=%v path=%q; want online and direct", n[0].Name, n[1].Name, p.Online, p.Path)
			}
		}
		return nil
	})
}
