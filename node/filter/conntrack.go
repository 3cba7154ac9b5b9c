package filter

import (
	"math/bits"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/meshnode/meshnode/internal/packet"
)

// DefaultMaxFlows bounds the connection table: at most this many flows
// (and fragmented datagrams) are tracked at once, about 300 bytes each
// with their two map entries (20 MB when full; TestTableMemoryIsBounded
// measures it, and the table grows only as flows come). When a shard of
// the table is full its least recently used flow that has seen no reply
// goes first, so a flood of new flows (which see no reply) does not evict
// established connections.
const DefaultMaxFlows = 65536

// shardBits: the table is 64 shards, each with its own lock, so that the
// TUN's reader and the per-peer writers rarely meet on one.
const (
	shardBits = 6
	numShards = 1 << shardBits
	// reclaimScan is how many of a list's least recently used flows an
	// insert into a full shard checks for expiry before evicting one.
	reclaimScan = 8
)

// state is where a flow is; it sets the flow's idle timeout.
type state uint8

const (
	tcpOpening     state = iota // no reply yet
	tcpEstablished              // replied
	tcpClosing                  // a FIN seen
	tcpClosed                   // a RST seen
	udpNew                      // UDP and other protocols, no reply yet
	udpReplied
	echoNew // an ICMP echo request
	echoReplied
	fragment // a datagram whose first fragment passed
	numStates
)

// idle is each state's idle timeout: a flow silent for longer is gone.
// TCP follows what RFC 5382 §5 (REQ-5) asks of NATs: 2 h 4 min for an
// established connection, 4 minutes for one opening or closing; a reset
// one lingers 10 s (Linux's nf_conntrack_tcp_timeout_close). UDP keeps 2
// minutes once answered (RFC 4787 REQ-5's least), 30 s until then, ICMP
// echo 30 s, and fragments the 30 s Linux allows reassembly
// (ipfrag_time).
var idle = [numStates]time.Duration{
	tcpOpening:     4 * time.Minute,
	tcpEstablished: 2*time.Hour + 4*time.Minute,
	tcpClosing:     4 * time.Minute,
	tcpClosed:      10 * time.Second,
	udpNew:         30 * time.Second,
	udpReplied:     2 * time.Minute,
	echoNew:        30 * time.Second,
	echoReplied:    30 * time.Second,
	fragment:       30 * time.Second,
}

// evictFirst: flows in these states go before the others when a shard is
// full: nobody answered them, or they are over.
func (s state) evictFirst() bool {
	switch s {
	case tcpOpening, tcpClosed, udpNew, echoNew, fragment:
		return true
	}
	return false
}

// tcpOpen is the state a TCP packet that no flow knows starts, false for a
// reset, which opens nothing. A packet other than a SYN starts a flow too
// (a connection open before the node started, or before its flow was
// evicted) if the rules allow it as they would the SYN.
func tcpOpen(flags uint8) (state, bool) {
	switch {
	case flags&packet.TCPRst != 0:
		return 0, false
	case flags&packet.TCPFin != 0:
		return tcpClosing, true
	}
	return tcpOpening, true
}

// flow is one tracked flow. It is reached through the shard's map under
// both its keys, and sits on one of the shard's two LRU lists.
type flow struct {
	orig  key    // its first packet's
	last  int64  // when its latest packet passed, on the filter's clock
	gen   uint64 // the rule set it was last checked against
	state state

	prev, next *flow
}

// advance moves the flow on for a packet (reply: it went the other way).
func (f *flow) advance(reply bool, tcpFlags uint8) {
	switch f.state {
	case tcpOpening, tcpEstablished, tcpClosing, tcpClosed:
		syn := tcpFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn
		switch {
		case tcpFlags&packet.TCPRst != 0:
			f.state = tcpClosed
		case tcpFlags&packet.TCPFin != 0:
			if f.state != tcpClosed {
				f.state = tcpClosing
			}
		case reply && f.state == tcpOpening:
			f.state = tcpEstablished
		case !reply && syn && f.state >= tcpClosing:
			f.state = tcpOpening // the ports used again for a new connection
		}
	case udpNew:
		if reply {
			f.state = udpReplied
		}
	case echoNew:
		if reply {
			f.state = echoReplied
		}
	}
}

// lru is a list of flows, most recently used first, around a sentinel.
type lru struct{ root flow }

func (l *lru) init() { l.root.next, l.root.prev = &l.root, &l.root }

func (l *lru) pushFront(f *flow) {
	f.prev, f.next = &l.root, l.root.next
	l.root.next.prev = f
	l.root.next = f
}

func unlink(f *flow) {
	f.prev.next, f.next.prev = f.next, f.prev
	f.prev, f.next = nil, nil
}

// oldest is the least recently used flow, nil for an empty list.
func (l *lru) oldest() *flow {
	if l.root.prev == &l.root {
		return nil
	}
	return l.root.prev
}

// shard is one part of the table, under its own lock.
type shard struct {
	mu    sync.Mutex
	flows map[key]*flow
	// first holds the flows evicted first (state.evictFirst), rest the
	// others.
	first, rest lru
	n           int
	spare       []*flow // removed flows, reused: no allocation per new flow
}

