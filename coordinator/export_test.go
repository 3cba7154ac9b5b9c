package coordinator

import (
	"context"
	"math"
	"net"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/coordinator/ui"
	"github.com/meshnode/meshnode/crypto"

	"golang.org/x/time/rate"

	"github.com/meshnode/meshnode/internal/admit"
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

// UnlimitFailedRegistrations lifts each source's budget of failed
// registrations, for tests whose every request comes from loopback and
// fails by design (a race for a single-use token, fuzzing). Call it before
// the server serves.
func UnlimitFailedRegistrations(s *Server) {
	s.failedRegs = admit.NewBudgets(admit.BudgetLimits{Rate: 1, Burst: math.MaxInt32, Sources: 1})
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

// Rendezvous asks the hub to cue from and to, as a node's rendezvous
// request does, and reports whether both were cued.
func Rendezvous(s *Server, from, to crypto.PublicKey) bool {
	res, _, _ := s.hub.rendezvous(from, to)
	return res == rendezvousCued
}

// RelayAllows is what the coordinator's relay asks before it forwards a
// frame from a to b.
func RelayAllows(s *Server, a, b crypto.PublicKey) bool { return s.hub.ArePeers(a, b) }

// ShortLease makes the coordinator renew its lease every renew, for
// length, so that tests see a dead coordinator's lease end. Pass it to
// start.
func ShortLease(renew, length time.Duration) func(*Server) {
	return func(s *Server) { s.lease = leaseTiming{renew: renew, length: length} }
}

// ShortPathFlush makes the coordinator record path reports for the
// other coordinators' pages every d, so that tests wait for the write,
// not the production spacing. Pass it to start.
func ShortPathFlush(d time.Duration) func(*Server) {
	return func(s *Server) { s.pathFlush = d }
}

// MeshList is the list of the mesh's coordinators a welcome from s
// carries now.
func MeshList(s *Server) []crypto.Coordinator { return s.meshList() }

// UIView is the web page's view of s.
func UIView(s *Server) (ui.View, error) { return uiBackend{s}.View(context.Background()) }

// UIBackend is what the web page shows and does on s.
func UIBackend(s *Server) ui.Backend { return uiBackend{s} }

// StoreRetry makes the coordinator's store ride out a lost database
// connection on r's schedule instead of its defaults. Pass it to start.
func StoreRetry(r store.Retry) func(*Server) {
	return func(s *Server) { s.store.(interface{ SetRetry(store.Retry) }).SetRetry(r) }
}
