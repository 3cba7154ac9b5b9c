package coordinator

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
)

// The coordinators of one mesh: coordinators sharing a PostgreSQL
// database record, with the lease each keeps (presence.go), where nodes
// dial it and the pin of its own certificate. Join tokens name them all,
// each with its pin, and every welcome carries the current list, so a
// node whose coordinator dies reconnects to another (node/control).

// settingCoordinatorKey holds the mesh's coordinator key on a shared
// database (sharedKey).
const settingCoordinatorKey = "coordinator_key"

// sharedKey returns the key every coordinator on this database uses: the
// first one's own key, which the database keeps.
//
// Why one key rather than one per coordinator, as the certificates are:
// the key is the mesh's identity to its nodes, not a transport's. Nodes
// prove their own key to it on the stream and to the relay, the relay
// proves itself with it, STUN requests are signed for it, and a node's
// cached peer map is owned by it. With one key, a node that fails over
// authenticates to whichever coordinator answers exactly as before, and
// the STUN credentials, the built-in relay's identity and the cached map
// stay valid; with one key per coordinator, tokens and welcomes would
// have to carry every key and a node would switch all of these on each
// failover. What it costs: the private key is in the database, so its
// backups are as secret as the key file (they already hold everything
// else of the mesh: nodes, tokens' hashes, policy).
func sharedKey(ctx context.Context, st store.Store, own crypto.PrivateKey) (crypto.PrivateKey, error) {
	text, err := st.InitSetting(ctx, settingCoordinatorKey, own.String())
	if err != nil {
		return crypto.PrivateKey{}, fmt.Errorf("share the coordinator key through the database: %w", err)
	}
	key, err := crypto.ParsePrivateKey(text)
	if err != nil {
		return crypto.PrivateKey{}, fmt.Errorf("the coordinator key stored in the database (setting %s) is damaged: %w", settingCoordinatorKey, err)
	}
	return key, nil
}

// lease is what this coordinator records about itself with its lease.
func (s *Server) leaseInfo() store.Lease {
	return store.Lease{Coordinator: s.id, URL: s.publicURL(), Pin: s.pin}
}

// refreshMesh reads the live coordinators for the welcomes (at each lease
// renewal, not per welcome: thousands of nodes connect at once). When
// they changed (one started, or its lease ended), every node streaming
// here hears the new list in a delta, so it can fail over to a
// coordinator added after it connected.
func (s *Server) refreshMesh(ctx context.Context, now time.Time) {
	list, err := s.store.LiveCoordinators(ctx, now)
	if err != nil {
		s.log.Warn("list the mesh's coordinators; welcomes carry the last list", "err", err)
		return
	}
	s.mu.Lock()
	changed := !slices.Equal(s.mesh, list)
	s.mesh = list
	s.mu.Unlock()
	if !changed {
		return
	}
	mesh := s.meshList()
	if mesh == nil {
		return
	}
	s.log.Info("the mesh's coordinators changed", "coordinators", len(mesh))
	for _, sess := range s.hub.localSessions() {
		sess.setCoordinators(mesh)
	}
}

// meshList is what a welcome tells a node of the mesh's coordinators:
// this one first, then the others the last refresh saw; nil without a
// public URL (a node keeps the list it has).
func (s *Server) meshList() []crypto.Coordinator {
	url := s.publicURL()
	if url == "" {
		return nil
	}
	s.mu.Lock()
	others := s.mesh
	s.mu.Unlock()
	return coordinatorList(crypto.Coordinator{URL: url, Pin: s.pin}, others)
}

// coordinatorList is first, then each of others with another URL and a
// valid URL and pin (a row is input like any other), at most
// crypto.MaxTokenCoordinators in all.
func coordinatorList(first crypto.Coordinator, others []store.Lease) []crypto.Coordinator {
	out := []crypto.Coordinator{first}
	for _, l := range others {
		c := crypto.Coordinator{URL: l.URL, Pin: l.Pin}
		if len(out) == crypto.MaxTokenCoordinators {
			break
		}
		if c.URL == first.URL || c.Validate() != nil {
			continue
		}
		out = append(out, c)
	}
	return out
}

// otherCoordinators lists, for a new token, the coordinators besides
// first that share this database: those whose lease runs. On SQLite one
// coordinator owns the database: none.
func otherCoordinators(ctx context.Context, st store.Store, shared bool, first crypto.Coordinator) ([]crypto.Coordinator, error) {
	if !shared {
		return nil, nil
	}
	list, err := st.LiveCoordinators(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	return coordinatorList(first, list)[1:], nil
}
