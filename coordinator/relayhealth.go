package coordinator

import (
	"time"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// A designated relay node that stops carrying traffic (its relay server
// crashed, or it drops frames) is reported by the nodes that use it
// (wire.MsgRelayReport). A frame reaches its destination only through the
// relay the destination is bound to, so the nodes can't each walk away on
// their own: the coordinator suspends the relay's designation for every
// node at once. A suspended relay is left out of every peer map, and told
// so itself; all nodes move together to the next designated relay, else
// the coordinator's. When the suspension ends, the relay is offered again;
// if it still does not carry, it is reported and suspended again, for
// twice as long each time, up to suspendMax.
//
// Evidence: a report on the reporter's own echoes suspends at once (the
// reporter is alive, its own frames did not come back). A report naming a
// peer (relayed pings to it went unanswered) waits for the peer's report
// naming the reporter: both ends alive and each unheard by the other
// through the relay. A dead peer can't send that report, so it never gets
// the relay blamed. A hostile member can report whatever it likes; it can
// at worst keep the mesh on the coordinator's relay, never on a relay of
// its own.

// Suspension policy defaults.
const (
	// suspendBase is the first suspension of a relay: long enough for
	// every node to settle on the fallback, short enough that a relay
	// whose fault passed is back soon.
	suspendBase = time.Minute
	// suspendMax caps the doubling for a relay reported again and again.
	suspendMax = 30 * time.Minute
	// suspendForgive: a relay that went this long after its last
	// suspension without another starts over at suspendBase.
	suspendForgive = suspendMax
	// maxPendingReports bounds the reports one node's peer evidence keeps
	// waiting for their peers' (one per relayed peer it checks; checks go
	// to a few peers at a time).
	maxPendingReports = 16
)

// suspendPolicy is how long reported relays are suspended.
type suspendPolicy struct {
	base, max time.Duration // the first suspension; the cap of the doubling
	forgive   time.Duration // time without a suspension that resets the doubling
	window    time.Duration // how long a report naming a peer waits for the peer's
	pending   int           // reports waiting, per reporter
}

func defaultSuspendPolicy() suspendPolicy {
	return suspendPolicy{base: suspendBase, max: suspendMax, forgive: suspendForgive, window: wire.RelayReportWindow, pending: maxPendingReports}
}

// verdict is what a relay report led to.
type verdict string

// Verdicts, also the labels of the relay reports metric.
const (
	verdictSuspended   verdict = "suspended"   // the relay is suspended now
	verdictUnconfirmed verdict = "unconfirmed" // waits for the named peer's report
	verdictStale       verdict = "stale"       // the relay is not offered (suspended already, offline, not designated)
	verdictInvalid     verdict = "invalid"     // the named peer is no peer of the reporter
	verdictOverBudget  verdict = "over_budget" // the reporter reported too often; dropped
)

// suspension is one relay's record.
type suspension struct {
	until   time.Time // suspended while before until
	strikes int       // suspensions since it was last forgiven
}

// pendingReport is a report naming a peer: relay did not carry from's
// relayed pings to peer.
type pendingReport struct {
	relay, from, peer crypto.PublicKey
}

// suspensions is the coordinator's record of reported relays. It keeps no
// clock and no lock: callers pass the time, and the hub's lock guards it.
type suspensions struct {
	policy  suspendPolicy
	relays  map[crypto.PublicKey]*suspension
	pending map[pendingReport]time.Time
}

func newSuspensions(p suspendPolicy) *suspensions {
	return &suspensions{policy: p, relays: make(map[crypto.PublicKey]*suspension), pending: make(map[pendingReport]time.Time)}
}

// report weighs a report that relay did not carry from's traffic: peer is
// the peer whose relayed pings went unanswered, nil when the evidence is
// from's own echoes. It returns the verdict and, when the relay is
// suspended now, until when and the how-manieth suspension in a row it is.
func (s *suspensions) report(relay, from crypto.PublicKey, peer *crypto.PublicKey, now time.Time) (v verdict, until time.Time, strikes int) {
	if _, ok := s.suspendedUntil(relay, now); ok {
		return verdictStale, time.Time{}, 0
	}
	s.expire(now)
	if peer != nil {
		mirror := pendingReport{relay: relay, from: *peer, peer: from}
		if _, ok := s.pending[mirror]; !ok {
			s.wait(pendingReport{relay: relay, from: from, peer: *peer}, now)
			return verdictUnconfirmed, time.Time{}, 0
		}
	}
	for k := range s.pending {
		if k.relay == relay {
			delete(s.pending, k)
		}
	}
	rec := s.relays[relay]
	if rec == nil {
		rec = &suspension{}
		s.relays[relay] = rec
	}
	rec.strikes++
	d := s.policy.base
	for i := 1; i < rec.strikes && d < s.policy.max; i++ {
		d *= 2
	}
	rec.until = now.Add(min(d, s.policy.max))
	return verdictSuspended, rec.until, rec.strikes
}

// wait keeps a report naming a peer for the window, within the reporter's
// bound: its oldest waiting report makes room.
func (s *suspensions) wait(r pendingReport, now time.Time) {
	if _, ok := s.pending[r]; !ok {
		var oldest pendingReport
		n := 0
		for k, t := range s.pending {
			if k.from != r.from {
				continue
			}
			if n == 0 || t.Before(s.pending[oldest]) {
				oldest = k
			}
			n++
		}
		if n >= s.policy.pending {
			delete(s.pending, oldest)
		}
	}
	s.pending[r] = now
}

// expire forgets reports past the window and the records of relays
// forgiven.
func (s *suspensions) expire(now time.Time) {
	for k, t := range s.pending {
		if now.Sub(t) > s.policy.window {
			delete(s.pending, k)
		}
	}
	for k, rec := range s.relays {
		if now.Sub(rec.until) >= s.policy.forgive {
			delete(s.relays, k)
		}
	}
}

// impose records a suspension another coordinator decided (relayshare.go):
// relay is suspended until until, the strikes-th time in a row.
func (s *suspensions) impose(relay crypto.PublicKey, until time.Time, strikes int) {
	rec := s.relays[relay]
	if rec == nil {
		rec = &suspension{}
		s.relays[relay] = rec
	}
	rec.until, rec.strikes = until, max(rec.strikes, strikes)
	for k := range s.pending {
		if k.relay == relay {
			delete(s.pending, k)
		}
	}
}

// suspendedUntil reports whether relay is suspended at now, and until when.
func (s *suspensions) suspendedUntil(relay crypto.PublicKey, now time.Time) (time.Time, bool) {
	rec := s.relays[relay]
	if rec == nil || !now.Before(rec.until) {
		return time.Time{}, false
	}
	return rec.until, true
}

// count is the number of relays suspended at now.
func (s *suspensions) count(now time.Time) int {
	n := 0
	for _, rec := range s.relays {
		if now.Before(rec.until) {
			n++
		}
	}
	return n
}

// forget drops what concerns a removed node.
func (s *suspensions) forget(key crypto.PublicKey) {
	delete(s.relays, key)
	for k := range s.pending {
		if k.relay == key || k.from == key || k.peer == key {
			delete(s.pending, k)
		}
	}
}

// reportOutcome is what a relay report led to, for the log.
type reportOutcome struct {
	verdict     verdict
	relay, from string // names
	until       time.Time
	strikes     int
	peer        string // the named peer's name; "" for echo evidence
}

// reportRelay weighs from's report that relay did not carry its traffic;
// peer names the peer whose relayed pings went unanswered (nil: from's own
// echoes). A report is weighed only while the relay is offered; one that
// suspends it pushes every peer map, and the relay its own record, at once.
func (h *hub) reportRelay(from, relay crypto.PublicKey, peer *crypto.PublicKey, now time.Time) reportOutcome {
	h.mu.Lock()
	defer h.mu.Unlock()
	var r reportOutcome
	reporter, n := h.nodes[from], h.nodes[relay]
	if reporter != nil {
		r.from = reporter.Name
	}
	if n == nil || reporter == nil || !h.offersRelay(n) {
		r.verdict = verdictStale
		return r
	}
	r.relay = n.Name
	if peer != nil {
		p := h.nodes[*peer]
		if p == nil || !h.peers(reporter, p) {
			r.verdict = verdictInvalid
			return r
		}
		r.peer = p.Name
	}
	r.verdict, r.until, r.strikes = h.susp.report(relay, from, peer, now)
	if r.verdict == verdictSuspended {
		h.changed(n)
		h.changedSelf(n)
	}
	return r
}

// relayRestored offers a relay again once its suspension is over.
func (h *hub) relayRestored(relay crypto.PublicKey, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nodes[relay]
	if n == nil {
		return false
	}
	if _, suspended := h.susp.suspendedUntil(relay, now); suspended {
		return false
	}
	h.changed(n)
	h.changedSelf(n)
	return true
}

// suspendedRelays is the number of relays suspended now.
func (h *hub) suspendedRelays() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.susp.count(time.Now())
}

