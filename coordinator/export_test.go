package coordinator

import "golang.org/x/time/rate"

// UnlimitEndpointReports lifts the budget of endpoint reports, for
// BenchmarkEndpointDelivery: it measures delivery (store write, coalescing,
// push), not the budget. Call it before the server serves.
func UnlimitEndpointReports(s *Server) { s.limits.endpointRate = rate.Inf }
