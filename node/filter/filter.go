// Package filter is the node's stateful packet filter: it enforces the
// access policy the coordinator compiles for this node (wire.Filter) on
// every overlay packet, those it receives from peers (inbound) as well as
// those it sends them (outbound). Enforcing both ends means a peer whose
// own filter is off, or modified, still can't get through what this node's
// policy denies.
//
// A packet that opens a flow passes only if a rule allows it: its source
// and destination addresses, protocol and destination port. The flow is
// then tracked, and its packets pass both ways, replies included, until
// it has been idle for its state's timeout (see idle). TCP, UDP, ICMP
// echo (by identifier) and other protocols (by addresses) are tracked;
// ICMP errors pass when they are about a tracked flow; a later fragment
// passes when its datagram's first fragment did. The table is bounded
// (DefaultMaxFlows).
//
// The packet path takes no lock but one shard's of the connection table,
// and allocates nothing once a flow is tracked. With no policy it loads
// one atomic pointer a batch and looks at nothing else.
package filter

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshnode/meshnode/internal/packet"
	"github.com/meshnode/meshnode/internal/wire"
)

// Direction is which way a packet crosses the node.
type Direction uint8

const (
	// Inbound packets come from peers and are written to the TUN.
	Inbound Direction = iota
	// Outbound packets are read from the TUN and sent to peers.
	Outbound
)

// Options tune a Filter.
type Options struct {
	// MaxFlows bounds the connection table; 0 means DefaultMaxFlows.
	MaxFlows int
	// Now is the clock idle timeouts run on; nil means the system's
	// monotonic clock (tests pass a fake one).
	Now func() time.Time
}

// Stats count what the filter dropped and why. Denied packets are also
// counted per rule (Status).
type Stats struct {
	DeniedIn, DeniedOut atomic.Uint64 // packets that opened a flow no rule allows
	Malformed           atomic.Uint64 // packets whose headers could not be read
	Fragments           atomic.Uint64 // later fragments of a datagram whose first did not pass
	Evicted             atomic.Uint64 // flows dropped from a full table to make room
	Revoked             atomic.Uint64 // flows a new policy no longer allows, dropped at their next packet
}

// Counter counts the packets denied against one rule, each way.
type Counter struct{ In, Out atomic.Uint64 }

// ErrStale refuses a filter older than the one in force.
var ErrStale = errors.New("filter older than the one in force")

// Filter is one node's packet filter. Set applies policies; TUN runs it
// on the packet path.
type Filter struct {
	rules atomic.Pointer[ruleSet] // nil: no policy, everything passes
	table *table
	// elapsed is the time on the filter's clock since it was made.
	elapsed  func() time.Duration
	maxFlows int
	// Stats count what the filter dropped.
	Stats Stats
	// noRule counts denied packets whose addresses no rule covers.
	noRule Counter

	mu      sync.Mutex // serialises Set; guards what follows
	version uint64
	gen     uint64
	// counters holds the rules' counters by name, names in policy order:
	// a rule that stays in a new policy keeps counting where it was.
	counters map[string]*Counter
	names    []string
}

// New returns a filter with no policy: everything passes.
func New(opts Options) *Filter {
	if opts.MaxFlows <= 0 {
		opts.MaxFlows = DefaultMaxFlows
	}
	f := &Filter{maxFlows: opts.MaxFlows}
	if now := opts.Now; now != nil {
		base := now()
		f.elapsed = func() time.Duration { return now().Sub(base) }
	} else {
		// Since a time with a monotonic reading reads only the monotonic
		// clock: half what time.Now costs, once a batch of packets.
		base := time.Now()
		f.elapsed = func() time.Duration { return time.Since(base) }
	}
	f.table = newTable(opts.MaxFlows, &f.Stats)
	return f
}

