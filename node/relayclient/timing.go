package relayclient

import (
	"time"

	"github.com/meshnode/meshnode/internal/wire"
)

// UDP relay binding timing: the defaults of Timing.
const (
	// refresh re-proves the binding; it also serves as the keepalive of
	// the NAT mapping towards the relay (wire.RelayRefresh says why).
	refresh = wire.RelayRefresh
	// retry re-sends a hello quickly while unbound.
	retry = wire.RelayRetry
	// expiry drops a binding the relay stopped confirming; the relay's own
	// idle time (wire.RelayBindingIdle) is longer.
	expiry = wire.RelayExpiry
)

// check spaces the checks of a relay node's relay (health.go): the
// default of Timing.Check.
const check = wire.RelayCheck

// Fallback timing: the defaults of Timing.
const (
	// helloWait is how long a hello to the UDP relay may go unanswered
	// before the TCP relay is opened beside it, while the round trip to
	// the coordinator is not known. It is Happy Eyeballs' Connection
	// Attempt Delay (RFC 8305 §5, 250 ms: start the fallback when the
	// preferred attempt hasn't answered, and keep both going): a network
	// that lets UDP through answers a hello within a round trip, one that
	// blocks UDP never does, and every moment waited is a moment nothing
	// reaches the node. Once the coordinator's TCP connection has timed a
	// round trip (SetCoordinatorRTT) the wait is twice that (one round
	// trip answers a hello, the other is margin for jitter and the relay's
	// work), within RFC 8305 §8's bounds, helloWaitMin and helloWaitMax.
	// The UDP relay keeps being tried, and takes over (the TCP relay
	// closes) once it binds; a path that answers late costs one
	// short-lived TCP connection.
	helloWait    = 250 * time.Millisecond
	helloWaitMin = 100 * time.Millisecond
	helloWaitMax = 2 * time.Second
	// tcpGrace is how long the node may have no UDP relay to say hello to
	// (before the coordinator's welcome names one, or while it names
	// none) before the TCP relay is opened.
	tcpGrace = 3 * time.Second
	// streamRetry spaces reconnects of a wanted TCP relay stream.
	streamRetry = 2 * time.Second
	// writeTimeout bounds one frame's write to the TCP relay: a connection
	// that takes longer has stalled, and its session ends.
	writeTimeout = 2 * time.Second
)

// Timing holds the relays' timers; a zero field takes its default (tests
// scale them down).
type Timing struct {
	// Retry spaces hellos to the UDP relay while unbound.
	Retry time.Duration
	// Refresh spaces re-proofs of a bound UDP relay.
	Refresh time.Duration
	// Expiry drops a UDP binding that has not been confirmed for this long.
	Expiry time.Duration
	// HelloWait is how long a hello to the UDP relay may go unanswered
	// before the TCP relay is opened while the round trip to the
	// coordinator is unknown, HelloWaitMin the least wait when it is
	// known; TCPGrace how long the node may have no UDP relay to say
	// hello to before the TCP relay is opened.
	HelloWait    time.Duration
	HelloWaitMin time.Duration
	TCPGrace     time.Duration
	// StreamRetry spaces reconnects of the TCP relay while it is wanted.
	StreamRetry time.Duration
	// StreamWrite bounds one frame's write to the TCP relay.
	StreamWrite time.Duration
	// Check spaces the checks that a relay node's relay carries this
	// node's frames (health.go).
	Check time.Duration
}

// DefaultTiming is the production timing.
func DefaultTiming() Timing {
	return Timing{Retry: retry, Refresh: refresh, Expiry: expiry, HelloWait: helloWait, HelloWaitMin: helloWaitMin, TCPGrace: tcpGrace, StreamRetry: streamRetry, StreamWrite: writeTimeout, Check: check}
}

// withDefaults fills the zero fields from DefaultTiming.
func (t Timing) withDefaults() Timing {
	d := DefaultTiming()
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.Retry, &d.Retry},
		{&t.Refresh, &d.Refresh},
		{&t.Expiry, &d.Expiry},
		{&t.HelloWait, &d.HelloWait},
		{&t.HelloWaitMin, &d.HelloWaitMin},
		{&t.TCPGrace, &d.TCPGrace},
		{&t.StreamRetry, &d.StreamRetry},
		{&t.StreamWrite, &d.StreamWrite},
		{&t.Check, &d.Check},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return t
}

// waitForHello is how long a hello to the UDP relay may go unanswered
// before the TCP relay is opened, given the round trip to the coordinator
// (0: not known). See helloWait.
func (t Timing) waitForHello(rtt time.Duration) time.Duration {
	if rtt <= 0 {
		return t.HelloWait
	}
	return min(max(2*rtt, t.HelloWaitMin), helloWaitMax)
}
