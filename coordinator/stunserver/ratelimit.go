package stunserver

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Per-source limits. A node sends a few requests every 20-30 s (re-STUN)
// and about six in a burst when it classifies its NAT (RFC 5780 §4.3-4.4);
// many nodes may share one public IP behind a NAT. 20 requests/s with a
// burst of 40 serves that comfortably and keeps one source from turning the
// server into a reflector.
const (
	sourceRate  = rate.Limit(20)
	sourceBurst = 40
	// maxSources bounds the limiter's memory under a flood from spoofed
	// sources; when the table is full and nothing is idle, new sources are
	// refused until entries age out.
	maxSources = 1 << 16
	// sourceIdle is when a source's bucket is forgotten: by then it has
	// refilled completely, so forgetting it changes nothing.
	sourceIdle = time.Minute
)

// limiter is a token bucket per source IP.
type limiter struct {
	mu        sync.Mutex
	capacity  int
	sources   map[netip.Addr]*source
	lastSweep time.Time
}

type source struct {
	bucket *rate.Limiter
	last   time.Time
}

func newLimiter(capacity int) *limiter {
	return &limiter{capacity: capacity, sources: make(map[netip.Addr]*source)}
}

// allow takes a token from ip's bucket.
func (l *limiter) allow(ip netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.sources[ip]
	if !ok {
		if len(l.sources) >= l.capacity {
			l.sweep(now)
			if len(l.sources) >= l.capacity {
				return false
			}
		}
		s = &source{bucket: rate.NewLimiter(sourceRate, sourceBurst)}
		l.sources[ip] = s
	}
	s.last = now
	if now.Sub(l.lastSweep) > sourceIdle {
		l.sweep(now)
	}
	return s.bucket.AllowN(now, 1)
}

// sweep forgets idle sources.
func (l *limiter) sweep(now time.Time) {
	l.lastSweep = now
	for ip, s := range l.sources {
		if now.Sub(s.last) > sourceIdle {
			delete(l.sources, ip)
		}
	}
}
