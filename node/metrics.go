package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.zx2c4.com/wireguard/device"

	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/path"
)

// The node's Prometheus metrics (meshnode_node_*), served on
// metrics_listen from a registry of the node's own. Nothing here keeps
// state: each scrape reads the counters the parts keep anyway (the Bind's,
// the path manager's, WireGuard's per peer, the filter's per rule).
//
// Label cardinality is bounded: a peer label names one of the first
// maxPeerSeries peers in name order, and the rest are summed under
// peer="(others)" (a name no node can have: names are DNS labels); a rule
// label names one of the first maxRuleSeries rules of the policy, the
// rest summed under rule="(others)", and rule="" counts packets no rule
// covers. Every other label takes a fixed set of values.
const (
	maxPeerSeries = 100
	maxRuleSeries = 100
	othersLabel   = "(others)"
	// metricsReadTimeout bounds a scraper's request: the listener serves
	// one local scraper, not the network.
	metricsReadTimeout = 10 * time.Second
)

func nodeDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName("meshnode", "node", name), help, labels, nil)
}

var (
	descPeers = nodeDesc("peers",
		"Peers by the path to them: direct_udp, direct_tcp (a punched TCP connection), relayed_udp, relayed_tcp (the coordinator's TCP relay), none.", "path")
	descBytes = nodeDesc("peer_bytes_total",
		"Bytes of WireGuard messages to and from each peer, by direction (rx: received, tx: sent); peer is its name, beyond 100 peers the rest are summed under (others).", "peer", "direction")
	descPackets = nodeDesc("peer_packets_total",
		"WireGuard messages to and from each peer (data, keepalives, handshakes), by direction.", "peer", "direction")
	descHandshakeAge = nodeDesc("peer_handshake_age_seconds",
		"Time since the last completed WireGuard handshake with each peer (none yet: no sample); a session lives 180 s and renews while traffic flows.", "peer")
	descRTT = nodeDesc("peer_rtt_seconds",
		"Smoothed round trip of each peer's direct path (no direct path: no sample).", "peer")
	descFallbacks = nodeDesc("relay_fallbacks_total",
		"Falls back to a relay, by kind: direct_lost (a direct path stopped answering; its peer goes relayed until another is found), tcp_relay (the UDP relay went silent and the TCP relay was opened).", "kind")
	descDropped = nodeDesc("dropped_packets_total",
		"Packets dropped, by reason: garbage (unrecognised UDP), unknown_source (WireGuard from an address no peer was seen at), no_path (to a peer with no path yet), queue_full (a relay stream's or auxiliary socket's queue), oversize (too big for the path, no ICMP error allowed), disco_rejected (forged, replayed or malformed discovery), punch_throttled (punch packets over budget, not sent), tcp_relay_queue_full, relay_control_queue_full, filter_malformed and filter_fragment (unreadable overlay packets the access policy could not judge).", "reason")
	descDenied = nodeDesc("filter_denied_packets_total",
		"Packets the access policy denied, by rule (its name; empty: no rule covers the addresses) and direction (in: from a peer, out: to one).", "rule", "direction")

	nodeDescs = []*prometheus.Desc{descPeers, descBytes, descPackets, descHandshakeAge, descRTT,
		descFallbacks, descDropped, descDenied}
)

// punchCounters are the path manager's counters of punching, each a
// metric without labels.
var punchCounters = []struct {
	desc *prometheus.Desc
	read func(*path.Stats) uint64
}{
	{nodeDesc("punch_rounds_total", "Hole-punching rounds begun towards peers without a direct path."),
		func(s *path.Stats) uint64 { return s.RoundsStarted.Load() }},
	{nodeDesc("punch_rounds_failed_total", "Hole-punching rounds that ended without a direct path."),
		func(s *path.Stats) uint64 { return s.RoundsFailed.Load() }},
	{nodeDesc("direct_paths_found_total", "Direct paths found (by punching, the birthday technique or a peer's ping)."),
		func(s *path.Stats) uint64 { return s.PathsFound.Load() }},
	{nodeDesc("birthday_attempts_total", "Birthday-technique attempts against hard NATs (many sockets against many probes)."),
		func(s *path.Stats) uint64 { return s.BirthdayAttempts.Load() }},
	{nodeDesc("birthday_wins_total", "Direct paths the birthday technique found."),
		func(s *path.Stats) uint64 { return s.BirthdayWins.Load() }},
}

// Metrics is the node's metrics collector. Describe needs no running node
// (nor an Engine: a nil one describes them too); Collect reads the parts
// Run built.
func (e *Engine) Metrics() prometheus.Collector { return nodeCollector{e} }

