package stunserver

import (
	"container/list"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Per-source limits. A node sends a few requests every 20-30 s (re-STUN)
// and about six in a burst when it classifies its NAT (RFC 5780 §4.3-4.4);
// many nodes may share one source (a public IPv4 address behind a NAT, or
// an IPv6 /64). 20 requests/s with a burst of 40 serves that comfortably
// and keeps one source from turning the server into a reflector.
const (
	sourceRate  = rate.Limit(20)
	sourceBurst = 40
	// maxSources bounds the limiter's memory under a flood from spoofed or
	// sprayed sources. A full table never refuses a newcomer: the least
	// recently seen source makes room for it.
	maxSources = 1 << 16
	// sourceIdle is when a source's bucket is forgotten: by then it has
	// refilled completely, so forgetting it changes nothing.
	sourceIdle = time.Minute
	// ipv6SourceBits is how much of an IPv6 address names one source. The
	// low 64 bits are an interface identifier (RFC 4291 §2.5.1) that a
	// host picks for itself (temporary addresses, RFC 8981), so one host
	// can send from 2^64 addresses; counting each as its own source would
	// let it reset its budget at will and fill the table by itself.
	ipv6SourceBits = 64
)

// limiter is a token bucket per source: an IPv4 address or an IPv6 /64.
// The table is ordered by when each source was last seen, so that under
// pressure it evicts by age. Eviction can only hand a source a fresh
// bucket if it has been quiet for longer than maxSources newer sources:
// a source that keeps sending stays at the front and keeps its limit.
type limiter struct {
	mu       sync.Mutex
	capacity int
	sources  map[netip.Prefix]*list.Element // values are *source
	byAge    list.List                      // front: most recently seen
}

type source struct {
	key    netip.Prefix
	bucket *rate.Limiter
	last   time.Time
}

// newLimiter returns a limiter that remembers at most capacity sources.
func newLimiter(capacity int) *limiter {
	return &limiter{capacity: capacity, sources: make(map[netip.Prefix]*list.Element)}
}

// sourceKey is the source that ip belongs to.
func sourceKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := ip.BitLen()
	if ip.Is6() {
		bits = ipv6SourceBits
	}
	return netip.PrefixFrom(ip, bits).Masked()
}

// allow takes a token from the bucket of ip's source.
func (l *limiter) allow(ip netip.Addr, now time.Time) bool {
	key := sourceKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forgetIdle(now)
	e, ok := l.sources[key]
	if ok {
		l.byAge.MoveToFront(e)
	} else {
		if l.byAge.Len() >= l.capacity {
			l.remove(l.byAge.Back())
		}
		e = l.byAge.PushFront(&source{key: key, bucket: rate.NewLimiter(sourceRate, sourceBurst)})
		l.sources[key] = e
	}
	s := e.Value.(*source)
	s.last = now
	return s.bucket.AllowN(now, 1)
}

// forgetIdle drops the sources idle for longer than sourceIdle. They sit
// at the back, so this stops at the first one still active; each source is
// dropped once, so the work is bounded by the sources added before.
func (l *limiter) forgetIdle(now time.Time) {
	for e := l.byAge.Back(); e != nil && now.Sub(e.Value.(*source).last) > sourceIdle; e = l.byAge.Back() {
		l.remove(e)
	}
}

func (l *limiter) remove(e *list.Element) {
	delete(l.sources, e.Value.(*source).key)
	l.byAge.Remove(e)
}
