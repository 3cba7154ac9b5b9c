package node

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/node/localapi"
	"github.com/meshnode/meshnode/node/path"
	"github.com/meshnode/meshnode/node/relayclient"
)

// Status implements localapi.Backend.
func (e *Engine) Status() localapi.Status {
	disc := e.disc.result()
	peers := []localapi.Peer{}
	own := e.state.Self.Addresses
	for _, n := range e.peers.All() {
		via, exit := e.peerRoutes(n)
		var denied []netip.Prefix
		for _, p := range via {
			if !e.filter.ReachRoute(own, p) {
				denied = append(denied, p)
			}
		}
		peers = append(peers, localapi.Peer{
			Name: n.Name, Addresses: n.Addresses, PublicKey: n.PublicKey.String(), Online: n.Online,
			Routes: via, ExitNodeOption: exit, RoutesDenied: denied,
			Reach: e.filter.Reach(own, n.Addresses), ReachedBy: e.filter.Reach(n.Addresses, own),
		})
	}
	stats := e.wgStats()
	for i := range peers {
		k, _ := crypto.ParsePublicKey(peers[i].PublicKey)
		pp := e.mgr.Path(k)
		peers[i].Path = pp.Path
		peers[i].Candidates = pp.Candidates
		switch {
		case pp.Via != "":
			peers[i].Endpoint = pp.Via
		case pp.Endpoint.IsValid():
			peers[i].Endpoint = pp.Endpoint.String()
		}
		peers[i].LatencyMs = float64(pp.Latency.Microseconds()) / 1000
		peers[i].MTU, peers[i].PathMTU = pp.MTU, pp.PathMTU
		if s, ok := stats[k]; ok {
			peers[i].RxBytes, peers[i].TxBytes = s.rx, s.tx
			if !s.handshake.IsZero() {
				peers[i].LastHandshake = s.handshake.UTC().Format(time.RFC3339)
			}
		}
	}
	self := localapi.Self{
		Name:      e.currentName(),
		Addresses: e.state.Self.Addresses,
		PublicKey: e.pub.String(),
		Interface: e.tunName(),
		Endpoints: []string{},
		NAT:       localapi.NAT{Mapping: disc.Mapping.Behaviour, PortAlloc: disc.Mapping.PortAlloc, IdleKeepalive: e.mgr.IdleKeepalive().String()},
		Tags:      e.selfRecord().Tags,
		Relay:     e.relayFeed.serving(),
	}
	if disc.Mapping.Public.IsValid() {
		self.NAT.Public = disc.Mapping.Public.String()
	}
	if disc.Mapping6.Public.IsValid() {
		self.NAT.Public6, self.NAT.Mapping6 = disc.Mapping6.Public.String(), disc.Mapping6.Behaviour
	}
	self.NAT.Filtering = e.disc.natFiltering()
	if l := e.disc.mappingLifetime(); l > 0 {
		self.NAT.MappingLifetime = l.String()
	}
	for _, ep := range disc.Endpoints {
		self.Endpoints = append(self.Endpoints, ep.Addr.String())
	}
	bs, ps, gs, fs := &e.bind.Stats, &e.mgr.Stats, &e.guard.Stats, &e.filter.Stats
	rst, exit := e.routesStatus()
	st := localapi.Status{
		Self:        self,
		Policy:      e.policyStatus(),
		Peers:       peers,
		Routes:      rst,
		ExitNode:    exit,
		Coordinator: e.coordinatorStatus(),
		DNS:         e.dnsStatus(),
		Counters: map[string]uint64{
			"udp_garbage":           bs.Garbage.Load(),
			"udp_unknown_source":    bs.UnknownPeer.Load(),
			"send_no_path":          bs.NoRoute.Load(),
			"relayed_in":            bs.RelayedIn.Load(),
			"relayed_out":           bs.RelayedOut.Load(),
			"queue_dropped":         bs.QueueDropped.Load(),
			"gso_batches_split":     bs.BatchesSplit.Load(),
			"handshakes_held":       bs.HandshakesHeld.Load(),
			"handshakes_resent":     bs.HandshakesResent.Load(),
			"handshakes_asked":      bs.HandshakesAsked.Load(),
			"mtu_syn_clamped":       gs.Clamped.Load(),
			"mtu_too_big_sent":      gs.Refused.Load(),
			"mtu_oversize_sent":     gs.Forwarded.Load(),
			"mtu_oversize_dropped":  gs.Dropped.Load(),
			"disco_rejected":        ps.Rejected.Load(),
			"paths_found":           ps.PathsFound.Load(),
			"paths_lost":            ps.PathsLost.Load(),
			"disco_unvouched":       ps.Unvouched.Load(),
			"birthday_attempts":     ps.BirthdayAttempts.Load(),
			"birthday_wins":         ps.BirthdayWins.Load(),
			"punch_primes":          ps.PrimesSent.Load(),
			"punch_ready_sent":      ps.ReadySent.Load(),
			"punch_ready_received":  ps.ReadyReceived.Load(),
			"offline_notices_sent":  ps.OfflineSent.Load(),
			"offline_notices_heard": ps.OfflineReceived.Load(),
			"coordinator_checks":    e.stream.Stats.Checks.Load(),
			"path_events_dropped":   ps.EventsDropped.Load(),
			"relay_tcp_dropped":     e.relays.Stats.StreamDropped.Load(),
			"relay_ctl_dropped":     e.relays.Stats.ControlDropped.Load(),
			"relay_checks":          e.relays.Stats.Checks.Load(),
			"relay_reports":         e.relays.Stats.Reports.Load(),
			"relay_reports_dropped": e.relays.Stats.ReportsDropped.Load(),
			"coordinator_sent":      e.stream.Stats.Sent.Load(),
			"coordinator_coalesced": e.stream.Stats.Coalesced.Load(),
			"coordinator_dropped":   e.stream.Stats.Dropped.Load(),
			"filter_denied_in":      fs.DeniedIn.Load(),
			"filter_denied_out":     fs.DeniedOut.Load(),
			"filter_malformed":      fs.Malformed.Load(),
			"filter_fragments":      fs.Fragments.Load(),
			"filter_flows_evicted":  fs.Evicted.Load(),
			"filter_flows_revoked":  fs.Revoked.Load(),
		},
	}
	if e.mapCache != nil {
		st.Counters["peer_map_writes"] = e.mapCache.Writes.Load()
		st.Counters["peer_map_write_failures"] = e.mapCache.Failures.Load()
	}
	return st
}

