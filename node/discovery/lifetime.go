package discovery

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pion/stun/v3"

	"github.com/meshnode/meshnode/internal/wire"
)

// A NAT forgets a UDP mapping after some idle time: 30 s for Linux's
// unanswered flows, 120 s for answered ones, 20 s on some home gateways
// (nat-traversal notes). Keepalives spaced just inside that lifetime keep
// an idle path open at the least cost. The lifetime is measured, not
// guessed: an established flow to one of the coordinator's alternate STUN
// sockets is left idle for a while, then the server answers a request sent
// before the silence (wire.STUNAttrResponseDelay). If the late answer gets
// through, the mapping outlived the silence.
const (
	// streamAge is how old a flow must be before its idle time is that of
	// an answered flow: Linux conntrack gives the longer timeout only to
	// packets that come more than 2 s after the flow began.
	streamAge = 3 * time.Second
	// lateGrace is how long past the asked delay the answer may take: a
	// round trip and the server's timer.
	lateGrace = 3 * time.Second
)

// lifetimeTiming is the lifetime probe's waits: streamAge and lateGrace in
// production. Tests against an in-process server, which has no conntrack
// and answers on a local timer, shorten them.
type lifetimeTiming struct {
	streamAge, lateGrace time.Duration
}

var defaultLifetime = lifetimeTiming{streamAge: streamAge, lateGrace: lateGrace}

// LifetimeProbes are the silences tried, one per alternate socket of the
// coordinator's STUN server, all at once: under Linux's 30 s, between it
// and its 120 s, and just under 120 s.
var LifetimeProbes = []time.Duration{25 * time.Second, 55 * time.Second, 115 * time.Second}

// errNoDelay means the server answered at once: it does not hold answers
// (not meshnode's, or over its bounds).
var errNoDelay = errors.New("the STUN server answered at once: it does not hold answers")

// Survives reports whether this socket's mapping towards server outlives
// idle: the flow is answered once, aged to streamAge, and then sent one
// request asking its answer to come idle later. Only one request goes out
// for the silence (a retransmission would refresh the mapping), so a lost
// packet reads as "did not survive": the safe side.
func (p *Prober) Survives(ctx context.Context, server Target, idle time.Duration) (bool, error) {
	if server.Auth == nil {
		return false, errors.New("lifetime probe: the server holds answers only for signed requests")
	}
	if _, err := p.Query(ctx, server, 0); err != nil {
		return false, fmt.Errorf("lifetime probe: %w", err)
	}
	age := time.NewTimer(p.life.streamAge)
	select {
	case <-ctx.Done():
		age.Stop()
		return false, ctx.Err()
	case <-age.C:
	}
	delay := stun.RawAttribute{Type: stun.AttrType(wire.STUNAttrResponseDelay), Value: binary.BigEndian.AppendUint32(nil, uint32(idle/time.Second))}
	start := time.Now()
	_, err := p.query(ctx, server, []stun.Setter{delay}, schedule{tries: 1, wait: idle + p.life.lateGrace, growth: 1})
	switch {
	case errors.Is(err, ErrNoResponse):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("lifetime probe: %w", err)
	case time.Since(start) < idle/2:
		return false, errNoDelay
	}
	return true, nil
}

// LearnLifetime measures how long this socket's NAT mappings outlive
// silence: each of LifetimeProbes on its own alternate socket of the
// coordinator's STUN server (so the probes don't refresh each other, and
// nothing else this node sends uses those flows). It returns the longest
// silence survived, or zero when none was (or the server can't tell).
func (p *Prober) LearnLifetime(ctx context.Context, alternates []Target) (time.Duration, error) {
	n := min(len(alternates), len(LifetimeProbes))
	if n == 0 {
		return 0, errors.New("lifetime probe: the STUN server has no alternate address")
	}
	var (
		mu       sync.Mutex
		survived []time.Duration
		errs     []error
		wg       sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			ok, err := p.Survives(ctx, alternates[i], LifetimeProbes[i])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else if ok {
				survived = append(survived, LifetimeProbes[i])
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return 0, errors.Join(errs...)
	}
	if len(survived) == 0 {
		return 0, nil
	}
	return slices.Max(survived), nil
}

// Alternates are the server's other sockets (RFC 5780), as the mapping
// test found them: its primary IP with the other port, the other IP with
// the primary port, and the other IP and port. Nothing else this node
// sends goes there, so their flows can be left idle.
func Alternates(primary Target, other netip.AddrPort) []Target {
	if !other.IsValid() {
		return nil
	}
	addrs := []netip.AddrPort{
		netip.AddrPortFrom(primary.Addr.Addr(), other.Port()),
		netip.AddrPortFrom(other.Addr(), primary.Addr.Port()),
		other,
	}
	out := make([]Target, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, Target{Addr: a, Auth: primary.Auth})
	}
	return out
}
