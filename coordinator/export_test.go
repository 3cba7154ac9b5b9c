package coordinator

import (
	"net"
	"time"

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

// ShortRelaySuspensions makes relay suspensions last base, doubling up to
// 2*base, so that tests see one end. Pass it to start.
func ShortRelaySuspensions(base time.Duration) func(*Server) {
	return func(s *Server) {
		s.hub.mu.Lock()
		defer s.hub.mu.Unlock()
		s.hub.susp.policy.base, s.hub.susp.policy.max = base, 2*base
	}
}
