package discovery

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/pion/stun/v3"

	"github.com/meshnode/meshnode/internal/underlay"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/portmap"
)

// Netcheck timing. Each step is bounded on its own, so a silent server
// costs seconds, not the minute a full STUN retransmission schedule takes.
const (
	// firstAnswerTimeout bounds the wait for a server's first answer:
	// sends at 0, 0.5, 1.5 and 3.5 s (stunRTO doubling). Silence after that
	// means UDP to that server is blocked.
	firstAnswerTimeout = 5 * time.Second
	// mappingTimeout bounds the RFC 5780 §4.3 mapping test's queries.
	mappingTimeout = 10 * time.Second
	// hairpinWait is how long our own request may take to loop back: a
	// hairpinning NAT returns it within the LAN's round trip. It is sent
	// twice, one stunRTO apart, against a lost packet.
	hairpinWait = 2 * stunRTO
	// latencySamples: the minimum of a few round trips hides one delayed
	// by a retransmission or a scheduling hiccup.
	latencySamples = 3
)

// Report is what `meshnode netcheck` prints; the JSON is an interface for
// scripts.
type Report struct {
	UDP            bool                `json:"udp"`            // a STUN server answered over UDP
	PublicAddress  string              `json:"public_address"` // ip:port the server saw; "" without UDP
	Mapping        wire.NATMapping     `json:"mapping"`        // RFC 4787 §4.1
	Filtering      wire.NATFiltering   `json:"filtering"`      // RFC 4787 §5
	PortAllocation wire.PortAllocation `json:"port_allocation"`
	PortStep       int                 `json:"port_step"` // sequential allocators' step, else 0
	// Hairpin: does a packet to our own public address come back (RFC 4787
	// §6)? nil when unknown.
	Hairpin     *bool       `json:"hairpin"`
	LatencyMs   *float64    `json:"latency_ms"`  // to the STUN server; nil without UDP
	STUNServer  string      `json:"stun_server"` // the server answering, as given
	PortMapping PortMapping `json:"port_mapping"`
	// Notes explain unknowns and surprises, one sentence each.
	Notes []string `json:"notes"`
}

// PortMapping is which port-mapping services the gateway answers.
type PortMapping struct {
	NATPMP  bool   `json:"nat_pmp"`
	PCP     bool   `json:"pcp"`
	UPnP    bool   `json:"upnp"`
	Gateway string `json:"gateway"` // the default gateway; "" when none was found
}

// NetcheckOptions say what to test against.
type NetcheckOptions struct {
	// Servers are STUN servers (host:port), the coordinator's primary
	// first; the first that answers is used.
	Servers []string
	// LocalAddrs lists the host's addresses, to tell "no NAT" (nil: every
	// interface address).
	LocalAddrs func() []netip.Addr
	// PortMap says where to look for NAT-PMP, PCP and UPnP (zero: the
	// default gateway and the SSDP group).
	PortMap portmap.ProbeOptions
	// Timing bounds the waits for answers (zero: the defaults).
	Timing NetcheckTiming
}

// NetcheckTiming bounds netcheck's waits for an answer. Each zero field
// means its default, sized for real networks; a test on loopback, where
// answers take microseconds, shortens the silences it has to wait out.
type NetcheckTiming struct {
	FirstAnswer time.Duration // each server's first answer; zero: 5 s (firstAnswerTimeout)
	Filter      time.Duration // each filtering probe; zero: 2 s (filterTimeout)
	Hairpin     time.Duration // our request looping back; zero: 1 s (hairpinWait)
}

func (t NetcheckTiming) firstAnswer() time.Duration {
	return orDefault(t.FirstAnswer, firstAnswerTimeout)
}

func (t NetcheckTiming) filter() time.Duration {
	return orDefault(t.Filter, filterTimeout)
}

