package node

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

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
	conns, err := e.opts.RelayListen(e.cfg.RelayListen)
	if err != nil {
		return fmt.Errorf("relay_listen %s: %w", e.cfg.RelayListen, err)
	}
	auth := relayAuth{self: e.priv.Public(), peers: e.peers, designated: &e.relayFeed.designated, pairs: &e.relayFeed.pairs}
	srv := relay.New(relay.Options{Key: e.priv, Auth: auth, Log: e.log.With("component", "relay-server")})
	wg.Go(func() {
		defer func() {
			for _, pc := range conns {
				pc.Close()
			}
		}()
		if err := srv.ServeUDP(ctx, conns, nil); err != nil {
			e.log.Error("relay server stopped", "err", err)
		}
	})
	e.log.Info("serving as a relay", "listen", e.cfg.RelayListen, "public", e.cfg.RelayPublic, "sockets", len(conns))
	return nil
}

// relayAuth is the relay's authority on a relay node: while the
// administrator designates this node, it and its peers may relay, to each
// other, when the access policy lets them see each other (pairs).
// Undesignated, it serves no one: a binding made before gets no frame
// through (both checks run on every frame), and no new one is made.
type relayAuth struct {
	self       crypto.PublicKey
	peers      *registry.Registry
	designated *atomic.Bool
	pairs      *atomic.Pointer[relayPairs]
}

// Known implements relay.Authorizer.
func (a relayAuth) Known(key crypto.PublicKey) bool {
	return a.designated.Load() && (key == a.self || a.peers.Has(key))
}

// ArePeers implements relay.Authorizer: two known nodes that the access
// policy lets see each other, as the coordinator decides for its own
// relay. The relay asks once a batch of frames.
func (a relayAuth) ArePeers(x, y crypto.PublicKey) bool {
	return x != y && a.Known(x) && a.Known(y) && a.pairs.Load().sees(x, y)
}

// relayPairs are the coordinator's wire.RelayPairs by key: which nodes
// may see each other. nil: every pair (no policy, or no word yet from a
// coordinator, as before relay pairs existed).
type relayPairs map[crypto.PublicKey]*wire.RelayMember

