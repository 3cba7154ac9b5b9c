package coordinator

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Nodes report how they reach each peer (wire.MsgPaths): on change, at
// most every wire.PathReportGap. The coordinator keeps each online node's
// latest report in memory, and summarizes them for its metrics: how many
// pairs are direct, how many relayed and why. On a shared database it
// also records them (pathshare.go), so that every coordinator's web page
// shows the whole mesh.
//
// A report is hostile input: its size is bounded by wire.ParsePathReport
// (at most wire.MaxPathReportPeers entries), its rate by the session's
// budget, and its entries naming nodes that are not the reporter's peers
// are dropped, so a node can describe only pairs it is part of.

// Verdicts of a path report (meshnode_coordinator_path_reports_total).
const (
	pathsAccepted   = "accepted"    // stored whole
	pathsPartial    = "partial"     // stored without the entries naming non-peers
	pathsInvalid    = "invalid"     // malformed: refused, and the stream closed
	pathsOverBudget = "over_budget" // beyond the node's budget: dropped
)

// nodePaths is one node's latest report.
type nodePaths struct {
	sess    *session // the stream it came on: a replaced stream's report is not kept
	at      time.Time
	relay   *crypto.PublicKey // the relay node of its wire.ViaRelayNode entries
	entries []wire.PathEntry
}

// pathTable holds the latest report of each online node, and the latest
// path changes (the web page's history): each a change of a node's path
// to a peer between two of its reports on one stream. Its lock is a leaf:
// never held while the hub's is taken.
type pathTable struct {
	mu      sync.Mutex
	reports map[crypto.PublicKey]nodePaths
	changes []store.PathChange // oldest first, at most store.MaxPathChanges
	// share is what waits to be recorded in a shared database; nil
	// when the database is not shared.
	share *pathShare
}

func newPathTable(shared bool) *pathTable {
	t := &pathTable{reports: make(map[crypto.PublicKey]nodePaths)}
	if shared {
		t.share = newPathShare()
	}
	return t
}

// set keeps key's report, and the changes since its previous one on the
// same stream (a new stream's first report starts afresh).
func (t *pathTable) set(key crypto.PublicKey, np nodePaths) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if prev, ok := t.reports[key]; ok && prev.sess == np.sess {
		was := make(map[crypto.PublicKey]wire.PathKind, len(prev.entries))
		for _, e := range prev.entries {
			was[e.Peer] = e.Kind
		}
		for _, e := range np.entries {
			if k, ok := was[e.Peer]; ok && k != e.Kind {
				c := store.PathChange{At: np.at, From: key, Peer: e.Peer, Was: k, Now: e.Kind}
				t.changes = appendChange(t.changes, c)
				if t.share != nil {
					t.share.changed(c)
				}
			}
		}
	}
	t.reports[key] = np
	if t.share != nil {
		t.share.touch(key)
	}
}

// appendChange appends c, dropping the oldest beyond store.MaxPathChanges.
func appendChange(changes []store.PathChange, c store.PathChange) []store.PathChange {
	changes = append(changes, c)
	if over := len(changes) - store.MaxPathChanges; over > 0 {
		changes = append(changes[:0], changes[over:]...)
	}
	return changes
}

// report returns key's report, if it has one.
func (t *pathTable) report(key crypto.PublicKey) (nodePaths, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	np, ok := t.reports[key]
	return np, ok
}

// history returns the latest path changes, oldest first.
func (t *pathTable) history() []store.PathChange {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.changes)
}

// forget drops the report that came on sess, when its stream ended.
func (t *pathTable) forget(key crypto.PublicKey, sess *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reports[key].sess == sess {
		delete(t.reports, key)
		if t.share != nil {
			t.share.drop(key)
		}
	}
}

// pathSummary counts pairs of nodes by their path.
type pathSummary struct {
	reporting int                   // nodes with a report
	pairs     map[wire.PathKind]int // each pair once, by its path
	relayed   map[wire.RelayWhy]int // the relayed pairs, by why
}

// pairPath is a pair's path, from the report chosen for it.
type pairPath struct {
	at    time.Time
	from  crypto.PublicKey  // the reporter
	relay *crypto.PublicKey // the reporter's relay node
	entry wire.PathEntry    // the reporter's entry for the other node
}

// reportOf is one node's report, as pickPairs reads it.
type reportOf struct {
	key crypto.PublicKey
	np  nodePaths
}

// snapshot returns every node's report.
func (t *pathTable) snapshot() []reportOf {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]reportOf, 0, len(t.reports))
	for k, np := range t.reports {
		out = append(out, reportOf{k, np})
	}
	return out
}

// pairs picks each pair's path from the reports this coordinator holds;
// it also returns how many nodes reported.
func (t *pathTable) pairs() (map[[2]crypto.PublicKey]pairPath, int) {
	reports := t.snapshot()
	return pickPairs(reports), len(reports)
}

