// Package stunserver answers STUN Binding requests (RFC 5389/8489) on UDP,
// with the RFC 5780 attributes that let a node classify its NAT: with four
// sockets on two IPs and two ports it reports OTHER-ADDRESS and honours
// CHANGE-REQUEST, replying from the socket whose IP and/or port differ.
//
// What it refuses, and why:
//   - Datagrams that are not well-formed RFC 5389 messages are dropped
//     silently (RFC 5389 §7.3) and counted: the top two bits of the type
//     set, a length that disagrees with the datagram or is not a multiple
//     of 4 (§6), a body that doesn't decode, a wrong FINGERPRINT (§15.5).
//   - Classic RFC 3489 requests (no magic cookie) are dropped and counted
//     as ResultClassic. RFC 5389 §12.2 says a server that is backwards
//     compatible with RFC 3489 SHOULD NOT share its port with another
//     protocol, and this port carries the relay's frames too. The classic
//     client Debian ships (stun-client) puts CHANGE-REQUEST in every
//     request, which §12.2 would answer with 420 anyway.
//   - Comprehension-required attributes it does not implement get 420
//     (Unknown Attribute) with UNKNOWN-ATTRIBUTES (RFC 5389 §7.3.1). That
//     includes CHANGE-REQUEST, of any value, when the server has no
//     alternate address (RFC 5780 §6), and RESPONSE-PORT and PADDING
//     (RFC 5780 §7.5-7.6). RESPONSE-PORT is optional for servers and
//     clients must expect 420 for it (§5, §7.5); it would aim responses at
//     another port of the client's IP, which behind a carrier-grade NAT
//     belongs to someone else. PADDING is left out on purpose: honouring
//     it (§6.1) means answering with a response as large as the MTU,
//     whatever the request's size, an amplifier.
package stunserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pion/stun/v3"

	"github.com/meshnode/meshnode/internal/admit"
)

// Conns are the sockets the server answers on. Only Primary is required.
// With all four, the server behaves as an RFC 5780 server: OTHER-ADDRESS
// names the socket with the other IP and port than the one a request came
// in on, and CHANGE-REQUEST is answered from the right socket. V6, when
// set, serves IPv6 on its own: a plain Binding server (IPv6 is rarely
// NATed, so no RFC 5780 tests there), and the relay.
type Conns struct {
	Primary   net.PacketConn // IP1:P1
	AltPort   net.PacketConn // IP1:P2
	AltIP     net.PacketConn // IP2:P1
	Alternate net.PacketConn // IP2:P2
	V6        net.PacketConn
	// PrimaryMore and V6More are more sockets on Primary's and V6's
	// addresses, sharing them with SO_REUSEPORT (relay.ListenUDP): the
	// relay on those addresses spreads over cores, a reader per socket.
	// Answers leave from Primary and V6, the same addresses.
	PrimaryMore, V6More []net.PacketConn
}

// Results, one per received packet, for the requests metric.
const (
	ResultOK                = "ok"                 // a Binding success response was sent
	ResultGarbage           = "garbage"            // not a STUN message
	ResultClassic           = "classic"            // an RFC 3489 message (no magic cookie): dropped
	ResultMalformed         = "malformed"          // a STUN header whose length is wrong, whose body doesn't decode or whose FINGERPRINT is wrong
	ResultIgnored           = "ignored"            // valid STUN but not a Binding request
	ResultRateLimited       = "rate_limited"       // over the source's budget
	ResultUnknownAttribute  = "unknown_attribute"  // a comprehension-required attribute not implemented: 420 sent
	ResultChangeUnsupported = "change_unsupported" // CHANGE-REQUEST without an alternate address: 420 sent
	ResultSendError         = "send_error"         // the reply could not be sent
)

// maxDatagram bounds a read: a whole UDP datagram. STUN over UDP stays
// under the path MTU (RFC 8489 §6.1) except with PADDING (RFC 5780 §7.6),
// which exists to exceed it; reading it whole lets such a request get its
// 420 rather than be truncated into a length mismatch.
const maxDatagram = 1 << 16

// headerLen is the STUN header's length (RFC 5389 §6).
const headerLen = 20

// maxUnknown bounds the attributes a 420 response lists. RFC 5389 §7.3.1
// asks for the unknown ones; a request with more than a few is broken or
// hostile, and listing all of a 64 KiB request's would make a response
// big enough to fragment.
const maxUnknown = 16

