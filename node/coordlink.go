package node

import (
	"fmt"
	"log/slog"

	"github.com/meshnode/meshnode/crypto"

	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/mapcache"
	"github.com/meshnode/meshnode/node/path"
	"github.com/meshnode/meshnode/node/registry"
)

// coordLink takes the coordinator's stream (control.Handler): the peer map
// goes to the registry, cues to the path manager, the welcome's STUN and
// relay servers to their owners. It runs on the stream's reader goroutine.
type coordLink struct {
	peers *registry.Registry
	mgr   *path.Manager
	disc  *discoverer
	// welcomeRelay hears the coordinator's relay addresses (IPv4 and
	// IPv6) from each welcome.
	welcomeRelay func(addr, addr6 string)
	// meshRelay hears the relay of the mesh's coordinators
	// (wire.StreamMsg.MeshRelay): from each welcome (nil: the
	// coordinator's own), and from a delta when it changed (nil:
	// unchanged).
	meshRelay func(r *wire.MeshRelay, welcome bool)
	// self hears this node's own record: from each welcome, and from a
	// delta when the administrator changed it (its tags).
	self func(wire.Node)
	// dns hears the mesh's DNS configuration from each welcome.
	dns func(*wire.DNSConfig)
	// filter hears the access policy: from each welcome (nil: none), and
	// from a delta when it changed (nil: unchanged).
	filter func(f *wire.Filter, welcome bool)
	// welcomed hears each welcome (capacity 1, never waited on): the
	// path reporter sends its report in full again.
	welcomed chan<- struct{}
	// relayPairs hears which nodes may see each other, for the relay
	// this node may serve: from each welcome (nil: every pair), and from
	// a delta when they changed (nil: unchanged).
	relayPairs func(p *wire.RelayPairs, welcome bool)
	// coordinators hears the mesh's coordinators from each welcome, and
	// from a delta when they changed (nil: none sent, or unchanged).
	coordinators func([]crypto.Coordinator)
	// cache keeps the map on disk, nil with peer_map_cache off; live
	// hears each welcome (the node no longer runs from the cached map).
	cache    *mapcache.Writer
	live     func()
	log      *slog.Logger
	progress func(string)
	// held is the coordinator's map this node holds (control.Resumer):
	// set by each welcome and delta, on the stream's goroutine, which
	// alone reads it; zero before the first welcome, or when the
	// coordinator can't resume.
	held wire.MapVersion
}

// OnWelcome takes the full peer map after each (re)connect (apply), or
// what changed since the map it holds, then resends this node's
// candidates (a restarted coordinator may have lost them).
func (c *coordLink) OnWelcome(msg wire.StreamMsg) {
	c.coordinators(msg.Coordinators)
	if msg.Resumed {
		c.applyRest(msg)
		c.applyPeers(msg)
	} else {
		c.apply(msg)
	}
	c.held = wire.MapVersion{Epoch: msg.Epoch, Version: msg.Version}
	if c.cache != nil {
		c.live()
		c.cache.Welcome(msg)
	}
	c.log.Info("peer map received", "peers", c.peers.Len())
	c.progress(fmt.Sprintf("connected to the coordinator; %d peers", c.peers.Len()))
	c.disc.Kick()
	c.disc.sendEndpoints()
	select {
	case c.welcomed <- struct{}{}:
	default:
	}
}

// apply takes a full map, the coordinator's welcome or the cached one:
// the access policy first, then peers missing from the map are removed,
// the rest upserted.
func (c *coordLink) apply(msg wire.StreamMsg) {
	c.applyRest(msg)
	if err := c.peers.Replace(msg.Peers); err != nil {
		c.log.Error("applying the peer map", "err", err)
	}
}

// Holds implements control.Resumer.
func (c *coordLink) Holds() *wire.MapVersion {
	if c.held.Epoch == 0 {
		return nil
	}
	held := c.held
	return &held
}

// applyRest takes what a welcome carries besides the peers.
func (c *coordLink) applyRest(msg wire.StreamMsg) {
	c.disc.setSTUN(msg.STUN, msg.STUN6)
	if msg.Self != nil {
		c.self(*msg.Self)
	}
	c.welcomeRelay(msg.Relay, msg.Relay6)
	c.meshRelay(msg.MeshRelay, true)
	c.dns(msg.DNS)
	c.filter(msg.Filter, true)
	c.relayPairs(msg.RelayPairs, true)
}

// OnPeers applies a delta: this node's own record first, so that a relay
// it stops serving is out of its own choice before its peers' records
// are applied, then a new access policy, so that the connections of a
// peer it no longer allows stop before the peer goes.
func (c *coordLink) OnPeers(msg wire.StreamMsg) {
	if msg.Self != nil {
		c.self(*msg.Self)
	}
	c.filter(msg.Filter, false)
	c.relayPairs(msg.RelayPairs, false)
	if msg.Coordinators != nil {
		c.coordinators(msg.Coordinators)
	}
	c.meshRelay(msg.MeshRelay, false)
	significant := c.applyPeers(msg)
	if c.held.Epoch != 0 {
		c.held.Version = max(c.held.Version, msg.Version)
	}
	if c.cache != nil {
		c.cache.Delta(msg, significant)
	}
}

// applyPeers applies a delta's removals and upserts (a delta's, or a
// resumed welcome's), and reports whether any matters to coming up
// (mapcache.Significant).
func (c *coordLink) applyPeers(msg wire.StreamMsg) (significant bool) {
	for _, k := range msg.Remove {
		n, known := c.peers.Get(k)
		if err := c.peers.Remove(k); err != nil {
			c.log.Error("removing a peer", "err", err)
		} else if known {
			c.log.Info("peer removed", "peer", n.Name)
		}
	}
	for _, n := range msg.Upsert {
		old, known := c.peers.Get(n.PublicKey)
		if known {
			significant = significant || mapcache.Significant(&old, n)
		} else {
			significant = true
		}
		if err := c.peers.Upsert(n); err != nil {
			c.log.Error("applying a peer", "err", err)
		} else if !known {
			c.log.Info("peer added", "peer", n.Name, "addresses", n.Addresses, "online", n.Online)
		}
	}
	return significant
}

// OnPunch starts punching on the coordinator's cue.
func (c *coordLink) OnPunch(msg wire.StreamMsg) {
	if msg.Peer == nil {
		return
	}
	c.log.Debug("rendezvous cue", "peer", msg.Peer.Short(), "endpoints", len(msg.Endpoints))
	c.mgr.Punch(*msg.Peer, msg.Endpoints, msg.NAT)
}

// OnDisconnect keeps every path working: only the coordinator is gone.
func (c *coordLink) OnDisconnect(err error) {
	c.log.Debug("coordinator stream dropped; existing paths keep working", "err", err)
}
