package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
	"github.com/meshnode/meshnode/node/localapi"
)

// firstPacket measures what a user waits for when traffic to a node is
// already waiting as the node starts: the time from start to the first
// reply across the overlay. Probes from the waiting node's host go to the
// starting node's overlay address every netlab.ProbeInterval from the
// moment the waiting node lists it as a peer (its registration, before it
// has any path), so the first ones meet no path and the handshake that
// carries them must wait for one.
type firstPacket struct {
	probe *netlab.Prober
	start time.Time
	aimed chan error
}

// aimInterval is how often the waiting node is asked whether it lists the
// starting one yet: a small part of the time measured.
const aimInterval = 10 * time.Millisecond

// startFirstPacket starts the echo on to's host and the probes from from's,
// aimed at peer's overlay address once from lists it. The clock starts
// now: start the peer right after.
func startFirstPacket(t *testing.T, from *netlab.Node, to *netlab.Host, peer string) *firstPacket {
	t.Helper()
	probe, err := netlab.NewProber(t.Context(), from.Host.NS, to.NS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(probe.Close)
	// The node's control socket, asked directly: `meshnode status` takes
	// a process start per look, longer than the wait this measures.
	api := localapi.NewClient(from.Socket())
	f := &firstPacket{probe: probe, start: time.Now(), aimed: make(chan error, 1)}
	go func() {
		f.aimed <- netlab.Poll(t.Context(), pathTimeout, aimInterval, func(ctx context.Context) error {
			st, err := api.Status(ctx)
			if err != nil {
				return err
			}
			p, ok := netlab.Status(st).Peer(peer)
			if !ok {
				return fmt.Errorf("%s doesn't list %s yet", from.Name, peer)
			}
			for _, a := range p.Addresses {
				if a.Is4() {
					probe.Aim(a)
					return nil
				}
			}
			return fmt.Errorf("%s lists %s without an IPv4 address", from.Name, peer)
		})
	}()
	return f
}

// wait returns the time from start to the first reply, and stops the
// probes.
func (f *firstPacket) wait(ctx context.Context) (time.Duration, error) {
	defer f.probe.Close()
	if err := <-f.aimed; err != nil {
		return 0, err
	}
	return f.probe.RecoveredAfter(ctx, f.start, pathTimeout)
}
