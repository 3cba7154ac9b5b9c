package coordinator

import (
	"net"
	"time"

	"github.com/meshnode/meshnode/internal/admit"
)

// Admission pacing. When thousands of nodes connect at once (a
// coordinator restart, a fleet powering on), accepting every connection
// as it comes starts thousands of TLS handshakes that share the CPU:
// none finishes within the pre-authentication deadline (preAuthLimits'
// Timeout), the full gate evicts connections that were about to
// authenticate, every node retries at the cost of another handshake, and
// the mesh never converges. So while the gate is mostly full and its
// connections are getting through (one was promoted of late), the next
// accept waits for room; the connections behind it wait in the kernel's
// listen queue, where their deadline has not started. A flood of idle
// connections promotes none: it meets the gate's eviction as before, and
// an accept is held at most paceMax even if a node keeps promoting.
const (
	// paceAbove is how many pending connections hold back the next
	// accept: half the gate's total, few enough that on a busy machine
	// each finishes its handshake within the deadline.
	paceAbove = 512
	// paceRecent is how recent a promotion must be to show progress.
	paceRecent = time.Second
	// paceStep is how often a held-back accept looks again, paceMax how
	// long it is held at most.
	paceStep = 5 * time.Millisecond
	paceMax  = 250 * time.Millisecond
)

// pacedListener holds back Accept while gate holds more than above
// pending connections and promoted one within recent, at most max.
type pacedListener struct {
	net.Listener
	gate              *admit.Gate
	above             int
	recent, step, max time.Duration
}

func paced(ln net.Listener, gate *admit.Gate) net.Listener {
	return &pacedListener{Listener: ln, gate: gate, above: paceAbove, recent: paceRecent, step: paceStep, max: paceMax}
}

func (l *pacedListener) Accept() (net.Conn, error) {
	for waited := time.Duration(0); waited < l.max && l.busy(); waited += l.step {
		time.Sleep(l.step)
	}
	return l.Listener.Accept()
}

// busy reports whether the gate is mostly full of connections that are
// getting through.
func (l *pacedListener) busy() bool {
	return l.gate.Pending() > l.above && l.gate.SincePromoted() < l.recent
}
