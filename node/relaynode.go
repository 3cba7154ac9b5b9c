package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/node/discovery"
	"github.com/meshnode/meshnode/node/path"
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

// tcpRelayGrace is how long the UDP relay may stay unbound before the TCP
// relay is opened: a UDP relay binds within a round trip where UDP passes.
const tcpRelayGrace = 3 * time.Second

// relayChooser owns the relay policy: which relay to bind, and which relay
// route (UDP when bound, else TCP) the path manager uses.
type relayChooser struct {
	self     crypto.PublicKey
	public   string // relay_public, when this node serves as a relay
	coordKey crypto.PublicKey
	peers    *registry.Registry
	client   *relayclient.Client
	mgr      *path.Manager
	log      *slog.Logger

	mu           sync.Mutex
	coordRelay   string
	udp, tcp     bind.Route
	udpDownSince time.Time
}

// setCoordinatorRelay records the coordinator's relay from its welcome.
func (c *relayChooser) setCoordinatorRelay(addr string) {
	c.mu.Lock()
	c.coordRelay = addr
	c.mu.Unlock()
	c.choose()
}

// setRoute records a relay route (or its loss) and gives the path manager
// the best one: UDP when bound, else TCP.
func (c *relayChooser) setRoute(tcp bool, r bind.Route) {
	c.mu.Lock()
	if tcp {
		c.tcp = r
	} else {
		if r == nil && c.udp != nil {
			c.udpDownSince = time.Now()
		}
		c.udp = r
	}
	best := c.udp
	if best == nil {
		best = c.tcp
	}
	c.mu.Unlock()
	c.mgr.SetRelay(best)
}

// wantTCP reports whether the UDP relay has been unavailable too long.
func (c *relayChooser) wantTCP() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.udp == nil && time.Since(c.udpDownSince) > tcpRelayGrace
}

// choose binds to the relay every node agrees on: the online relay node
// (this one included) with the lowest key, else the coordinator's.
func (c *relayChooser) choose() {
	c.mu.Lock()
	addr, key := c.coordRelay, c.coordKey
	c.mu.Unlock()
	var best *crypto.PublicKey
	if c.public != "" {
		self := c.self
		best, addr = &self, c.public
	}
	for _, n := range c.peers.All() {
		k := n.PublicKey
		if n.Relay == "" || !n.Online || (best != nil && bytes.Compare(k[:], best[:]) >= 0) {
			continue
		}
		best, addr = &k, n.Relay
	}
	if best != nil {
		key = *best
	}
	if addr == "" {
		return
	}
	ap, err := discovery.ResolveSTUN(context.Background(), addr)
	if err != nil {
		c.log.Warn("relay address does not resolve", "relay", addr, "err", err)
		return
	}
	c.client.SetServer(ap, key)
}
