package path

import (
	"time"

	"github.com/meshnode/meshnode/internal/wire"
)

// A coordinator that dies without its streams closing (its host lost, its
// process hung) leaves its nodes connected to nothing until their next
// stream ping, up to wire.StreamPing and its timeout later: nodes ping
// that seldom to keep idle ones quiet. The mesh's other coordinators learn
// sooner, when the dead one's lease runs out, and show its nodes offline to
// theirs. A peer that then still has a direct path to such a node tells it
// so (wire.DiscoOffline), and the node checks its stream at once
// (EventCoordinatorDoubted): it fails over within seconds of the others
// noticing. A peer's word only ever costs a ping of the node's own
// coordinator, at most one a wire.StreamCheckGap.

// appendOffline tells p, which the coordinator has just shown offline,
// that it looks offline, when a direct path to it is up. Over the relay it
// says nothing: the relay may be the lost coordinator's. Caller holds mu.
func (m *Manager) appendOffline(p *peer, out []outPkt) []outPkt {
	if !p.hasBest {
		return out
	}
	pkt, err := m.seal(p.key, wire.Disco{Type: wire.DiscoOffline})
	if err != nil {
		m.log.Warn("seal offline notice", "peer", p.name, "err", err)
		return out
	}
	m.Stats.OfflineSent.Add(1)
	return append(out, outPkt{pkt: pkt, to: p.best, sock: p.bestSock})
}

// onOffline takes p's word that this node looks offline and reports
// whether to ask for a check of the stream: at most once a
// wire.StreamCheckGap per peer. Caller holds mu.
func (m *Manager) onOffline(p *peer, now time.Time) bool {
	m.Stats.OfflineReceived.Add(1)
	if !p.lastOffline.IsZero() && now.Sub(p.lastOffline) < wire.StreamCheckGap {
		return false
	}
	p.lastOffline = now
	return true
}