// relayReport weighs a node's report within its budget, logs what it led
// to, and ends a suspension when it is due.
func (s *Server) relayReport(sess *session, relay crypto.PublicKey, peer *crypto.PublicKey) {
	if !sess.reports.Allow() {
		s.met.relayReports.WithLabelValues(string(verdictOverBudget)).Inc()
		s.nodeLog.Info("relay report over the node's budget; dropped", "node", sess.key.Short(), "relay", relay.Short())
		return
	}
	now := time.Now()
	r := s.hub.reportRelay(sess.key, relay, peer, now)
	if r.verdict == verdictUnconfirmed && s.confirmedElsewhere(store.RelayReport{Relay: relay, Reporter: sess.key, Peer: *peer, At: now}) {
		// Both ends reported it, each to its own coordinator: as good
		// as the mirror report here.
		named := r.peer
		r = s.hub.reportRelay(sess.key, relay, nil, now)
		r.peer = named
	}
	s.met.relayReports.WithLabelValues(string(r.verdict)).Inc()
	evidence := "its own echoes through the relay did not come back"
	if peer != nil {
		evidence = "its relayed pings to " + r.peer + " went unanswered"
	}
	switch r.verdict {
	case verdictSuspended:
		s.shareSuspension(store.RelaySuspension{Relay: relay, Until: r.until, Strikes: r.strikes})
		// At most one a relay per suspension: bounded without a budget.
		s.log.Warn("relay suspended: a node reported that it did not carry its traffic; every node moves to the next relay",
			"relay", r.relay, "key", relay.Short(), "reporter", r.from, "evidence", evidence,
			"for", r.until.Sub(now).Round(time.Second), "until", r.until.Format(time.RFC3339), "suspensions", r.strikes)
		s.restoreLater(relay, r.relay, r.until)
	case verdictUnconfirmed:
		s.nodeLog.Info("relay report waits for the peer's: a relay is suspended on a peer's evidence only when both ends report it",
			"relay", r.relay, "reporter", r.from, "evidence", evidence)
	case verdictInvalid:
		s.nodeLog.Info("relay report names no peer of the reporter; ignored", "reporter", r.from, "relay", relay.Short(), "peer", peer.Short())
	case verdictStale:
		s.nodeLog.Debug("relay report about a relay not offered (suspended already, offline or not designated); ignored", "node", sess.key.Short(), "relay", relay.Short())
	}
}

// restoreLater offers relay (named name) again when its suspension ends at
// until, unless the server is closed first.
func (s *Server) restoreLater(relay crypto.PublicKey, name string, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(time.Until(until), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed || s.restores[relay] != t {
			return
		}
		delete(s.restores, relay)
		if s.hub.relayRestored(relay, time.Now()) {
			s.log.Info("relay suspension over; the relay is offered again", "relay", name, "key", relay.Short())
		}
	})
	s.restores[relay] = t
}
