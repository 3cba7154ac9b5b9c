package meshdns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Forwarding bounds. A client's resolver waits 5 s before it retries
// (glibc's RES_TIMEOUT, macOS alike), so the answer, SERVFAIL included,
// comes well before: an unreachable upstream costs at most
// forwardTimeout, a refusing one (ICMP unreachable) next to nothing.
const (
	// forwardTimeout bounds one forwarded query, every upstream tried.
	forwardTimeout = 2 * time.Second
	// tryTimeout bounds one upstream's answer, so a dead first upstream
	// leaves time to ask the second.
	tryTimeout = time.Second
	// maxInFlight bounds the forwarded queries waiting at once (each holds
	// a socket and a goroutine); beyond it queries get SERVFAIL at once.
	maxInFlight = 256
	// maxUpstreams is how many upstreams are asked, as resolv.conf's
	// MAXNS (3) allows.
	maxUpstreams = 3
)

// Errors of a forward that got no answer; the handler answers SERVFAIL.
var (
	errNoUpstream = errors.New("no upstream resolver")
	errBusy       = fmt.Errorf("more than %d forwarded queries waiting", maxInFlight)
)

// upstream forwards a query the mesh does not answer.
type upstream interface {
	Forward(ctx context.Context, req *dns.Msg, network string) (*dns.Msg, error)
}

// Forwarder sends queries to the machine's upstream resolvers, over the
// transport the client used: a truncated answer over UDP goes back as it
// is, and the client asks again over TCP.
type Forwarder struct {
	slots chan struct{}
	// timeout and try are forwardTimeout and tryTimeout; tests whose
	// upstreams never answer shorten both.
	timeout, try time.Duration

	mu        sync.Mutex
	upstreams []netip.AddrPort
}

// NewForwarder returns a forwarder with no upstreams yet.
func NewForwarder() *Forwarder {
	return &Forwarder{slots: make(chan struct{}, maxInFlight), timeout: forwardTimeout, try: tryTimeout}
}

// SetUpstreams replaces the upstream resolvers; the first maxUpstreams are
// asked, in order.
func (f *Forwarder) SetUpstreams(u []netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.upstreams = slices.Clone(u[:min(len(u), maxUpstreams)])
}

// Upstreams are the upstream resolvers in use.
func (f *Forwarder) Upstreams() []netip.AddrPort {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.upstreams)
}

// Forward asks each upstream in turn until one answers with anything but
// SERVFAIL or REFUSED (RFC 1035 §7.2: try the next server), within
// forwardTimeout. The last answer is returned when none does better.
func (f *Forwarder) Forward(ctx context.Context, req *dns.Msg, network string) (*dns.Msg, error) {
	ups := f.Upstreams()
	if len(ups) == 0 {
		return nil, errNoUpstream
	}
	select {
	case f.slots <- struct{}{}:
		defer func() { <-f.slots }()
	default:
		return nil, errBusy
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: f.try}
	var last *dns.Msg
	var errs []error
	for _, u := range ups {
		if ctx.Err() != nil {
			break
		}
		resp, _, err := c.ExchangeContext(ctx, req, u.String())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		if resp.Rcode != dns.RcodeServerFailure && resp.Rcode != dns.RcodeRefused {
			return resp, nil
		}
		last = resp
	}
	switch {
	case last != nil:
		return last, nil
	case len(errs) == 0:
		return nil, ctx.Err()
	}
	return nil, errors.Join(errs...)
}
