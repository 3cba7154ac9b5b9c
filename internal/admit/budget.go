package admit

import (
	"container/list"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Budgets is a token bucket per source (Source): how much of something a
// server gives strangers (STUN answers, failed registrations) each source
// may have. The table is ordered by when each source was last seen, so
// that under pressure it evicts by age. Eviction can only hand a source a
// fresh bucket if it has been quiet for longer than Sources newer sources
// took: a source that keeps coming stays at the front and keeps its limit.
// It is safe for concurrent use.
type Budgets struct {
	lim BudgetLimits

	mu      sync.Mutex
	sources map[netip.Prefix]*list.Element // values are *budget
	byAge   list.List                      // front: most recently seen
}

// BudgetLimits configure Budgets.
type BudgetLimits struct {
	Rate  rate.Limit // tokens a second a source regains
	Burst int        // tokens a source holds at most, and starts with
	// Sources bounds the table's memory under a flood from spoofed or
	// sprayed sources. A full table never refuses a newcomer: the least
	// recently seen source makes room for it.
	Sources int
	// Idle is when a quiet source is forgotten. It is raised to the time
	// a bucket takes to refill, Burst/Rate: by then the source's bucket is
	// full again, so forgetting it changes nothing.
	Idle time.Duration
}

type budget struct {
	key    netip.Prefix
	bucket *rate.Limiter
	last   time.Time
}

// NewBudgets returns empty Budgets.
func NewBudgets(lim BudgetLimits) *Budgets {
	if lim.Rate > 0 {
		if refill := time.Duration(float64(lim.Burst) / float64(lim.Rate) * float64(time.Second)); lim.Idle < refill {
			lim.Idle = refill
		}
	}
	return &Budgets{lim: lim, sources: make(map[netip.Prefix]*list.Element)}
}

// Allow takes a token from the bucket of ip's source, and reports
// whether there was one.
func (b *Budgets) Allow(ip netip.Addr, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen(ip, now, true).bucket.AllowN(now, 1)
}

// Spent reports whether ip's source has no token left, taking none. A
// source seen for the first time has its whole budget and is not added.
func (b *Budgets) Spent(ip netip.Addr, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.seen(ip, now, false)
	return s != nil && s.bucket.TokensAt(now) < 1
}

// seen returns the budget of ip's source, marked seen at now; a new
// source is added when add is set, else it is nil. Caller holds mu.
func (b *Budgets) seen(ip netip.Addr, now time.Time, add bool) *budget {
	key := Source(ip)
	b.forgetIdle(now)
	e, ok := b.sources[key]
	switch {
	case ok:
		b.byAge.MoveToFront(e)
	case !add:
		return nil
	default:
		if b.byAge.Len() >= b.lim.Sources {
			b.remove(b.byAge.Back())
		}
		e = b.byAge.PushFront(&budget{key: key, bucket: rate.NewLimiter(b.lim.Rate, b.lim.Burst)})
		b.sources[key] = e
	}
	s := e.Value.(*budget)
	s.last = now
	return s
}

// Len is how many sources the table holds.
func (b *Budgets) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byAge.Len()
}

// forgetIdle drops the sources idle for longer than Idle. They sit at the
// back, so this stops at the first one still active; each source is
// dropped once, so the work is bounded by the sources added before.
func (b *Budgets) forgetIdle(now time.Time) {
	for e := b.byAge.Back(); e != nil && now.Sub(e.Value.(*budget).last) > b.lim.Idle; e = b.byAge.Back() {
		b.remove(e)
	}
}

func (b *Budgets) remove(e *list.Element) {
	delete(b.sources, e.Value.(*budget).key)
	b.byAge.Remove(e)
}

// ipv6SourceBits is how much of an IPv6 address names one source. The low
// 64 bits are an interface identifier (RFC 4291 §2.5.1) that a host picks
// for itself (temporary addresses, RFC 8981), so one host can send from
// 2^64 addresses; counting each as its own source would let it reset its
// budget at will and fill a table by itself.
const ipv6SourceBits = 64

// Source is the share an address counts against: the IPv4 address, or
// its IPv6 /64. An invalid address is the zero Prefix, one share for all.
func Source(ip netip.Addr) netip.Prefix {
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	ip = ip.Unmap().WithZone("")
	bits := ip.BitLen()
	if ip.Is6() {
		bits = ipv6SourceBits
	}
	p, _ := ip.Prefix(bits)
	return p
}
