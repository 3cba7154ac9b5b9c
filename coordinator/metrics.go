package coordinator

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/internal/admit"
)

// metrics are the coordinator's Prometheus metrics (meshnode_coordinator_*).
type metrics struct {
	registrations *prometheus.CounterVec
	stun          *prometheus.CounterVec
	rendezvous    prometheus.Counter
	messages      *prometheus.CounterVec
	// limited counts what the stream limits held back, by limited*.
	limited        *prometheus.CounterVec
	endpointWrites prometheus.Counter
	presenceWrites prometheus.Counter
	preAuthClosed  *prometheus.CounterVec
	unobserved     prometheus.Counter
	// relayReports counts relay reports by verdict (relayhealth.go).
	relayReports *prometheus.CounterVec
	// pathReports counts path reports by verdict (paths.go).
	pathReports *prometheus.CounterVec
	// welcomes counts welcomes by what they carry (resume.go).
	welcomes *prometheus.CounterVec
}

// Labels of the limited metric.
const (
	limitedEndpoints  = "endpoints_coalesced"    // a report replaced before it was applied
	limitedRendezvous = "rendezvous_over_budget" // a request dropped
	limitedCues       = "cue_coalesced"          // a cue replaced before it went out
)

func newMetrics(reg prometheus.Registerer, h *hub, paths *pathTable, gate *admit.Gate, st store.Store) (*metrics, error) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "meshnode", Subsystem: "coordinator", Name: name, Help: help}
	}
	m := &metrics{
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts(opts("registrations_total",
			"Registration requests by result: ok or the error code.")), []string{"result"}),
		stun: prometheus.NewCounterVec(prometheus.CounterOpts(opts("stun_requests_total",
			"UDP packets received on the STUN sockets by result.")), []string{"result"}),
		rendezvous: prometheus.NewCounter(prometheus.CounterOpts(opts("rendezvous_total",
			"Rendezvous performed: both nodes told to punch."))),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts(opts("stream_messages_total",
			"Stream messages sent and received, by type.")), []string{"type"}),
		welcomes: prometheus.NewCounterVec(prometheus.CounterOpts(opts("welcomes_total",
			"Welcomes sent, by map: full, or resumed (what changed since the map the node held).")), []string{"map"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts(opts("stream_limited_total",
			"Stream messages the per-node limits held back: endpoint reports and punch cues replaced by newer ones, rendezvous requests over budget.")), []string{"reason"}),
		endpointWrites: prometheus.NewCounter(prometheus.CounterOpts(opts("endpoint_writes_total",
			"Endpoint reports stored (each a synced write and a push to every peer)."))),
		presenceWrites: prometheus.NewCounter(prometheus.CounterOpts(opts("presence_writes_total",
			"Last-seen times stored (synced writes), at most one per node per 10 s."))),
		preAuthClosed: prometheus.NewCounterVec(prometheus.CounterOpts(opts("preauth_closed_total",
			"HTTPS connections closed before they authenticated, by reason: per_source, evicted, timeout, gone (the client had left while it waited to be accepted).")), []string{"reason"}),
		unobserved: prometheus.NewCounter(prometheus.CounterOpts(opts("candidates_held_total",
			"Public candidates nodes reported that the coordinator had not seen them use (no authenticated STUN request or stream from that address): held back from peers."))),
		relayReports: prometheus.NewCounterVec(prometheus.CounterOpts(opts("relay_reports_total",
			"Reports that a relay node did not carry a node's traffic, by verdict: suspended, unconfirmed (waits for the peer's report), stale, invalid, over_budget.")), []string{"verdict"}),
		pathReports: prometheus.NewCounterVec(prometheus.CounterOpts(opts("path_reports_total",
			"Path reports from nodes by verdict: accepted, partial (entries naming non-peers dropped), invalid (the stream closed), over_budget (dropped).")), []string{"verdict"}),
	}
	preAuth := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("preauth_connections",
		"HTTPS connections that have not authenticated (registrations, handshakes, streams and relay sockets before their proof).")),
		func() float64 { return float64(gate.Pending()) })
	nodes := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("nodes", "Registered nodes.")), func() float64 {
		n, _ := h.counts()
		return float64(n)
	})
	online := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("nodes_online", "Nodes with a connected stream.")), func() float64 {
		_, n := h.counts()
		return float64(n)
	})
	suspended := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("relays_suspended",
		"Relay nodes whose designation is suspended because a node reported that they did not carry its traffic.")),
		func() float64 { return float64(h.suspendedRelays()) })
	policyVersion := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("policy_version",
		"Version of the access policy applied (0: none was ever set); a version that removed the policy counts too.")),
		func() float64 { return float64(h.policyVersion()) })
	writes := prometheus.NewCounterFunc(prometheus.CounterOpts(opts("store_write_transactions_total",
		"Write transactions begun on the database, one at a time under its write lock: registrations, endpoint and presence writes, admin changes.")),
		func() float64 { return float64(st.WriteTransactions()) })
	for _, c := range []prometheus.Collector{m.registrations, m.stun, m.rendezvous, m.messages, m.welcomes, m.limited, m.endpointWrites, m.presenceWrites, m.preAuthClosed, m.unobserved, m.relayReports, m.pathReports, newPathCollector(paths), preAuth, nodes, online, suspended, policyVersion, writes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register coordinator metrics: %w", err)
		}
	}
	return m, nil
}
