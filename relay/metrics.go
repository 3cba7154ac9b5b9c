package relay

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Results, the values of meshnode_relay_packets_total's result label: one
// per received frame (and per datagram ServeUDP drops), except that a frame
// whose reply can't be sent also counts a send_error or queue_full.
const (
	ResultForwarded    = "forwarded"     // a data frame went to its destination
	ResultChallenged   = "challenged"    // a hello was answered with a challenge
	ResultBound        = "bound"         // an auth succeeded; the sender is bound
	ResultBadChallenge = "bad_challenge" // auth with a challenge not issued to that sender and key, or expired
	ResultBadProof     = "bad_proof"     // auth whose proof doesn't verify
	ResultUnknownKey   = "unknown_key"   // auth from a key the coordinator doesn't know
	ResultTableFull    = "table_full"    // auth valid but the binding table is full
	ResultUnbound      = "unbound"       // data from a sender that isn't bound
	ResultNotPeer      = "not_peer"      // data to a key the sender may not reach
	ResultOffline      = "offline"       // data to a peer that isn't bound (unknown or offline)
	ResultBadPayload   = "bad_payload"   // data whose payload is neither WireGuard nor discovery
	ResultRateLimited  = "rate_limited"  // data over the sender's byte budget
	ResultQueueFull    = "queue_full"    // a WebSocket's send queue was full
	ResultSendError    = "send_error"    // the UDP send failed
	ResultGarbage      = "garbage"       // not a relay frame a node sends
	ResultNotRelay     = "not_relay"     // ServeUDP: a datagram that isn't a relay frame
)

// result indexes the counters, so the packet path does no label lookup.
type result uint8

const (
	resForwarded result = iota
	resChallenged
	resBound
	resBadChallenge
	resBadProof
	resUnknownKey
	resTableFull
	resUnbound
	resNotPeer
	resOffline
	resBadPayload
	resRateLimited
	resQueueFull
	resSendError
	resGarbage
	resNotRelay
	numResults
)

func (r result) String() string {
	switch r {
	case resForwarded:
		return ResultForwarded
	case resChallenged:
		return ResultChallenged
	case resBound:
		return ResultBound
	case resBadChallenge:
		return ResultBadChallenge
	case resBadProof:
		return ResultBadProof
	case resUnknownKey:
		return ResultUnknownKey
	case resTableFull:
		return ResultTableFull
	case resUnbound:
		return ResultUnbound
	case resNotPeer:
		return ResultNotPeer
	case resOffline:
		return ResultOffline
	case resBadPayload:
		return ResultBadPayload
	case resRateLimited:
		return ResultRateLimited
	case resQueueFull:
		return ResultQueueFull
	case resSendError:
		return ResultSendError
	case resGarbage:
		return ResultGarbage
	case resNotRelay:
		return ResultNotRelay
	}
	return fmt.Sprintf("result(%d)", r)
}

type metrics struct {
	packetsVec *prometheus.CounterVec
	packets    [numResults]prometheus.Counter
	bytes      prometheus.Counter
	bound      prometheus.GaugeFunc
}

func newMetrics(bound func() int) *metrics {
	m := &metrics{
		packetsVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshnode_relay_packets_total",
			Help: "Relay frames received, by what became of them.",
		}, []string{"result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshnode_relay_bytes_total",
			Help: "Payload bytes the relay forwarded.",
		}),
		bound: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meshnode_relay_bound_nodes",
			Help: "Nodes bound to the relay (UDP or WebSocket).",
		}, func() float64 { return float64(bound()) }),
	}
	for r := range numResults {
		m.packets[r] = m.packetsVec.WithLabelValues(r.String())
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{m.packetsVec, m.bytes, m.bound} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, fmt.Errorf("register relay metric: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (m *metrics) count(r result) { m.packets[r].Inc() }
