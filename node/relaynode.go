package node

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/node/discovery"
	"github.com/meshnode/meshnode/relay"
)

// A node with a public address can serve as the mesh's relay (relay_listen,
// relay_public): the coordinator's relay code, with the node's key and its
// peer map as the authority. Every node picks the same relay (chooseRelay),
// so both ends of a relayed pair are bound to it.

// serveRelay runs the relay this node serves until ctx ends.
func (e *Engine) serveRelay(ctx context.Context, wg *sync.WaitGroup) error {
	pc, err := e.opts.RelayListen(e.cfg.RelayListen)
	if err != nil {
		return fmt.Errorf("relay_listen %s: %w", e.cfg.RelayListen, err)
	}
	srv := relay.New(relay.Options{Key: e.priv, Auth: e, Log: e.log.With("component", "relay-server")})
	wg.Go(func() {
		defer pc.Close()
		if err := srv.ServeUDP(ctx, pc); err != nil {
			e.log.Error("relay server stopped", "err", err)
		}
	})
	e.log.Info("serving as a relay", "listen", e.cfg.RelayListen, "public", e.cfg.RelayPublic)
	return nil
}

// Known implements relay.Authorizer: this node and its peers may relay.
func (e *Engine) Known(key crypto.PublicKey) bool {
	if key == e.priv.Public() {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.peers[key]
	return ok
}

// ArePeers implements relay.Authorizer: one mesh, so any two known nodes.
func (e *Engine) ArePeers(a, b crypto.PublicKey) bool {
	return a != b && e.Known(a) && e.Known(b)
}

// chooseRelay binds to the relay every node agrees on: the online relay
// node (this one included) with the lowest key, else the coordinator's.
func (e *Engine) chooseRelay() {
	e.mu.Lock()
	addr, key := e.coordRelay, e.state.CoordinatorKey
	var best *crypto.PublicKey
	if e.cfg.RelayPublic != "" {
		self := e.priv.Public()
		best, addr = &self, e.cfg.RelayPublic
	}
	for k, n := range e.peers {
		if n.Relay == "" || !n.Online || (best != nil && bytes.Compare(k[:], best[:]) >= 0) {
			continue
		}
		best, addr = &k, n.Relay
	}
	if best != nil {
		key = *best
	}
	e.mu.Unlock()
	if addr == "" {
		return
	}
	ap, err := discovery.ResolveSTUN(context.Background(), addr)
	if err != nil {
		e.log.Warn("relay address does not resolve", "relay", addr, "err", err)
		return
	}
	e.relay.SetServer(ap, key)
}
