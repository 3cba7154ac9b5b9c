package coordinator

import (
	"context"
	"errors"
	"time"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/internal/wire"
)

// Relaying across coordinators. Each coordinator serves a relay, and a
// relayed pair must meet on one: a node split from its peer across two
// coordinators would otherwise bind to its own and never reach the peer.
//
// Tailscale solves this with a home relay per node: each node picks its
// home DERP region, the control plane passes it to every peer, a sender
// connects on demand to the region of each peer it relays to (magicsock
// keeps a connection per region, closing idle ones), and the servers of
// one region forward to each other one hop (DERP mesh), so that a client
// on either server of a region is reached. That fits a node that keeps a
// relay route per peer. A meshnode node keeps one relay route for all
// its peers (path.Manager.SetRelay, relayclient.Relays): every relayed
// peer must sit on the node's one relay, which is why every node already
// agrees on one designated relay node. Coordinators sharing a database
// are Tailscale's region; meshnode makes them one relay the same way:
//
//   - each coordinator records its relay (its key and the addresses its
//     welcome gives, when it knows them) with its lease
//     (store.AdvertiseRelay), and reads the others' at every renewal
//     (store.Relays);
//   - every node, whichever coordinator it streams to, binds to the
//     relay of the coordinator that came up first among those whose lease
//     runs (ties by key): all coordinators read the same rows, so all
//     name the same relay within one renewal, and starting another
//     coordinator moves nobody. The welcome carries it (MeshRelay) and
//     a delta carries the next when it changes;
//   - that relay verifies a node connected elsewhere as its own: the
//     node proves its key to the relay's key, named in MeshRelay, and
//     the relay asks this coordinator's hub, which follows every
//     registration and the access policy through the database;
//   - when that coordinator stops (its goodbye) or dies (its lease
//     ends), the next renewal of every other names the next one, and
//     all nodes move to it together: a pair never straddles two relays
//     for longer than one renewal.
//
// A designated relay node still comes first, as before. The cost is that
// one coordinator carries the mesh's relayed traffic at a time. A node
// whose UDP is blocked opens its TCP (WebSocket) relay at that
// coordinator too (MeshRelay's URL and pin), for the same reason.

// ownRelay is this coordinator's relay as the nodes of every coordinator
// dial it: the addresses its welcome gives when no request names a host
// (the public URL's host for a socket on an unspecified address); ok is
// false before ServeSTUN knows them.
func (s *Server) ownRelay() (r wire.MeshRelay, ok bool) {
	stun := s.stunServers("")
	r = wire.MeshRelay{Key: s.key.Public(), Addr: firstOf(stun.v4), Addr6: firstOf(stun.v6), URL: s.publicURL(), Pin: s.pin}
	return r, r.Addr != "" || r.Addr6 != ""
}

// refreshMeshRelay records this coordinator's relay with its lease, once
// per lease (lapsed: the lease was taken anew, without it), and makes the
// first of the coordinators' relays the mesh's. It runs in the lease's
// goroutine, which owns relayAdvertised.
func (s *Server) refreshMeshRelay(ctx context.Context, lapsed bool) {
	if lapsed {
		s.relayAdvertised = false
	}
	own, known := s.ownRelay()
	if known && !s.relayAdvertised {
		err := s.store.AdvertiseRelay(ctx, store.CoordinatorRelay{Coordinator: s.id, Key: own.Key, Addr: own.Addr, Addr6: own.Addr6})
		switch {
		case err == nil:
			s.relayAdvertised = true
		case errors.Is(err, store.ErrNotFound):
			// The lease lapsed meanwhile: the next renewal takes it
			// anew, and advertises again.
		case ctx.Err() == nil:
			s.log.Warn("record this coordinator's relay for the other coordinators' nodes; retrying at the next lease renewal", "err", err)
		}
	}
	list, err := s.store.Relays(ctx, time.Now())
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("read the coordinators' relays; the mesh keeps its relay until the next lease renewal", "err", err)
		}
		return
	}
	switch {
	case len(list) > 0:
		first := list[0]
		s.setMeshRelay(wire.MeshRelay{Key: first.Key, Addr: first.Addr, Addr6: first.Addr6, URL: first.URL, Pin: first.Pin})
	case known:
		s.setMeshRelay(own)
	}
}

// setMeshRelay makes r the mesh's relay and tells every node here when it
// changed.
func (s *Server) setMeshRelay(r wire.MeshRelay) {
	if s.hub.setMeshRelay(r) {
		s.log.Info("the mesh's relay", "relay", r.Addr, "relay6", r.Addr6, "key", r.Key.Short(), "own", r.Key == s.key.Public())
	}
}

// setMeshRelay makes r the relay of the nodes here, queued to each, and
// reports whether it changed.
func (h *hub) setMeshRelay(r wire.MeshRelay) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.meshRelay != nil && *h.meshRelay == r {
		return false
	}
	h.meshRelay = &r
	h.version++
	for _, sess := range h.sessions {
		sess.setMeshRelay(&r, h.version)
	}
	return true
}