// pickPairs picks each pair's path once: from the newer of its two nodes'
// reports (the lower key's on a tie), or from the one that reported it.
func pickPairs(reports []reportOf) map[[2]crypto.PublicKey]pairPath {
	pairs := make(map[[2]crypto.PublicKey]pairPath)
	for _, r := range reports {
		from, np := r.key, r.np
		for _, e := range np.entries {
			k := [2]crypto.PublicKey{from, e.Peer}
			if bytes.Compare(from[:], e.Peer[:]) > 0 {
				k = [2]crypto.PublicKey{e.Peer, from}
			}
			cur, ok := pairs[k]
			newer := !ok || np.at.After(cur.at) || (np.at.Equal(cur.at) && bytes.Compare(from[:], cur.from[:]) < 0)
			if newer {
				pairs[k] = pairPath{at: np.at, from: from, relay: np.relay, entry: e}
			}
		}
	}
	return pairs
}

// summary counts each pair once, by the path pairs picks.
func (t *pathTable) summary() pathSummary {
	pairs, reporting := t.pairs()
	sum := pathSummary{reporting: reporting, pairs: make(map[wire.PathKind]int), relayed: make(map[wire.RelayWhy]int)}
	for _, p := range pairs {
		sum.pairs[p.entry.Kind]++
		if p.entry.Kind.Relayed() {
			sum.relayed[p.entry.Why]++
		}
	}
	return sum
}

// pathReport stores a node's report, within its budget, without the
// entries naming nodes that are not its peers. A malformed one closes the
// stream, as any malformed message does.
func (s *Server) pathReport(sess *session, m wire.StreamMsg) {
	if !sess.paths.Allow() {
		s.met.pathReports.WithLabelValues(pathsOverBudget).Inc()
		s.nodeLog.Info("path report over the node's budget; dropped", "node", sess.key.Short())
		return
	}
	entries, err := wire.ParsePathReport(m.Paths)
	if err == nil && m.RelayKey == nil && viaRelayNode(entries) {
		err = errRelayKeyMissing
	}
	if err != nil {
		s.met.pathReports.WithLabelValues(pathsInvalid).Inc()
		sess.stop(websocket.StatusPolicyViolation, "bad path report",
			&wire.StreamMsg{Type: wire.MsgError, Code: wire.ErrCodeBadRequest, Error: err.Error()})
		return
	}
	relay := m.RelayKey
	kept, ok := s.hub.ofPeers(sess, entries, &relay)
	if !ok {
		return // the stream was replaced or the node removed: nothing to keep
	}
	verdict := pathsAccepted
	if len(kept) < len(entries) {
		verdict = pathsPartial
		s.nodeLog.Info("path report names nodes that are not the reporter's peers; those entries dropped",
			"node", sess.key.Short(), "dropped", len(entries)-len(kept))
	}
	s.met.pathReports.WithLabelValues(verdict).Inc()
	s.paths.set(sess.key, nodePaths{sess: sess, at: time.Now(), relay: relay, entries: kept})
}

var errRelayKeyMissing = errors.New("path report: an entry goes through a relay node, but relay_key is missing")

func viaRelayNode(entries []wire.PathEntry) bool {
	for _, e := range entries {
		if e.Via == wire.ViaRelayNode {
			return true
		}
	}
	return false
}

// ofPeers returns the entries that name peers of sess's node, under one
// hold of the lock, and clears *relay when it names no node; ok is false
// when sess is no longer the node's stream.
func (h *hub) ofPeers(sess *session, entries []wire.PathEntry, relay **crypto.PublicKey) (kept []wire.PathEntry, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	self := h.nodes[sess.key]
	if self == nil || h.sessions[sess.key] != sess {
		return nil, false
	}
	if *relay != nil && h.nodes[**relay] == nil {
		*relay = nil
	}
	kept = make([]wire.PathEntry, 0, len(entries))
	for _, e := range entries {
		if n := h.nodes[e.Peer]; n != nil && n != self && h.peers(self, n) {
			kept = append(kept, e)
		}
	}
	return kept, true
}

// pathCollector exports the path summary, computed once per scrape.
type pathCollector struct {
	paths                     *pathTable
	pairs, relayed, reporting *prometheus.Desc
}

func newPathCollector(paths *pathTable) *pathCollector {
	name := func(n string) string { return prometheus.BuildFQName("meshnode", "coordinator", n) }
	return &pathCollector{
		paths: paths,
		pairs: prometheus.NewDesc(name("path_pairs"),
			"Pairs of online nodes by the path between them (direct_udp, direct_tcp, relayed_udp, relayed_tcp, none), from the nodes' latest path reports: each pair once.",
			[]string{"path"}, nil),
		relayed: prometheus.NewDesc(name("relayed_pairs"),
			"Relayed pairs by why, as the reporting node knows it: no_candidates, udp_blocked, hard_nats, punch_failed, unknown.",
			[]string{"reason"}, nil),
		reporting: prometheus.NewDesc(name("path_reporting_nodes"),
			"Online nodes whose path report the coordinator holds.", nil, nil),
	}
}

func (c *pathCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pairs
	ch <- c.relayed
	ch <- c.reporting
}

func (c *pathCollector) Collect(ch chan<- prometheus.Metric) {
	sum := c.paths.summary()
	for _, k := range wire.PathKinds {
		ch <- prometheus.MustNewConstMetric(c.pairs, prometheus.GaugeValue, float64(sum.pairs[k]), k.String())
	}
	for _, w := range wire.RelayWhys {
		ch <- prometheus.MustNewConstMetric(c.relayed, prometheus.GaugeValue, float64(sum.relayed[w]), w.String())
	}
	ch <- prometheus.MustNewConstMetric(c.reporting, prometheus.GaugeValue, float64(sum.reporting))
}