// Change-request flags (RFC 5780 §7.2).
const (
	changeIP   = 0x04
	changePort = 0x02
)

// Options configure a Server.
type Options struct {
	Software string              // SOFTWARE attribute (RFC 8489 §14.14)
	Logger   *slog.Logger        // nil discards
	Count    func(result string) // called once per packet; nil ignores
	// Relay, when set, reads the sockets: it serves the relay frames
	// (wire.RelayMagic) that share the STUN ports, before STUN's rate
	// limit (the relay limits per node itself), and hands every other
	// datagram to stun, on the goroutine that read it. It is called once
	// per address, with that address's sockets, and returns when ctx is
	// done (relay.Server.ServeUDP).
	Relay func(ctx context.Context, conns []net.PacketConn, stun func(pkt []byte, from net.Addr)) error
	// Auth checks requests that carry USERNAME and MESSAGE-INTEGRITY; nil
	// treats those attributes as unknown (420).
	Auth Authenticator
}

// Server answers STUN Binding requests.
type Server struct {
	software string
	log      *slog.Logger
	count    func(string)
	relay    func(context.Context, []net.PacketConn, func([]byte, net.Addr)) error
	auth     Authenticator
	limit    *admit.Budgets
	late     *delayed
}

// New returns a Server.
func New(opts Options) *Server {
	s := &Server{software: opts.Software, log: opts.Logger, count: opts.Count, relay: opts.Relay, auth: opts.Auth, limit: newLimiter(maxSources), late: newDelayed()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.count == nil {
		s.count = func(string) {}
	}
	return s
}

// grid is the sockets as RFC 5780 §6.1 names them: bit otherIP of an index
// picks the IP (Da or Ca), bit otherPort the port (Dp or Cp).
type grid struct {
	conns [4]net.PacketConn
	more  [4][]net.PacketConn // more sockets on conns[i]'s address, read only
	addrs [4]netip.AddrPort   // invalid when a socket's address is unknown
	// alternate: all four sockets are there, so CHANGE-REQUEST and
	// OTHER-ADDRESS are supported.
	alternate bool
}

// Index bits of grid.
const (
	otherPort = 1
	otherIP   = 2
)

func newGrid(c Conns) (*grid, error) {
	if c.Primary == nil {
		return nil, errors.New("stun: no primary socket")
	}
	g := &grid{
		conns:     [4]net.PacketConn{c.Primary, c.AltPort, c.AltIP, c.Alternate},
		more:      [4][]net.PacketConn{c.PrimaryMore},
		alternate: c.AltPort != nil && c.AltIP != nil && c.Alternate != nil,
	}
	for i, pc := range g.conns {
		if pc == nil {
			continue
		}
		a, err := addrPort(pc.LocalAddr())
		switch {
		case err != nil && g.alternate:
			return nil, fmt.Errorf("stun: socket address: %w", err)
		case g.alternate && a.Addr().IsUnspecified():
			// OTHER-ADDRESS must name where the other socket answers from.
			return nil, fmt.Errorf("stun: with an alternate address each socket needs its own IP (RFC 5780 §6), not %v", a)
		case err == nil:
			g.addrs[i] = a
		}
	}
	return g, nil
}

// Serve answers on conns until ctx is done or a socket fails. It does not
// close the conns (the caller owns them); it unblocks their reads with a
// past read deadline when ctx is done.
func (s *Server) Serve(ctx context.Context, conns Conns) error {
	g, err := newGrid(conns)
	if err != nil {
		return err
	}
	grids := []*grid{g}
	if conns.V6 != nil {
		g6, err := newGrid(Conns{Primary: conns.V6, PrimaryMore: conns.V6More})
		if err != nil {
			return err
		}
		grids = append(grids, g6)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer s.late.close()
	stop := context.AfterFunc(ctx, func() {
		for _, g := range grids {
			for i := range g.conns {
				for _, c := range g.sockets(i) {
					c.SetReadDeadline(time.Now()) //nolint:errcheck // best effort: unblocks ReadFrom
				}
			}
		}
	})
	defer stop()

	var (
		wg   sync.WaitGroup
		once sync.Once
		fail error
	)
	run := func(f func() error) {
		wg.Go(func() {
			if err := f(); err != nil {
				once.Do(func() { fail = err })
				cancel()
			}
		})
	}
	for _, g := range grids {
		for i := range g.conns {
			socks := g.sockets(i)
			switch {
			case len(socks) == 0:
			case s.relay != nil:
				run(func() error {
					return s.relay(ctx, socks, func(pkt []byte, from net.Addr) { s.count(s.handle(pkt, from, g, i)) })
				})
			default:
				for _, c := range socks {
					run(func() error { return s.loop(ctx, g, i, c) })
				}
			}
		}
	}
	wg.Wait()
	return fail
}

// sockets are the sockets on socket i's address: it and the more that
// share it.
func (g *grid) sockets(i int) []net.PacketConn {
	if g.conns[i] == nil {
		return nil
	}
	return append([]net.PacketConn{g.conns[i]}, g.more[i]...)
}

// loop answers what c, a socket on socket recv's address, reads.
func (s *Server) loop(ctx context.Context, g *grid, recv int, c net.PacketConn) error {
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("stun: read on %v: %w", c.LocalAddr(), err)
		}
		s.count(s.handle(buf[:n], from, g, recv))
	}
}