// table tracks flows: a bounded, sharded map from each direction's key.
type table struct {
	seed     uint64
	perShard int
	shards   [numShards]shard
	stats    *Stats
}

func newTable(maxFlows int, stats *Stats) *table {
	t := &table{seed: rand.Uint64(), perShard: max(1, maxFlows/numShards), stats: stats}
	for i := range t.shards {
		t.shards[i].first.init()
		t.shards[i].rest.init()
	}
	return t
}

// shardOf picks k's shard, the same for both directions of a flow: the
// hashes of its two ends are added, which doesn't depend on their order.
// The seed keeps a peer from aiming all its flows at one shard.
func (t *table) shardOf(k *key) *shard {
	h := endpoint(t.seed, k.src, k.sport) + endpoint(t.seed, k.dst, k.dport)
	h = mix(h^uint64(k.proto)<<8^uint64(k.fam), t.seed|1)
	return &t.shards[h>>(64-shardBits)]
}

func endpoint(seed uint64, a u128, port uint16) uint64 {
	return mix(a.hi^seed, a.lo^uint64(port)<<48^0x9e3779b97f4a7c15)
}

// mix folds the 128-bit product of a and b (wyhash's mixer).
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// lookup finds the live flow k belongs to and, when touch is set, records
// the packet (when it passed, what its TCP flags change). A flow idle past
// its timeout is removed; so is one that rs, a rule set newer than the one
// it was checked against, no longer allows.
func (t *table) lookup(k *key, tcpFlags uint8, now int64, rs *ruleSet, touch bool) bool {
	s := t.shardOf(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flows[*k]
	switch {
	case f == nil:
		return false
	case now-f.last > int64(idle[f.state]):
		s.remove(f)
		return false
	case f.gen != rs.gen:
		if f.state == fragment || !rs.allows(&f.orig) {
			s.remove(f)
			t.stats.Revoked.Add(1)
			return false
		}
		f.gen = rs.gen
	}
	if touch {
		f.advance(*k != f.orig, tcpFlags)
		f.last = now
		if l := s.list(f.state); f.prev != &l.root { // not at the front of its list
			unlink(f)
			l.pushFront(f)
		}
	}
	return true
}

// insert tracks a new flow (or datagram) from k, checked against rule set
// gen, making room in a full shard.
func (t *table) insert(k *key, st state, now int64, gen uint64) {
	s := t.shardOf(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flows[*k] != nil {
		return // another packet of the flow was first
	}
	if s.flows == nil {
		s.flows = make(map[key]*flow)
	}
	if s.n >= t.perShard {
		s.reclaim(now, t.perShard, t.stats)
	}
	var f *flow
	if n := len(s.spare); n > 0 {
		f, s.spare = s.spare[n-1], s.spare[:n-1]
	} else {
		f = new(flow)
	}
	*f = flow{orig: *k, last: now, gen: gen, state: st}
	s.flows[*k] = f
	if st != fragment {
		s.flows[k.reverse()] = f
	}
	s.list(st).pushFront(f)
	s.n++
}

// list is the LRU list a flow in state st belongs on.
func (s *shard) list(st state) *lru {
	if st.evictFirst() {
		return &s.first
	}
	return &s.rest
}

// remove forgets a flow; s.mu is held.
func (s *shard) remove(f *flow) {
	delete(s.flows, f.orig)
	if f.state != fragment {
		delete(s.flows, f.orig.reverse())
	}
	unlink(f)
	s.n--
	s.spare = append(s.spare, f)
}

// reclaim makes room in a full shard: flows found expired among each
// list's least recently used go first, else the least recently used flow
// of the evict-first list, else of the other; s.mu is held.
func (s *shard) reclaim(now int64, limit int, stats *Stats) {
	for _, l := range []*lru{&s.first, &s.rest} {
		f := l.oldest()
		for range reclaimScan {
			if f == nil || f == &l.root {
				break
			}
			prev := f.prev
			if now-f.last > int64(idle[f.state]) {
				s.remove(f)
			}
			f = prev
		}
	}
	if s.n < limit {
		return
	}
	for _, l := range []*lru{&s.first, &s.rest} {
		if f := l.oldest(); f != nil {
			s.remove(f)
			stats.Evicted.Add(1)
			return
		}
	}
}

// clear forgets every flow (the policy is gone: nothing is tracked).
func (t *table) clear() {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		s.flows, s.spare, s.n = nil, nil, 0
		s.first.init()
		s.rest.init()
		s.mu.Unlock()
	}
}

// live is the number of flows tracked and not yet idle past their
// timeout (an idle one leaves the table at its next packet, or when its
// room is needed).
func (t *table) live(now int64) int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, l := range []*lru{&s.first, &s.rest} {
			for f := l.root.next; f != &l.root; f = f.next {
				if now-f.last <= int64(idle[f.state]) {
					n++
				}
			}
		}
		s.mu.Unlock()
	}
	return n
}