func (t NetcheckTiming) hairpin() time.Duration {
	return orDefault(t.Hairpin, hairpinWait)
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Netcheck tests this host's UDP connectivity and NAT over its own socket
// (not the node's: it runs beside a running node without disturbing it).
// It returns what it learned by the time ctx ends; unknowns say why in
// Notes.
func Netcheck(ctx context.Context, opts NetcheckOptions) Report {
	rep := Report{Mapping: wire.MappingUnknown, Filtering: wire.FilteringUnknown, PortAllocation: wire.PortAllocUnknown, Notes: []string{}}
	pm := make(chan portmap.Result, 1)
	go func() { pm <- portmap.Probe(ctx, opts.PortMap) }()

	s, err := listenNetcheck()
	if err != nil {
		rep.note("%v", err)
	} else {
		s.run(ctx, &rep, opts)
		s.close()
	}
	rep.portMapping(<-pm)
	return rep
}

func (r *Report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// run fills the STUN half of the report.
func (s *netcheckSock) run(ctx context.Context, rep *Report, opts NetcheckOptions) {
	server, first, ok := s.firstAnswer(ctx, rep, opts.Servers, opts.Timing.firstAnswer())
	if !ok {
		rep.note("no STUN server answered over UDP: UDP is blocked on this network or the servers are down")
		return
	}
	rep.UDP, rep.PublicAddress = true, first.Mapped.String()
	rep.setLatency(s.latency(ctx, server, first.RTT, opts.Timing.firstAnswer()))

	// Filtering first, while the socket has talked to the primary only: the
	// mapping test's queries to the alternate address would open a NAT's
	// filter for it and pass an address-dependent filter off as
	// endpoint-independent.
	filtering := wire.FilteringUnknown
	if first.Other.IsValid() {
		f, err := s.prober.filtering(ctx, server, first.Other, opts.Timing.filter())
		if err != nil {
			rep.note("filtering test: %v", err)
		}
		filtering = f
	}
	mctx, cancel := context.WithTimeout(ctx, mappingTimeout)
	m, err := s.prober.ClassifyMapping(mctx, Target{Addr: server}, s.port(), localAddrs(opts.LocalAddrs))
	cancel()
	if err != nil {
		rep.note("mapping test incomplete: %v", err)
	}
	rep.Mapping, rep.PortAllocation, rep.PortStep, rep.Filtering = m.Behaviour, m.PortAlloc, m.PortStep, filtering
	if m.Public.IsValid() {
		rep.PublicAddress = m.Public.String()
	}
	switch {
	case m.Behaviour == wire.MappingNone:
		rep.noNATFiltering(filtering, first.Other.IsValid())
	case !first.Other.IsValid():
		rep.note("the STUN server has no alternate address (RFC 5780 OTHER-ADDRESS), so the NAT's mapping and filtering can't be tested; start the coordinator with --stun-alternate")
	}
	if m.Public.IsValid() {
		rep.Hairpin = s.hairpin(ctx, rep, m.Public, opts.Timing.hairpin())
	}
}

// noNATFiltering reads the filtering test without a NAT: what filters then
// is a stateful firewall, if anything.
func (r *Report) noNATFiltering(filtering wire.NATFiltering, tested bool) {
	switch {
	case !tested:
		r.Filtering = wire.FilteringNone
		r.note("no NAT; the STUN server has no alternate address (RFC 5780 OTHER-ADDRESS), so a firewall's filtering was not tested")
	case filtering == wire.FilteringEndpointIndependent:
		r.Filtering = wire.FilteringNone
	case filtering != wire.FilteringUnknown:
		r.note("no NAT, but a firewall drops unsolicited UDP (%s filtering): peers reach this host after hole punching", filtering)
	}
}

// firstAnswer queries the servers in order, each for up to timeout, and
// returns the first that answers, with its answer.
func (s *netcheckSock) firstAnswer(ctx context.Context, rep *Report, servers []string, timeout time.Duration) (netip.AddrPort, Response, bool) {
	for _, name := range servers {
		addr, err := ResolveSTUN(ctx, name)
		if err != nil {
			rep.note("STUN server %s: %v", name, err)
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, timeout)
		r, err := s.prober.Query(qctx, Target{Addr: addr}, 0)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			rep.note("STUN server %s did not answer within %v", name, timeout)
			continue
		case err != nil:
			rep.note("STUN server %s: %v", name, err)
			continue
		}
		rep.STUNServer = name
		return addr, r, true
	}
	return netip.AddrPort{}, Response{}, false
}

// latency is the least round trip of a few queries, first's included, each
// bounded by timeout.
func (s *netcheckSock) latency(ctx context.Context, server netip.AddrPort, first, timeout time.Duration) time.Duration {
	best := first
	for range latencySamples - 1 {
		qctx, cancel := context.WithTimeout(ctx, timeout)
		r, err := s.prober.Query(qctx, Target{Addr: server}, 0)
		cancel()
		if err == nil {
			best = min(best, r.RTT)
		}
	}
	return best
}

func (r *Report) setLatency(d time.Duration) {
	ms := math.Round(float64(d.Microseconds())/10) / 100 // two decimals
	r.LatencyMs = &ms
}

// filtering runs the RFC 5780 §4.4 filtering test: ask for an answer from
// the other IP and port, then from the other port only. Each answer must
// come from the address asked for: a server that ignores CHANGE-REQUEST
// answers from the primary and would pass for endpoint-independent. Each
// step waits up to timeout: its silence is the answer.
func (p *Prober) filtering(ctx context.Context, primary, other netip.AddrPort, timeout time.Duration) (wire.NATFiltering, error) {
	steps := []struct {
		flags     uint32
		from      netip.AddrPort
		behaviour wire.NATFiltering
	}{
		{ChangeIP | ChangePort, other, wire.FilteringEndpointIndependent},
		{ChangePort, netip.AddrPortFrom(primary.Addr(), other.Port()), wire.FilteringAddressDependent},
	}
	if err := checkOther(primary, other); err != nil {
		return wire.FilteringUnknown, err
	}
	for _, st := range steps {
		qctx, cancel := context.WithTimeout(ctx, timeout)
		r, err := p.Query(qctx, Target{Addr: primary}, st.flags)
		cancel()
		switch {
		case err == nil && r.Origin != st.from:
			return wire.FilteringUnknown, fmt.Errorf("asked %s for an answer from %s, got one from %s: the server ignores CHANGE-REQUEST (RFC 5780)", primary, st.from, r.Origin)
		case err == nil:
			return st.behaviour, nil
		case ctx.Err() != nil:
			return wire.FilteringUnknown, ctx.Err()
		}
	}
	return wire.FilteringAddressPortDependent, nil
}

// hairpin sends a Binding request from the socket to our own public
// address and reports whether it arrives back within wait (RFC 4787 §6,
// RFC 5780 §4.5).
func (s *netcheckSock) hairpin(ctx context.Context, rep *Report, public netip.AddrPort, wait time.Duration) *bool {
	msg, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		rep.note("hairpin test: build request: %v", err)
		return nil
	}
	back := s.armHairpin(msg.TransactionID)
	defer s.disarmHairpin()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	resend := time.NewTicker(stunRTO)
	defer resend.Stop()
	for {
		if err := s.WriteTo(msg.Raw, public); err != nil {
			rep.note("hairpin test: %v", err)
			return nil
		}
		select {
		case <-back:
			return new(true)
		case <-resend.C:
		case <-deadline.C:
			return new(false)
		case <-ctx.Done():
			return nil
		}
	}
}