// handle answers one packet that arrived on socket recv's address and
// returns its result.
func (s *Server) handle(pkt []byte, from net.Addr, g *grid, recv int) string {
	src, err := addrPort(from)
	if err != nil {
		return ResultGarbage
	}
	resp, via, result, late := s.respond(pkt, src, g, recv, time.Now())
	if resp == nil {
		return result
	}
	if late.d > 0 && late.user != "" && s.late.hold(late.user, late.d, g.conns[via], resp, from) {
		return ResultDelayed
	}
	if _, err := g.conns[via].WriteTo(resp, from); err != nil {
		s.log.Debug("stun: send", "to", from, "err", err)
		return ResultSendError
	}
	return result
}

// lateness is when a signed request asked for its answer to wait.
type lateness struct {
	user string
	d    time.Duration
}

// respond works out the answer to pkt, from src, received on socket recv
// at now: the response and the socket to send it from (nil when none is
// due), the result to count, and how long a signed request asked the
// answer to wait. It does no I/O.
func (s *Server) respond(pkt []byte, src netip.AddrPort, g *grid, recv int, now time.Time) ([]byte, int, string, lateness) {
	if !s.limit.Allow(src.Addr(), now) {
		return nil, 0, ResultRateLimited, lateness{}
	}
	if result := checkHeader(pkt); result != "" {
		return nil, 0, result, lateness{}
	}
	req := &stun.Message{Raw: pkt}
	if err := req.Decode(); err != nil {
		return nil, 0, ResultMalformed, lateness{}
	}
	if req.Type != stun.BindingRequest {
		return nil, 0, ResultIgnored, lateness{}
	}
	if req.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(req); err != nil {
			return nil, 0, ResultMalformed, lateness{}
		}
	}
	if unknown := unknownAttributes(req, g.alternate, s.auth != nil); len(unknown) > 0 {
		result := ResultUnknownAttribute
		if slices.Contains(unknown, stun.AttrChangeRequest) {
			result = ResultChangeUnsupported
		}
		return s.build(recv, result, stun.NewTransactionIDSetter(req.TransactionID), stun.BindingError,
			stun.CodeUnknownAttribute, stun.UnknownAttributes(unknown))
	}
	var mi stun.MessageIntegrity
	var late lateness
	if req.Contains(stun.AttrUsername) || req.Contains(stun.AttrMessageIntegrity) {
		user, integrity, code, result := s.authenticate(req)
		if integrity == nil {
			return s.build(recv, result, stun.NewTransactionIDSetter(req.TransactionID), stun.BindingError, code)
		}
		s.auth.Observed(user, src)
		mi = integrity
		// Only members may make the server hold an answer.
		late = lateness{user: user, d: requestedDelay(req)}
	}
	via := recv
	if v, err := req.Get(stun.AttrChangeRequest); err == nil {
		if len(v) != 4 {
			return nil, 0, ResultMalformed, lateness{}
		}
		// The other bits are unused (RFC 5780 §7.2).
		if v[3]&changeIP != 0 {
			via ^= otherIP
		}
		if v[3]&changePort != 0 {
			via ^= otherPort
		}
	}
	resp, via, result := s.buildSigned(via, ResultOK, mi, s.success(req, src, g, recv, via)...)
	return resp, via, result, late
}

