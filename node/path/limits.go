package path

import (
	"cmp"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// What a peer can make this node send is bounded: a member of the mesh
// (a stolen laptop) must not be able to turn its peers into packet cannons
// or aim them at third parties.
const (
	// maxCandidates bounds the addresses punched for one peer: a host's
	// LAN, STUN and port-mapped addresses fit many times over; anything
	// beyond is an attempt to multiply our pings.
	maxCandidates = 16
	// maxPredicted bounds the STUN candidates whose next ports are
	// predicted (one per address family is what a real NAT needs).
	maxPredicted = 2
)

// Scope decides which of a peer's claimed addresses this node may probe.
// A peer's word is only a claim: probes go where there is evidence that
// the peer is, never at this node's own addresses or its LAN's other hosts
// on a remote peer's say-so.
type Scope interface {
	Permit(a netip.AddrPort, kind string) bool
}

// bogon reports addresses no peer can legitimately be reached at from
// here: unspecified, loopback, link-local, multicast, port 0.
func bogon(a netip.AddrPort) bool {
	ip := a.Addr()
	return !a.IsValid() || a.Port() == 0 || ip.IsUnspecified() || ip.IsLoopback() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast()
}

// permit applies the bogon filter and the node's scope.
func (m *Manager) permit(a netip.AddrPort, kind string) bool {
	if bogon(a) {
		return false
	}
	return m.scope == nil || m.scope.Permit(a, kind)
}

// kindRank orders candidate kinds by how likely they are to be the path:
// LAN first (peers behind one NAT), then public interface addresses (no
// NAT, at most a stateful firewall that both sides' punches open: global
// IPv6), then mappings the NAT itself promised, then what STUN saw.
func kindRank(kind string) int {
	switch kind {
	case wire.EndpointLAN:
		return 0
	case wire.EndpointPublic:
		return 1
	case wire.EndpointPortMap:
		return 2
	case wire.EndpointSTUN:
		return 3
	}
	return 4
}

// bestCandidates keeps at most n endpoints, the best kinds first and, within
// a kind, the earliest listed (the coordinator lists a node's newest first
// as the node reported them; call-me-maybe's come first as the newest).
func bestCandidates(eps []wire.Endpoint, n int) []wire.Endpoint {
	eps = slices.Clone(eps)
	slices.SortStableFunc(eps, func(a, b wire.Endpoint) int { return cmp.Compare(kindRank(a.Kind), kindRank(b.Kind)) })
	return eps[:min(len(eps), n)]
}

// budget bounds the punch packets a node sends: per peer and in total,
// token buckets refilled at Timing.PunchRate and PunchRateTotal. A round
// whose packets don't fit the budget sends fewer, it never queues them.
type budget struct {
	total *rate.Limiter
}

func newBudget(t Timing) budget {
	return budget{total: rate.NewLimiter(rate.Limit(t.PunchRateTotal), t.PunchRateTotal/4+1)}
}

func newPeerLimiter(t Timing) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(t.PunchRate), t.PunchRate/4+1)
}

// allow takes one punch packet for peer p from both buckets.
func (m *Manager) allow(p *peer, now time.Time) bool {
	if !p.limit.AllowN(now, 1) {
		m.Stats.PunchThrottled.Add(1)
		return false
	}
	if !m.budget.total.AllowN(now, 1) {
		m.Stats.PunchThrottled.Add(1)
		return false
	}
	return true
}

// addrEntry maps a source address to the peer a pong confirmed there; seen
// (unix nanoseconds) is refreshed by each later pong from it.
type addrEntry struct {
	key  crypto.PublicKey
	seen atomic.Int64
}

// confirmAddr records that peer key answered from a: a pong to a ping we
// sent there, so the key holder receives at a. A source address is only
// ever attributed this way, never on a peer's say-so.
func (m *Manager) confirmAddr(a netip.AddrPort, key crypto.PublicKey, now time.Time) {
	if v, ok := m.byAddr.Load(a); ok {
		e := v.(*addrEntry)
		if e.key == key {
			e.seen.Store(now.UnixNano())
			return
		}
	}
	e := &addrEntry{key: key}
	e.seen.Store(now.UnixNano())
	m.byAddr.Store(a, e)
}

// refreshAddr keeps a confirmed source alive when peer key, and nobody
// else, is still seen there; it never attributes a new source.
func (m *Manager) refreshAddr(a netip.AddrPort, key crypto.PublicKey, now time.Time) {
	if v, ok := m.byAddr.Load(a); ok {
		if e := v.(*addrEntry); e.key == key {
			e.seen.Store(now.UnixNano())
		}
	}
}

// pruneAddrs forgets sources not confirmed for addrTTL: a mapping
// that moved on must not keep attributing packets to the peer that held it.
func (m *Manager) pruneAddrs(now time.Time) {
	cutoff := now.Add(-m.addrTTL()).UnixNano()
	m.byAddr.Range(func(a, v any) bool {
		if v.(*addrEntry).seen.Load() < cutoff {
			m.byAddr.CompareAndDelete(a, v)
		}
		return true
	})
}
