package node

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/registry"
	"github.com/meshnode/meshnode/node/relayclient"
	"github.com/meshnode/meshnode/relay"
)

// A node with a public address can serve as the mesh's relay (relay_listen,
// relay_public): the relay package, with the node's key and its peer
// registry as the authority. Every node picks the same relay (choose), so
// both ends of a relayed pair are bound to it.

// serveRelay runs the relay this node serves until ctx ends.
func (e *Engine) serveRelay(ctx context.Context, wg *sync.WaitGroup) error {
	pc, err := e.opts.RelayListen(e.cfg.RelayListen)
	if err != nil {
		return fmt.Errorf("relay_listen %s: %w", e.cfg.RelayListen, err)
	}
	srv := relay.New(relay.Options{Key: e.priv, Auth: relayAuth{self: e.priv.Public(), peers: e.peers}, Log: e.log.With("component", "relay-server")})
	wg.Go(func() {
		defer pc.Close()
		if err := srv.ServeUDP(ctx, pc); err != nil {
			e.log.Error("relay server stopped", "err", err)
		}
	})
	e.log.Info("serving as a relay", "listen", e.cfg.RelayListen, "public", e.cfg.RelayPublic)
	return nil
}

// relayAuth is the relay's authority on a relay node: this node and its
// peers may relay, to each other.
type relayAuth struct {
	self  crypto.PublicKey
	peers *registry.Registry
}

// Known implements relay.Authorizer.
func (a relayAuth) Known(key crypto.PublicKey) bool { return key == a.self || a.peers.Has(key) }

// ArePeers implements relay.Authorizer: one mesh, so any two known nodes.
func (a relayAuth) ArePeers(x, y crypto.PublicKey) bool { return x != y && a.Known(x) && a.Known(y) }

// relayFeed gives the relay client its candidates: the coordinator's relay
// from the last welcome and the relay nodes among the online peers (this
// node too, when it serves). The relay client chooses among them.
type relayFeed struct {
	relays   *relayclient.Relays
	peers    *registry.Registry
	coordKey crypto.PublicKey
	self     relayclient.Candidate // Addr "" unless this node serves as a relay

	mu         sync.Mutex
	coordAddr  string
	coordAddr6 string
	// designated: the welcome shows the administrator's relay tag on this
	// node. Until then it must not count itself as a relay: its peers
	// don't, and a pair split across two relays can't meet.
	designated bool
}

// welcome records the coordinator's relay (its IPv4 and IPv6 addresses)
// and whether this node is a designated relay, from the coordinator's
// welcome.
func (f *relayFeed) welcome(addr, addr6 string, self *wire.Node) {
	f.mu.Lock()
	f.coordAddr, f.coordAddr6 = addr, addr6
	f.designated = self != nil && slices.Contains(self.Tags, wire.TagRelay)
	f.mu.Unlock()
	f.update()
}

// update hands the relay client the current candidates; it never blocks.
func (f *relayFeed) update() {
	f.mu.Lock()
	coord := relayclient.Candidate{Key: f.coordKey, Addr: f.coordAddr, Addr6: f.coordAddr6}
	designated := f.designated
	f.mu.Unlock()
	var nodes []relayclient.Candidate
	if f.self.Addr != "" && designated {
		nodes = append(nodes, f.self)
	}
	for _, n := range f.peers.All() {
		if n.Relay != "" && n.Online {
			nodes = append(nodes, relayclient.Candidate{Key: n.PublicKey, Addr: n.Relay})
		}
	}
	f.relays.SetCandidates(coord, nodes)
}