type nodeCollector struct{ e *Engine }

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range nodeDescs {
		ch <- d
	}
	for _, c := range punchCounters {
		ch <- c.desc
	}
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.e
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	e.collectPeers(ch, counter)

	ps, bs, rs, fs := &e.mgr.Stats, &e.bind.Stats, &e.relays.Stats, &e.filter.Stats
	for _, c := range punchCounters {
		counter(c.desc, c.read(ps))
	}
	counter(descFallbacks, ps.PathsLost.Load(), "direct_lost")
	counter(descFallbacks, rs.TCPFallbacks.Load(), "tcp_relay")
	for _, d := range []struct {
		reason string
		v      uint64
	}{
		{"garbage", bs.Garbage.Load()},
		{"unknown_source", bs.UnknownPeer.Load()},
		{"no_path", bs.NoRoute.Load()},
		{"queue_full", bs.QueueDropped.Load()},
		{"oversize", e.guard.Stats.Dropped.Load()},
		{"disco_rejected", ps.Rejected.Load()},
		{"punch_throttled", ps.PunchThrottled.Load()},
		{"tcp_relay_queue_full", rs.StreamDropped.Load()},
		{"relay_control_queue_full", rs.ControlDropped.Load()},
		{"filter_malformed", fs.Malformed.Load()},
		{"filter_fragment", fs.Fragments.Load()},
	} {
		counter(descDropped, d.v, d.reason)
	}

	st := e.filter.Status()
	rules := make([]string, len(st.Denied))
	for i, d := range st.Denied {
		rules[i] = d.Rule
	}
	labels, order := seriesLabels(rules, maxRuleSeries)
	denied := make(map[string]*[2]uint64, len(order))
	for _, l := range order {
		denied[l] = new([2]uint64)
	}
	for i, d := range st.Denied {
		denied[labels[i]][0] += d.In
		denied[labels[i]][1] += d.Out
	}
	for _, l := range order {
		counter(descDenied, denied[l][0], l, "in")
		counter(descDenied, denied[l][1], l, "out")
	}
	counter(descDenied, st.NoRule.In, "", "in")
	counter(descDenied, st.NoRule.Out, "", "out")
}

// seriesLabels bounds a label's values: each of the first max distinct
// names is its own label, every other name (and a repeat, and the names
// "" and othersLabel, which other series use) is othersLabel.
// It returns each name's label and the labels in first-seen order.
func seriesLabels(names []string, max int) (labels, order []string) {
	labels = make([]string, len(names))
	own := make(map[string]bool, min(len(names), max))
	others := false
	for i, n := range names {
		switch {
		case n == "" || n == othersLabel || own[n] || len(own) >= max:
			labels[i] = othersLabel
			if !others {
				others = true
				order = append(order, othersLabel)
			}
		default:
			own[n] = true
			labels[i] = n
			order = append(order, n)
		}
	}
	return labels, order
}

// peerTotals are one peer label's counters.
type peerTotals struct{ rxBytes, txBytes, rxPackets, txPackets uint64 }

// collectPeers exports the peers by path and the per-peer series, in
// name order (seriesLabels bounds them).
func (e *Engine) collectPeers(ch chan<- prometheus.Metric, counter func(*prometheus.Desc, uint64, ...string)) {
	now := time.Now()
	stats := e.wgStats()
	peers := e.peers.All()
	slices.SortFunc(peers, func(a, b wire.Node) int { return cmp.Compare(a.Name, b.Name) })
	names := make([]string, len(peers))
	for i, n := range peers {
		names[i] = n.Name
	}
	labels, order := seriesLabels(names, maxPeerSeries)
	totals := make(map[string]*peerTotals, len(order))
	for _, l := range order {
		totals[l] = new(peerTotals)
	}
	byKind := make(map[wire.PathKind]int)
	for i, n := range peers {
		pp := e.mgr.Path(n.PublicKey)
		byKind[pp.Kind]++
		s := stats[n.PublicKey]
		t := totals[labels[i]]
		t.rxBytes += s.rx
		t.txBytes += s.tx
		if p := e.dev.LookupPeer(device.NoisePublicKey(n.PublicKey)); p != nil {
			rx, tx := p.Packets()
			t.rxPackets += rx
			t.txPackets += tx
		}
		if labels[i] == othersLabel {
			continue
		}
		if !s.handshake.IsZero() {
			ch <- prometheus.MustNewConstMetric(descHandshakeAge, prometheus.GaugeValue, now.Sub(s.handshake).Seconds(), n.Name)
		}
		if pp.Latency > 0 {
			ch <- prometheus.MustNewConstMetric(descRTT, prometheus.GaugeValue, pp.Latency.Seconds(), n.Name)
		}
	}
	for _, l := range order {
		exportPeer(counter, l, *totals[l])
	}
	for _, k := range wire.PathKinds {
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(byKind[k]), k.String())
	}
}

func exportPeer(counter func(*prometheus.Desc, uint64, ...string), name string, t peerTotals) {
	counter(descBytes, t.rxBytes, name, "rx")
	counter(descBytes, t.txBytes, name, "tx")
	counter(descPackets, t.rxPackets, name, "rx")
	counter(descPackets, t.txPackets, name, "tx")
}

// listenMetrics opens metrics_listen (nil when off), before the node
// starts anything, so a port in use fails the start.
func (e *Engine) listenMetrics() (net.Listener, error) {
	if e.cfg.MetricsListen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", e.cfg.MetricsListen)
	if err != nil {
		return nil, fmt.Errorf("metrics_listen %q: %w (set it to a free address, or to \"\" for no metrics)", e.cfg.MetricsListen, err)
	}
	return ln, nil
}

// serveMetrics serves c's metrics, with the Go runtime's and the process's
// (go_*, process_*), from a registry of their own at wire.PathMetrics on ln
// until ctx ends.
func serveMetrics(ctx context.Context, wg *sync.WaitGroup, ln net.Listener, c prometheus.Collector, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := reg.Register(c); err != nil {
		ln.Close()
		return fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(wire.PathMetrics, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: metricsReadTimeout, ReadTimeout: metricsReadTimeout}
	log.Info("serving metrics", "addr", ln.Addr().String(), "path", wire.PathMetrics)
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener", "err", err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		srv.Close()
	})
	return nil
}
