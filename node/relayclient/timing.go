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
	// before the TCP relay is opened beside it. The relay answers a hello
	// in one round trip to the coordinator's host, so a network that lets
	// UDP through answers well within it; one that blocks UDP never does,
	// and every moment waited is a moment nothing reaches the node. This
	// is Happy Eyeballs' Connection Attempt Delay (RFC 8305 §5, 250 ms:
	// start the fallback when the preferred attempt hasn't answered, and
	// keep both going). The UDP relay keeps being tried, and takes over
	// (the TCP relay closes) once it binds; a long path that answers late
	// costs one short-lived TCP connection.
	helloWait = 250 * time.Millisecond
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
	// before the TCP relay is opened; TCPGrace how long the node may have
	// no UDP relay to say hello to before it is.
	HelloWait time.Duration
	TCPGrace  time.Duration
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
	return Timing{Retry: retry, Refresh: refresh, Expiry: expiry, HelloWait: helloWait, TCPGrace: tcpGrace, StreamRetry: streamRetry, StreamWrite: writeTimeout, Check: check}
}

// withDefaults fills the zero fields from DefaultTiming.
func (t Timing) withDefaults() Timing {
	d := DefaultTiming()
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.Retry, &d.Retry},
		{&t.Refresh, &d.Refresh},
		{&t.Expiry, &d.Expiry},
		{&t.HelloWait, &d.HelloWait},
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