// portMapping fills the port-mapping half of the report.
func (r *Report) portMapping(pm portmap.Result) {
	r.PortMapping = PortMapping{NATPMP: pm.NATPMP, PCP: pm.PCP, UPnP: pm.UPnP}
	if pm.GatewayErr != nil {
		r.note("port mapping: %v", pm.GatewayErr)
		return
	}
	r.PortMapping.Gateway = pm.Gateway.String()
	var refused *portmap.ResultError
	for _, err := range []error{pm.NATPMPErr, pm.PCPErr} {
		if errors.As(err, &refused) {
			r.note("port mapping: the gateway answers but refuses: %v", refused)
		}
	}
	public, err := netip.ParseAddrPort(r.PublicAddress)
	if pm.NATPMP && err == nil && r.Mapping != wire.MappingNone && !pm.ExternalIP.IsUnspecified() && pm.ExternalIP != public.Addr() {
		r.note("the gateway's external address %s is not the public address %s: a second NAT (carrier-grade?) sits beyond it, so a port mapped on the gateway won't be reachable from the internet", pm.ExternalIP, public.Addr())
	}
}

// localAddrs are the host's addresses, loopback included: a public address
// equal to any of them means no NAT.
func localAddrs(f func() []netip.Addr) []netip.Addr {
	if f != nil {
		return f()
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

// ResolveSTUN resolves a STUN server's host:port, preferring IPv4
// (netcheck's socket is IPv4, as are most NATs).
func ResolveSTUN(ctx context.Context, s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil && !ap.Addr().Unmap().Is4() {
		return netip.AddrPort{}, fmt.Errorf("%s is not an IPv4 address; netcheck tests IPv4 NATs: give the server's IPv4 address or name", ap.Addr())
	}
	return ResolveSTUNFamily(ctx, s, false)
}

// ResolveSTUNFamily resolves a STUN server's host:port to an address of one
// family, IPv6 when v6 is set: a name by its A or AAAA records, a literal
// only when it is of that family.
func ResolveSTUNFamily(ctx context.Context, s string, v6 bool) (netip.AddrPort, error) {
	family, network := "IPv4", "ip4"
	if v6 {
		family, network = "IPv6", "ip6"
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		ip := ap.Addr().Unmap()
		if ip.Is6() != v6 {
			return netip.AddrPort{}, fmt.Errorf("%s is not an %s address", ip, family)
		}
		return netip.AddrPortFrom(ip, ap.Port()), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not host:port: %w", s, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, port)
	}
	ips, err := underlay.Resolver.LookupNetIP(ctx, network, host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolve %s (%s): %w", host, family, err)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(p)), nil
}

// netcheckSock is netcheck's own UDP socket: a read loop hands STUN answers
// to the prober and watches for our hairpinned request.
type netcheckSock struct {
	conn   UDPConn
	prober *Prober
	done   chan struct{}

	mu        sync.Mutex
	hairpinTx [stun.TransactionIDSize]byte
	hairpinCh chan struct{}
}

func listenNetcheck() (*netcheckSock, error) {
	c, err := underlay.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return nil, fmt.Errorf("open a UDP socket: %w", err)
	}
	return newNetcheckSock(c), nil
}

// UDPConn is a UDP socket of the host, or of the lab's emulated network.
type UDPConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	LocalAddr() net.Addr
	Close() error
}

func newNetcheckSock(c UDPConn) *netcheckSock {
	s := &netcheckSock{conn: c, done: make(chan struct{})}
	s.prober = NewProber(s)
	go s.readLoop()
	return s
}

// MeasureFiltering runs the RFC 5780 §4.4 filtering test against server,
// whose OTHER-ADDRESS is other, from c, and closes c. c must be a socket
// of its own that has sent nothing yet: a running node's shared socket
// has talked to other (the mapping test), which opened the NAT's filter
// for it. With noNAT (the mapping test found none), an endpoint-independent
// answer means nothing filters.
func MeasureFiltering(ctx context.Context, c UDPConn, server, other netip.AddrPort, noNAT bool) (wire.NATFiltering, error) {
	s := newNetcheckSock(c)
	defer s.close()
	f, err := s.prober.filtering(ctx, server, other, filterTimeout)
	if noNAT && f == wire.FilteringEndpointIndependent {
		f = wire.FilteringNone
	}
	return f, err
}

// WriteTo implements Transport.
func (s *netcheckSock) WriteTo(pkt []byte, to netip.AddrPort) error {
	_, err := s.conn.WriteToUDPAddrPort(pkt, to)
	return err
}

// port is the socket's own; netcheck's sockets are the host's.
func (s *netcheckSock) port() uint16 { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

func (s *netcheckSock) close() {
	s.conn.Close()
	<-s.done
}

func (s *netcheckSock) readLoop() {
	defer close(s.done)
	buf := make([]byte, maxSTUNPacket)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		pkt := buf[:n]
		if !stun.IsMessage(pkt) {
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		m := &stun.Message{Raw: pkt}
		if m.Decode() == nil && m.Type == stun.BindingRequest {
			s.hairpinned(m.TransactionID)
			continue
		}
		s.prober.HandleSTUN(pkt, from)
	}
}

// maxSTUNPacket bounds a read; STUN over UDP stays within the path MTU
// (RFC 8489 §6.1).
const maxSTUNPacket = 1500

// armHairpin makes the read loop signal the returned channel when our
// request with id arrives.
func (s *netcheckSock) armHairpin(id [stun.TransactionIDSize]byte) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hairpinTx, s.hairpinCh = id, make(chan struct{}, 1)
	return s.hairpinCh
}

func (s *netcheckSock) disarmHairpin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hairpinCh = nil
}

func (s *netcheckSock) hairpinned(id [stun.TransactionIDSize]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hairpinCh != nil && id == s.hairpinTx {
		select {
		case s.hairpinCh <- struct{}{}:
		default:
		}
	}
}
