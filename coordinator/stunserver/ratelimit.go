package stunserver

import (
	"time"

	"golang.org/x/time/rate"

	"github.com/meshnode/meshnode/internal/admit"
)

// Per-source limits (admit.Source: an IPv4 address or an IPv6 /64). A node
// sends a few requests every 20-30 s (re-STUN) and about six in a burst
// when it classifies its NAT (RFC 5780 §4.3-4.4); many nodes may share one
// source (a public IPv4 address behind a NAT, or an IPv6 /64). 20
// requests/s with a burst of 40 serves that comfortably and keeps one
// source from turning the server into a reflector.
const (
	sourceRate  = rate.Limit(20)
	sourceBurst = 40
	// maxSources bounds the limiter's memory under a flood from spoofed or
	// sprayed sources; a full table never refuses a newcomer.
	maxSources = 1 << 16
	// sourceIdle is when a source's bucket is forgotten.
	sourceIdle = time.Minute
)

// newLimiter returns the per-source limits of STUN requests, remembering
// at most capacity sources.
func newLimiter(capacity int) *admit.Budgets {
	return admit.NewBudgets(admit.BudgetLimits{Rate: sourceRate, Burst: sourceBurst, Sources: capacity, Idle: sourceIdle})
}
