package coordinator

import (
	"net"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/crypto"

	"golang.org/x/time/rate"
)

// UnlimitEndpointReports lifts the budget of endpoint reports, for
// BenchmarkEndpointDelivery: it measures delivery (store write, coalescing,
// push), not the budget. Call it before the server serves.
func UnlimitEndpointReports(s *Server) { s.limits.endpointRate = rate.Inf }

// MetricsAddr is where Run serves metrics; nil until it does.
func MetricsAddr(s *Server) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.metricsAddr
}

// Observe records src as the source of an authenticated STUN request from
// key, as the STUN server does (tests can't send from public addresses).
func Observe(s *Server, key crypto.PublicKey, src netip.AddrPort) {
	s.evidence.Observed(key.String(), src)
}

// SetStreamSilence shortens how long a silent stream is kept, for tests of
// dead nodes. Call it before the server serves.
func SetStreamSilence(s *Server, d time.Duration) { s.limits.silence = d }
