package coordinator

import (
	"context"
	"time"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/internal/wire"
)

// Relay suspensions across coordinators. A suspension moves every node
// off a relay node at once, so that both ends of a relayed pair stay on
// one relay (relayhealth.go); where several coordinators serve the mesh,
// the nodes of every coordinator must move together too. So a
// coordinator that suspends a relay records the suspension in the
// database (store.SuspendRelay), and the others apply it as their own as
// soon as they hear of it (followSuspensions), as a coordinator that
// starts, or reads the mesh again, does for those that still run.
// A report naming a peer waits for the peer's report naming the
// reporter; the peer may stream to another coordinator, so the report
// waits in the database too (store.ReportRelay), where the other's
// report finds it (confirmedElsewhere).

// shareSuspension records a suspension decided here for the other
// coordinators' nodes; a failure leaves them on the relay until theirs
// report it too.
func (s *Server) shareSuspension(r store.RelaySuspension) {
	if !s.shared {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := s.store.SuspendRelay(ctx, r); err != nil {
		s.log.Warn("record a relay suspension for the other coordinators; their nodes keep the relay until they report it too", "key", r.Relay.Short(), "err", err)
	}
}

// followSuspensions applies the suspensions other coordinators recorded
// that run now and end later than this coordinator's own.
func (s *Server) followSuspensions(ctx context.Context) error {
	if !s.shared {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, followReadTimeout)
	defer cancel()
	now := time.Now()
	list, err := s.store.RelaySuspensions(rctx, now)
	if err != nil {
		return s.followFailed(ctx, "read the relay suspensions of the other coordinators", err)
	}
	for _, r := range list {
		if name, ok := s.hub.imposeSuspension(r, now); ok {
			s.log.Warn("relay suspended by another coordinator: a node reported that it did not carry its traffic; every node moves to the next relay",
				"relay", name, "key", r.Relay.Short(), "until", r.Until.Format(time.RFC3339), "suspensions", r.Strikes)
			s.restoreLater(r.Relay, name, r.Until)
		}
	}
	return nil
}

// imposeSuspension suspends r.Relay until r.Until unless it already is as
// long, and pushes the relay's record to its peers and itself; name is
// the relay's, ok whether anything changed.
func (h *hub) imposeSuspension(r store.RelaySuspension, now time.Time) (name string, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nodes[r.Relay]
	if n == nil || !r.Until.After(now) {
		return "", false
	}
	if until, suspended := h.susp.suspendedUntil(r.Relay, now); suspended && !r.Until.After(until) {
		return "", false
	}
	h.susp.impose(r.Relay, r.Until, r.Strikes)
	h.changed(n)
	h.changedSelf(n)
	return n.Name, true
}

// confirmedElsewhere reports whether r's peer reported r's relay naming
// r's reporter, within the window a report waits, to any coordinator;
// if not, it records r for the peer's report to find. Without another
// coordinator, or when the database fails, a report waits here only.
func (s *Server) confirmedElsewhere(r store.RelayReport) bool {
	if !s.shared {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	window := wire.RelayReportWindow
	mirror := store.RelayReport{Relay: r.Relay, Reporter: r.Peer, Peer: r.Reporter}
	found, err := s.store.RelayReported(ctx, mirror, r.At.Add(-window))
	if err == nil && !found {
		err = s.store.ReportRelay(ctx, r, r.At.Add(-window))
	}
	if err != nil {
		s.log.Warn("share a relay report with the other coordinators; it waits for the peer's report here only", "relay", r.Relay.Short(), "err", err)
	}
	return found
}