// policyStatus is the access policy in force and what it denied.
func (e *Engine) policyStatus() localapi.Policy {
	st := e.filter.Status()
	p := localapi.Policy{
		Active: st.Active, Version: st.Version, Rules: st.Rules, Flows: st.Flows, MaxFlows: st.MaxFlows,
		Denied:       make([]localapi.RuleDenied, len(st.Denied)),
		DeniedNoRule: localapi.RuleDenied{In: st.NoRule.In, Out: st.NoRule.Out},
	}
	for i, d := range st.Denied {
		p.Denied[i] = localapi.RuleDenied{Rule: d.Rule, In: d.In, Out: d.Out}
	}
	return p
}

// Ping implements localapi.Backend: peer is a name, an overlay address or a key.
func (e *Engine) Ping(ctx context.Context, peer string) (localapi.PingReply, error) {
	k, name, err := e.resolvePeer(peer)
	if err != nil {
		return localapi.PingReply{}, err
	}
	r, err := e.mgr.Ping(ctx, k)
	if err != nil {
		return localapi.PingReply{}, err
	}
	// A relayed or TCP path is named by its Via; a direct UDP one by address.
	endpoint := r.Endpoint.String()
	if via := e.mgr.Path(k).Via; via != "" {
		endpoint = via
	}
	return localapi.PingReply{
		Peer:      name,
		Path:      r.Path,
		Endpoint:  endpoint,
		LatencyMs: float64(r.RTT.Microseconds()) / 1000,
	}, nil
}

func (e *Engine) resolvePeer(s string) (crypto.PublicKey, string, error) {
	name := e.peerName(s)
	ip, ipErr := netip.ParseAddr(s)
	key, keyErr := crypto.ParsePublicKey(s)
	for _, n := range e.peers.All() {
		k := n.PublicKey
		if strings.EqualFold(n.Name, name) || (keyErr == nil && k == key) {
			return k, n.Name, nil
		}
		for _, a := range n.Addresses {
			if ipErr == nil && a == ip {
				return k, n.Name, nil
			}
		}
	}
	return crypto.PublicKey{}, "", fmt.Errorf("no peer %q: give a peer's name (NAME or NAME.<domain>), overlay address or public key (see 'meshnode status')", s)
}

// peerStats are WireGuard's counters for one peer.
type peerStats struct {
	rx, tx    uint64
	handshake time.Time
}

// wgStats reads wireguard-go's UAPI dump (keys in hex).
func (e *Engine) wgStats() map[crypto.PublicKey]peerStats {
	out := make(map[crypto.PublicKey]peerStats)
	dump, err := e.dev.IpcGet()
	if err != nil {
		return out
	}
	var cur *peerStats
	var sec, nsec int64
	flush := func(k crypto.PublicKey) {
		if cur != nil && sec > 0 {
			cur.handshake = time.Unix(sec, nsec)
		}
		if cur != nil {
			out[k] = *cur
		}
	}
	var key crypto.PublicKey
	sc := bufio.NewScanner(strings.NewReader(dump))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "public_key":
			flush(key)
			cur, sec, nsec = &peerStats{}, 0, 0
			if raw, err := hex.DecodeString(v); err == nil && len(raw) == crypto.KeyLen {
				key = crypto.PublicKey(raw)
			}
		case "rx_bytes":
			if cur != nil {
				cur.rx, _ = strconv.ParseUint(v, 10, 64)
			}
		case "tx_bytes":
			if cur != nil {
				cur.tx, _ = strconv.ParseUint(v, 10, 64)
			}
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	flush(key)
	return out
}

// PeerPath returns a peer's path, for tests and tools.
func (e *Engine) PeerPath(k crypto.PublicKey) path.PeerPath { return e.mgr.Path(k) }

// PathStats are the path manager's counters.
func (e *Engine) PathStats() *path.Stats { return &e.mgr.Stats }

// RelayStatus is what the relay client is doing: the relay chosen, bound,
// and when a relay node last carried this node's echo.
func (e *Engine) RelayStatus() relayclient.Status { return e.relays.Status() }

// coordinatorStatus is the stream's state: the coordinator connected to
// (the last one used while down) and how many the node knows.
func (e *Engine) coordinatorStatus() localapi.Coordinator {
	e.stateMu.Lock()
	c := localapi.Coordinator{URL: e.saved.CoordinatorURL, Known: len(e.saved.coordinators())}
	e.stateMu.Unlock()
	c.CachedMap = e.cachedMapStatus()
	if e.stream == nil {
		return c
	}
	url, known := e.stream.Current()
	if url != "" {
		c.URL, c.Connected = url, true
	}
	c.Known = known
	return c
}
