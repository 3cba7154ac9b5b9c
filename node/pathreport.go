package node

import (
	"bytes"
	"context"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/discovery"
	"github.com/meshnode/meshnode/node/path"
)

// talkedWindow is how recently a peer must have completed a WireGuard
// handshake to be reported without a direct path: a session lives
// RejectAfterTime (180 s, the WireGuard paper §6.1) and is renewed while
// traffic flows, so an older handshake means the pair went quiet.
const talkedWindow = device.RejectAfterTime

// reportPaths tells the coordinator how this node reaches each peer it
// talks to (wire.MsgPaths): when a path's kind, relay or reason changes,
// within wire.PathReportGap (or Options.PathReportGap); when only RTTs
// moved, at most every wire.PathReportEvery; and in full after each
// welcome (the coordinator
// forgets a report with its stream). It reads the path manager's state
// from its own goroutine, never from a packet path.
func (e *Engine) reportPaths(ctx context.Context, welcomed <-chan struct{}) {
	gap := wire.PathReportGap
	if e.opts.PathReportGap > 0 {
		gap = e.opts.PathReportGap
	}
	t := time.NewTicker(gap)
	defer t.Stop()
	var sent pathReport
	var sentAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-welcomed:
			sent, sentAt = pathReport{}, time.Time{}
		case <-t.C:
		}
		if !e.stream.Connected() {
			continue
		}
		now := time.Now()
		r := e.pathReport(now)
		if sentAt.IsZero() || r.differs(sent) || (!r.equal(sent) && now.Sub(sentAt) >= wire.PathReportEvery) {
			msg := wire.StreamMsg{Type: wire.MsgPaths, Paths: wire.AppendPathReport(nil, r.entries), RelayKey: r.relay}
			if err := e.stream.Send(msg); err != nil {
				e.log.Debug("path report not sent", "err", err)
				continue
			}
			sent, sentAt = r, now
		}
	}
}

// pathReport is what a report says, its entries in key order.
type pathReport struct {
	entries []wire.PathEntry
	relay   *crypto.PublicKey
}

// differs reports a change that is more than RTTs.
func (r pathReport) differs(o pathReport) bool {
	if (r.relay == nil) != (o.relay == nil) || (r.relay != nil && *r.relay != *o.relay) {
		return true
	}
	return !slices.EqualFunc(r.entries, o.entries, func(a, b wire.PathEntry) bool {
		a.RTT, b.RTT = 0, 0
		return a == b
	})
}

func (r pathReport) equal(o pathReport) bool {
	return !r.differs(o) && slices.Equal(r.entries, o.entries)
}

// pathReport gathers the entries: every peer with a direct path, and the
// others that completed a handshake within talkedWindow; those with a
// path first when there are more than wire.MaxPathReportPeers.
func (e *Engine) pathReport(now time.Time) pathReport {
	stats := e.wgStats()
	disc := e.disc.result()
	relayStatus := e.relays.Status()
	var r pathReport
	for _, n := range e.peers.All() {
		pp := e.mgr.Path(n.PublicKey)
		direct := pp.Kind == wire.PathDirectUDP || pp.Kind == wire.PathDirectTCP
		if s := stats[n.PublicKey]; !direct && now.Sub(s.handshake) > talkedWindow {
			continue
		}
		entry := wire.PathEntry{Peer: n.PublicKey, Kind: pp.Kind, RTT: pp.Latency}
		switch pp.Kind {
		case wire.PathRelayedTCP:
			entry.Via = wire.ViaCoordinator
		case wire.PathRelayedUDP:
			entry.Via = wire.ViaCoordinator
			if k := relayStatus.Relay.Key; !relayStatus.Coordinator {
				entry.Via, r.relay = wire.ViaRelayNode, &k
			}
		}
		if pp.Kind.Relayed() {
			entry.Why = relayWhy(pp, disc, n.NAT)
		}
		r.entries = append(r.entries, entry)
	}
	slices.SortFunc(r.entries, func(a, b wire.PathEntry) int {
		if pa, pb := a.Kind != wire.PathNone, b.Kind != wire.PathNone; pa != pb {
			if pa {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.Peer[:], b.Peer[:])
	})
	if len(r.entries) > wire.MaxPathReportPeers {
		r.entries = r.entries[:wire.MaxPathReportPeers]
	}
	return r
}

// relayWhy is this node's best knowledge of why a relayed path is not
// direct: the peer gave nothing to punch, this node's UDP gets no STUN
// answer, both NATs are hard (wire.NATInfo.Hard), or rounds failed.
func relayWhy(pp path.PeerPath, own discovery.Result, peerNAT *wire.NATInfo) wire.RelayWhy {
	ownNAT := own.Mapping.NATInfo()
	switch {
	case pp.Candidates == 0:
		return wire.WhyNoCandidates
	case !own.Mapping.Public.IsValid() && !own.Mapping6.Public.IsValid():
		return wire.WhyUDPBlocked
	case peerNAT != nil && peerNAT.Hard() && ownNAT.Hard():
		return wire.WhyHardNATs
	case pp.PunchFailures > 0:
		return wire.WhyPunchFailed
	}
	return wire.WhyUnknown
}
