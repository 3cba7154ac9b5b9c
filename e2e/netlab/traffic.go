package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ping(8) options.
const (
	// pingWait is ping's per-reply wait (-W): an overlay RTT in the lab is
	// well under a millisecond, a first packet may wait for a handshake.
	pingWait = "2"
	// pingGap spaces echoes (-i), the shortest interval iputils allows
	// without flooding.
	pingGap = "0.2"
)

// pingReceived matches ping's summary, e.g. "3 packets transmitted, 3 received".
var pingReceived = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// PingResult is one run of ping(8).
type PingResult struct {
	Sent, Received int
	Output         string
}

// Ping runs `ping -c count` from n to addr. It fails when no echo came back,
// as ping's own exit status says.
func (n *Netns) Ping(ctx context.Context, addr netip.Addr, count int) (PingResult, error) {
	out, err := n.Exec(ctx, n.lab.tools.Ping, "-n", "-q", "-c", strconv.Itoa(count), "-W", pingWait, "-i", pingGap, addr.String())
	r := PingResult{Output: out}
	if m := pingReceived.FindStringSubmatch(out); m != nil {
		r.Sent, _ = strconv.Atoi(m[1])
		r.Received, _ = strconv.Atoi(m[2])
	}
	return r, err
}

// Prober sends a small UDP datagram every ProbeInterval across the overlay to
// an echo in another namespace and records when each one came back. It
// measures how long a path takes to recover from an event, and how long the
// first packet to a node that is just starting takes.
type Prober struct {
	mu      sync.Mutex
	sent    []time.Time // when each probe left
	replies []probeReply
	wg      sync.WaitGroup
	cancel  context.CancelFunc
	// target is where probes go: the peer's overlay address and the echo's
	// port; nil until Aim.
	target atomic.Pointer[netip.AddrPort]
	port   uint16
}

type probeReply struct{ sent, received time.Time }

// ProbeInterval spaces probes: the resolution of recovery times.
const ProbeInterval = 50 * time.Millisecond

// maxProbes bounds a prober's life (about 80 minutes of probes).
const maxProbes = 100_000

// StartProber starts an echo in to and probes addr there from from. Close
// stops both.
func StartProber(ctx context.Context, from, to *Netns, addr netip.Addr) (*Prober, error) {
	p, err := NewProber(ctx, from, to)
	if err != nil {
		return nil, err
	}
	p.Aim(addr)
	return p, nil
}

// NewProber starts an echo in to, on every IPv4 address that namespace has
// or will have (a node's overlay address appears only once it is up), and a
// sender in from that probes once Aim gives it the address. Close stops
// both.
func NewProber(ctx context.Context, from, to *Netns) (*Prober, error) {
	var echo, client *net.UDPConn
	if err := to.Do(func() (err error) {
		echo, err = net.ListenUDP("udp4", nil)
		return err
	}); err != nil {
		return nil, fmt.Errorf("probe echo in %s: %w", to.Name, err)
	}
	if err := from.Do(func() (err error) {
		client, err = net.ListenUDP("udp", nil)
		return err
	}); err != nil {
		echo.Close()
		return nil, fmt.Errorf("probe socket in %s: %w", from.Name, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &Prober{cancel: cancel, port: echo.LocalAddr().(*net.UDPAddr).AddrPort().Port()}
	context.AfterFunc(ctx, func() { echo.Close(); client.Close() })
	p.wg.Add(3)
	go func() { // echo
		defer p.wg.Done()
		buf := make([]byte, 64)
		for range maxProbes {
			n, src, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = echo.WriteToUDPAddrPort(buf[:n], src)
		}
	}()
	go func() { // receiver
		defer p.wg.Done()
		buf := make([]byte, 64)
		for range maxProbes {
			n, err := client.Read(buf)
			if err != nil {
				return
			}
			ns, err := strconv.ParseInt(string(buf[:n]), 10, 64)
			if err != nil {
				continue
			}
			p.mu.Lock()
			p.replies = append(p.replies, probeReply{sent: time.Unix(0, ns), received: time.Now()})
			p.mu.Unlock()
		}
	}()
	go func() { // sender
		defer p.wg.Done()
		tick := time.NewTicker(ProbeInterval)
		defer tick.Stop()
		for range maxProbes {
			if to := p.target.Load(); to != nil {
				now := time.Now()
				if _, err := client.WriteToUDPAddrPort([]byte(strconv.FormatInt(now.UnixNano(), 10)), *to); err == nil {
					p.mu.Lock()
					p.sent = append(p.sent, now)
					p.mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p, nil
}

// Aim starts probing addr (a node's overlay address), or moves the probes
// there.
func (p *Prober) Aim(addr netip.Addr) {
	to := netip.AddrPortFrom(addr, p.port)
	p.target.Store(&to)
}

// RecoveredAfter waits up to timeout for the reply to a probe sent at or
// after t0, and returns how long after t0 it arrived.
func (p *Prober) RecoveredAfter(ctx context.Context, t0 time.Time, timeout time.Duration) (time.Duration, error) {
	var d time.Duration
	err := Poll(ctx, timeout, ProbeInterval/2, func(context.Context) error {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, r := range p.replies {
			if !r.sent.Before(t0) {
				d = r.received.Sub(t0)
				return nil
			}
		}
		return errors.New("no probe sent after the event came back")
	})
	return d, err
}

// Answered counts the probes sent from t0 until t1 and how many of them
// came back: the loss across an event. Replies still in flight are not
// counted, so t1 should lie well before the call (an overlay RTT in the
// lab is far under a second).
func (p *Prober) Answered(t0, t1 time.Time) (sent, answered int) {
	in := func(t time.Time) bool { return !t.Before(t0) && t.Before(t1) }
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.sent {
		if in(t) {
			sent++
		}
	}
	for _, r := range p.replies {
		if in(r.sent) {
			answered++
		}
	}
	return sent, answered
}

// Close stops the prober.
func (p *Prober) Close() {
	p.cancel()
	p.wg.Wait()
}