// Set applies a filter from the coordinator. nil, or one with AllowAll,
// removes the policy: everything passes and nothing is tracked. A filter
// that is not valid, or is older than the one in force (ErrStale), is
// refused, and the one in force stays. A new rule set applies to the next
// packet: a tracked flow it no longer allows is dropped at its next packet,
// so its connection stops at once.
func (f *Filter) Set(wf *wire.Filter) error {
	if wf != nil {
		if err := wf.Validate(); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if wf != nil {
		if wf.Version < f.version {
			return fmt.Errorf("%w: version %d, this node holds %d", ErrStale, wf.Version, f.version)
		}
		f.version = wf.Version
	}
	if wf == nil || wf.AllowAll {
		f.rules.Store(nil)
		f.table.clear()
		f.counters, f.names = nil, nil
		return nil
	}
	f.gen++
	counters := make(map[string]*Counter, len(wf.Rules))
	var names []string
	rs := compile(wf, f.gen, func(name string) *Counter {
		c, ok := counters[name]
		if ok {
			return c
		}
		if c = f.counters[name]; c == nil {
			c = new(Counter)
		}
		counters[name] = c
		names = append(names, name)
		return c
	})
	f.counters, f.names = counters, names
	f.rules.Store(rs)
	return nil
}

// clock is the time on the filter's clock, in nanoseconds.
func (f *Filter) clock() int64 { return int64(f.elapsed()) }

// Check decides one packet going dir: whether it passes (tracking the flow
// it opens). Enforced: with no policy everything passes.
func (f *Filter) Check(dir Direction, pkt []byte) bool {
	rs := f.rules.Load()
	return rs == nil || f.check(rs, dir, pkt, f.clock(), true)
}

// check decides pkt against rs at now. Not enforcing, a packet that would
// be denied passes uncounted (a test's sender that skips its own filter).
func (f *Filter) check(rs *ruleSet, dir Direction, pkt []byte, now int64, enforce bool) bool {
	var h packet.Headers
	if !packet.Parse(pkt, &h) {
		if !enforce {
			return true
		}
		f.Stats.Malformed.Add(1)
		return false
	}
	if h.Frag == packet.LaterFragment {
		k := fragmentKey(&h)
		if f.table.lookup(&k, 0, now, rs, true) || !enforce {
			return true
		}
		f.Stats.Fragments.Add(1)
		return false
	}
	// An error about a tracked flow goes back to the sender of the packet
	// it quotes (from wherever on the way that packet failed).
	if h.HasQuoted && h.Dst == h.Quoted.Src {
		q, _, _ := flowKey(h.Quoted.Src, h.Quoted.Dst, &h.Quoted.Transport)
		if f.table.lookup(&q, 0, now, rs, false) {
			return true
		}
	}
	k, st, track := flowKey(h.Src, h.Dst, &h.Transport)
	switch {
	case f.table.lookup(&k, h.TCPFlags, now, rs, true):
	case rs.allows(&k):
		if track {
			f.table.insert(&k, st, now, rs.gen)
		}
	case !enforce:
		return true
	default:
		f.deny(rs, &k, dir)
		return false
	}
	if h.Frag == packet.FirstFragment {
		fk := fragmentKey(&h)
		f.table.insert(&fk, fragment, now, rs.gen)
	}
	return true
}

// deny counts a denied packet against its rule (rs.blame), or no rule.
func (f *Filter) deny(rs *ruleSet, k *key, dir Direction) {
	c := rs.blame(k)
	if c == nil {
		c = &f.noRule
	}
	if dir == Inbound {
		c.In.Add(1)
		f.Stats.DeniedIn.Add(1)
	} else {
		c.Out.Add(1)
		f.Stats.DeniedOut.Add(1)
	}
}

// Reach reports whether the policy lets any address of from open a flow
// to any address of to (any protocol, any port); true with no policy.
func (f *Filter) Reach(from, to []netip.Addr) bool {
	rs := f.rules.Load()
	if rs == nil {
		return true
	}
	hosts := make([]netip.Prefix, len(to))
	for i, a := range to {
		hosts[i] = netip.PrefixFrom(a, a.BitLen())
	}
	return rs.reach(from, hosts)
}

// ReachRoute reports whether the policy lets any address of from open a
// flow to some address within route (a LAN behind a subnet router), on
// any protocol and port; true with no policy.
func (f *Filter) ReachRoute(from []netip.Addr, route netip.Prefix) bool {
	rs := f.rules.Load()
	return rs == nil || rs.reach(from, []netip.Prefix{route})
}

// RuleDenied is how many packets were denied against one rule each way.
type RuleDenied struct {
	Rule    string
	In, Out uint64
}

// Status is what the filter enforces and has denied.
type Status struct {
	Active   bool   // a policy is in force; false: everything passes
	Version  uint64 // the policy's version (the latest applied, also when it removed the policy)
	Rules    int    // rules in force
	Flows    int    // flows tracked, not idle past their timeout
	MaxFlows int    // the table's bound
	// Denied counts packets per rule of the policy in force, in its
	// order (each name once); NoRule those whose addresses no rule
	// covers (Rule empty).
	Denied []RuleDenied
	NoRule RuleDenied
}

// Status reports the policy in force and the packets it denied.
func (f *Filter) Status() Status {
	rs := f.rules.Load()
	st := Status{MaxFlows: f.maxFlows, NoRule: RuleDenied{In: f.noRule.In.Load(), Out: f.noRule.Out.Load()}}
	if rs != nil {
		st.Active, st.Rules, st.Flows = true, len(rs.rules), f.table.live(f.clock())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st.Version = f.version
	st.Denied = make([]RuleDenied, 0, len(f.names))
	for _, name := range f.names {
		c := f.counters[name]
		st.Denied = append(st.Denied, RuleDenied{Rule: name, In: c.In.Load(), Out: c.Out.Load()})
	}
	return st
}