// checkHeader applies the first checks of RFC 5389 §7.3 to pkt's header
// (§6). It returns the result that drops pkt, or "" to go on decoding.
func checkHeader(pkt []byte) string {
	switch {
	case len(pkt) < headerLen || pkt[0]&0xc0 != 0:
		return ResultGarbage
	case int(binary.BigEndian.Uint16(pkt[2:4])) != len(pkt)-headerLen || len(pkt)%4 != 0:
		// The length counts every byte after the header, in attributes
		// padded to 4 bytes; a datagram longer or shorter than that is
		// not one STUN message.
		if stun.IsMessage(pkt) {
			return ResultMalformed
		}
		return ResultGarbage
	case !stun.IsMessage(pkt):
		return ResultClassic
	}
	return ""
}

// unknownAttributes lists, once each and at most maxUnknown, the
// comprehension-required attributes of req (RFC 5389 §15) that the server
// does not implement. CHANGE-REQUEST is implemented only with an alternate
// address (RFC 5780 §6), USERNAME and MESSAGE-INTEGRITY only with an
// Authenticator.
func unknownAttributes(req *stun.Message, alternate, auth bool) []stun.AttrType {
	var unknown []stun.AttrType
	for _, a := range req.Attributes {
		known := a.Type == stun.AttrChangeRequest && alternate ||
			(a.Type == stun.AttrUsername || a.Type == stun.AttrMessageIntegrity) && auth
		if !a.Type.Required() || known || slices.Contains(unknown, a.Type) {
			continue
		}
		if unknown = append(unknown, a.Type); len(unknown) == maxUnknown {
			break
		}
	}
	return unknown
}

// success lists the Binding success response's attributes (RFC 5780 §6.1):
// XOR-MAPPED-ADDRESS and MAPPED-ADDRESS, RESPONSE-ORIGIN (the socket via,
// which sends it) and OTHER-ADDRESS. OTHER-ADDRESS is the other IP and
// port than the socket recv the request came in on (Ca:Cp of RFC 5780
// Table 1), whatever CHANGE-REQUEST asked: a client that starts at the
// alternate address is sent to the primary for its next test.
func (s *Server) success(req *stun.Message, src netip.AddrPort, g *grid, recv, via int) []stun.Setter {
	ip, port := src.Addr().AsSlice(), int(src.Port())
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(req.TransactionID),
		stun.BindingSuccess,
		&stun.XORMappedAddress{IP: ip, Port: port},
		&stun.MappedAddress{IP: ip, Port: port},
	}
	// An unspecified local address (a socket bound to 0.0.0.0) says nothing
	// about where the reply came from, so it is left out.
	if origin := g.addrs[via]; origin.IsValid() && !origin.Addr().IsUnspecified() {
		setters = append(setters, &stun.ResponseOrigin{IP: origin.Addr().AsSlice(), Port: int(origin.Port())})
	}
	if g.alternate {
		other := g.addrs[recv^(otherIP|otherPort)]
		setters = append(setters, &stun.OtherAddress{IP: other.Addr().AsSlice(), Port: int(other.Port())})
	}
	return setters
}

// build encodes a response with SOFTWARE and FINGERPRINT added, to be sent
// from socket via.
func (s *Server) build(via int, result string, setters ...stun.Setter) ([]byte, int, string, lateness) {
	resp, via, result := s.buildSigned(via, result, nil, setters...)
	return resp, via, result, lateness{}
}

// buildSigned is build with MESSAGE-INTEGRITY (when mi is not nil) after
// every other attribute but FINGERPRINT, which it must precede (RFC 8489
// §14.5, §14.7).
func (s *Server) buildSigned(via int, result string, mi stun.MessageIntegrity, setters ...stun.Setter) ([]byte, int, string) {
	if s.software != "" {
		setters = append(setters, stun.NewSoftware(s.software))
	}
	if mi != nil {
		setters = append(setters, mi)
	}
	m, err := stun.Build(append(setters, stun.Fingerprint)...)
	if err != nil {
		s.log.Warn("stun: build response", "err", err)
		return nil, 0, ResultSendError
	}
	return m.Raw, via, result
}

// addrPort reads any net.Addr (a *net.UDPAddr, or an emulator's own type
// whose String is host:port) as an unmapped netip.AddrPort.
func addrPort(a net.Addr) (netip.AddrPort, error) {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	if a == nil {
		return netip.AddrPort{}, errors.New("no address")
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", a.String(), err)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// LocalAddrPort is addrPort for callers that advertise a socket's address.
func LocalAddrPort(c net.PacketConn) (netip.AddrPort, error) { return addrPort(c.LocalAddr()) }