// newRelayPairs indexes p; nil for none, or an open one.
func newRelayPairs(p *wire.RelayPairs) (*relayPairs, error) {
	if p == nil || p.Open {
		return nil, nil
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	m := make(relayPairs, len(p.Members))
	for i := range p.Members {
		m[p.Members[i].Key] = &p.Members[i]
	}
	return &m, nil
}

// sees reports whether x and y may see each other; a node the pairs
// don't list sees no one.
func (p *relayPairs) sees(x, y crypto.PublicKey) bool {
	if p == nil {
		return true
	}
	mx, my := (*p)[x], (*p)[y]
	return mx != nil && my != nil && mx.Sees(my)
}

// setPairs applies the relay pairs of a coordinator's message: a
// welcome's (nil: every pair), a peers message's (nil: unchanged). Pairs
// that are not valid are refused, and no pair is relayed until valid ones
// arrive.
func (f *relayFeed) setPairs(p *wire.RelayPairs, welcome bool) {
	if p == nil && !welcome {
		return
	}
	pairs, err := newRelayPairs(p)
	if err != nil {
		f.log.Error("relay pairs refused; relaying for no pair", "err", err)
		pairs = &relayPairs{}
	}
	f.pairs.Store(pairs)
}

// relayFeed gives the relay client its candidates: the coordinator's relay
// from the last welcome (the mesh's coordinators' relay, where several
// serve it) and the relay nodes among the online peers (this node too,
// when it serves). The relay client chooses among them.
type relayFeed struct {
	relays   *relayclient.Relays
	peers    *registry.Registry
	coordKey crypto.PublicKey
	self     relayclient.Candidate // Addr "" unless this node serves as a relay
	log      *slog.Logger

	// designated: this node's own record, from the coordinator, carries
	// the administrator's relay tag and no suspension. Until it does, and
	// as soon as it no longer does, the node neither counts itself as a relay (its peers
	// don't, and a pair split across two relays can't meet) nor serves
	// anyone as one (relayAuth).
	designated atomic.Bool
	// pairs are which nodes may see each other, so that this node relays
	// only between those (setPairs).
	pairs atomic.Pointer[relayPairs]

	mu         sync.Mutex
	coordAddr  string
	coordAddr6 string
	// mesh is the relay of the mesh's coordinators (setMesh); nil: this
	// node's coordinator's, coordAddr and coordAddr6.
	mesh *wire.MeshRelay
}

// welcome records the coordinator's relay (its IPv4 and IPv6 addresses)
// from its welcome.
func (f *relayFeed) welcome(addr, addr6 string) {
	f.mu.Lock()
	f.coordAddr, f.coordAddr6 = addr, addr6
	f.mu.Unlock()
	f.update()
}

// setMesh records the relay every node of a mesh served by several
// coordinators binds to when no relay node is offered: from a welcome
// (nil: the coordinator's own), or from a delta (nil: unchanged).
func (f *relayFeed) setMesh(r *wire.MeshRelay, welcome bool) {
	if r == nil && !welcome {
		return
	}
	if r != nil {
		r = &wire.MeshRelay{Key: r.Key, Addr: r.Addr, Addr6: r.Addr6, URL: r.URL, Pin: r.Pin}
		if !strings.HasPrefix(r.URL, "https://") {
			// The TCP relay is reached over TLS only; without a URL it
			// stays at this node's coordinator.
			r.URL, r.Pin = "", ""
		}
	}
	f.mu.Lock()
	f.mesh = r
	f.mu.Unlock()
	f.update()
}

// setSelf applies this node's own record: whether the administrator
// designates it a relay and the coordinator has not suspended it (a node
// reported that it did not carry its traffic). Every node moves with it.
func (f *relayFeed) setSelf(self wire.Node) {
	on := offered(self)
	if f.designated.Swap(on) != on {
		switch {
		case on && f.self.Addr == "":
			f.log.Warn("designated a relay by the administrator, but relay_listen and relay_public are not set: serving no one")
		case on:
			f.log.Info("designated a relay by the administrator; serving peers", "relay", f.self.Addr)
		case f.self.Addr != "" && !self.RelaySuspendedUntil.IsZero():
			f.log.Warn("the coordinator suspended this node's relay (a node reported it did not carry its traffic); serving no one and choosing another", "relay", f.self.Addr, "until", self.RelaySuspendedUntil)
		case f.self.Addr != "":
			f.log.Info("no longer a designated relay; serving no one and choosing another", "relay", f.self.Addr)
		}
	}
	f.update()
}

// serving is the relay address this node serves its peers at, "" when
// it serves none.
func (f *relayFeed) serving() string {
	if !f.designated.Load() {
		return ""
	}
	return f.self.Addr
}

// offered reports whether the coordinator offers n's relay to its peers
// (once n announces one): designated and not suspended.
func offered(n wire.Node) bool {
	return slices.Contains(n.Tags, wire.TagRelay) && n.RelaySuspendedUntil.IsZero()
}

// update hands the relay client the current candidates; it never blocks.
func (f *relayFeed) update() {
	f.mu.Lock()
	coord := relayclient.Candidate{Key: f.coordKey, Addr: f.coordAddr, Addr6: f.coordAddr6}
	if f.mesh != nil {
		coord = relayclient.Candidate{Key: f.mesh.Key, Addr: f.mesh.Addr, Addr6: f.mesh.Addr6, URL: f.mesh.URL, Pin: f.mesh.Pin}
	}
	f.mu.Unlock()
	var nodes []relayclient.Candidate
	if f.serving() != "" {
		nodes = append(nodes, f.self)
	}
	for _, n := range f.peers.All() {
		if n.Relay != "" && n.Online {
			nodes = append(nodes, relayclient.Candidate{Key: n.PublicKey, Addr: n.Relay})
		}
	}
	f.relays.SetCandidates(coord, nodes)
}
