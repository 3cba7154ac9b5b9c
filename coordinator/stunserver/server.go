// Package stunserver answers STUN Binding requests (RFC 5389/8489) on UDP,
// with the RFC 5780 attributes that let a node classify its NAT: with four
// sockets on two IPs and two ports it reports OTHER-ADDRESS and honours
// CHANGE-REQUEST, replying from the socket whose IP and/or port differ.
package stunserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v3"

	"github.com/meshnode/meshnode/internal/wire"
)

// Conns are the sockets the server answers on. Only Primary is required.
// With all four, the server behaves as an RFC 5780 server: OTHER-ADDRESS is
// Alternate's address and CHANGE-REQUEST is answered from the right socket.
type Conns struct {
	Primary   net.PacketConn // IP1:P1
	AltPort   net.PacketConn // IP1:P2
	AltIP     net.PacketConn // IP2:P1
	Alternate net.PacketConn // IP2:P2
}

// Results, one per received packet, for the requests metric.
const (
	ResultOK                = "ok"                 // a Binding success response was sent
	ResultGarbage           = "garbage"            // not a STUN message
	ResultRelay             = "relay"              // a relay frame, handed to the relay
	ResultMalformed         = "malformed"          // a STUN header whose body doesn't decode or whose FINGERPRINT is wrong
	ResultIgnored           = "ignored"            // valid STUN but not a Binding request
	ResultRateLimited       = "rate_limited"       // over the source's budget
	ResultChangeUnsupported = "change_unsupported" // CHANGE-REQUEST without the socket to honour it: 420 sent
	ResultSendError         = "send_error"         // the reply could not be sent
)

// maxPacket bounds a read. STUN over UDP should stay under the path MTU
// (RFC 8489 §6.1); anything longer is truncated and then fails to decode.
const maxPacket = 1500

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
	// Relay takes the relay frames (wire.RelayMagic) that share the STUN
	// port, before STUN's rate limit: the relay limits per node itself.
	// send answers from the socket the frame came in on.
	Relay func(pkt []byte, from netip.AddrPort, send func([]byte, netip.AddrPort) error)
}

// Server answers STUN Binding requests.
type Server struct {
	software string
	log      *slog.Logger
	count    func(string)
	relay    func([]byte, netip.AddrPort, func([]byte, netip.AddrPort) error)
	limit    *limiter
}

// New returns a Server.
func New(opts Options) *Server {
	s := &Server{software: opts.Software, log: opts.Logger, count: opts.Count, relay: opts.Relay, limit: newLimiter()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.count == nil {
		s.count = func(string) {}
	}
	return s
}

// socket is one of the four conns with its position in the 2×2 grid.
type socket struct {
	conn    net.PacketConn
	otherIP bool // IP2
	altPort bool // P2
}

// Serve answers on conns until ctx is done or a socket fails. It does not
// close the conns (the caller owns them); it unblocks their reads with a
// past read deadline when ctx is done.
func (s *Server) Serve(ctx context.Context, conns Conns) error {
	if conns.Primary == nil {
		return errors.New("stun: no primary socket")
	}
	grid := []socket{
		{conns.Primary, false, false},
		{conns.AltPort, false, true},
		{conns.AltIP, true, false},
		{conns.Alternate, true, true},
	}
	var other *netip.AddrPort
	if conns.AltPort != nil && conns.AltIP != nil && conns.Alternate != nil {
		a, err := addrPort(conns.Alternate.LocalAddr())
		if err != nil {
			return fmt.Errorf("stun: alternate address: %w", err)
		}
		other = &a
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		for _, g := range grid {
			if g.conn != nil {
				g.conn.SetReadDeadline(time.Now()) //nolint:errcheck // best effort: unblocks ReadFrom
			}
		}
	})
	defer stop()

	var (
		wg   sync.WaitGroup
		once sync.Once
		fail error
	)
	for _, g := range grid {
		if g.conn == nil {
			continue
		}
		wg.Go(func() {
			if err := s.loop(ctx, g, grid, other); err != nil {
				once.Do(func() { fail = err })
				cancel()
			}
		})
	}
	wg.Wait()
	return fail
}

func (s *Server) loop(ctx context.Context, g socket, grid []socket, other *netip.AddrPort) error {
	buf := make([]byte, maxPacket)
	for {
		n, from, err := g.conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("stun: read on %v: %w", g.conn.LocalAddr(), err)
		}
		s.count(s.handle(buf[:n], from, g, grid, other))
	}
}

// handle answers one packet and returns its result.
func (s *Server) handle(pkt []byte, from net.Addr, g socket, grid []socket, other *netip.AddrPort) string {
	src, err := addrPort(from)
	if err != nil {
		return ResultGarbage
	}
	if s.relay != nil && wire.Classify(pkt) == wire.KindRelay {
		s.relay(pkt, src, func(b []byte, to netip.AddrPort) error {
			_, err := g.conn.WriteTo(b, net.UDPAddrFromAddrPort(to))
			return err
		})
		return ResultRelay
	}
	if !s.limit.allow(src.Addr(), time.Now()) {
		return ResultRateLimited
	}
	if !stun.IsMessage(pkt) {
		return ResultGarbage
	}
	req := &stun.Message{Raw: append([]byte(nil), pkt...)}
	if err := req.Decode(); err != nil {
		return ResultMalformed
	}
	if req.Type != stun.BindingRequest {
		return ResultIgnored
	}
	if req.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(req); err != nil {
			return ResultMalformed
		}
	}
	reply := g
	if req.Contains(stun.AttrChangeRequest) {
		v, _ := req.Get(stun.AttrChangeRequest)
		if len(v) != 4 {
			return ResultMalformed
		}
		want := socket{otherIP: g.otherIP != (v[3]&changeIP != 0), altPort: g.altPort != (v[3]&changePort != 0)}
		reply = socket{}
		for _, c := range grid {
			if c.conn != nil && c.otherIP == want.otherIP && c.altPort == want.altPort {
				reply = c
			}
		}
		if reply.conn == nil {
			// RFC 5780 §6.1: a server that cannot honour CHANGE-REQUEST
			// answers 420 Unknown Attribute.
			return s.send(g.conn, from, s.unsupported(req), ResultChangeUnsupported)
		}
	}
	resp, err := s.success(req, src, reply.conn, other)
	if err != nil {
		s.log.Warn("stun: build response", "err", err)
		return ResultSendError
	}
	return s.send(reply.conn, from, resp, ResultOK)
}

func (s *Server) send(c net.PacketConn, to net.Addr, m *stun.Message, result string) string {
	if m == nil {
		return ResultSendError
	}
	if _, err := c.WriteTo(m.Raw, to); err != nil {
		s.log.Debug("stun: send", "to", to, "err", err)
		return ResultSendError
	}
	return result
}

// success builds the Binding success response: XOR-MAPPED-ADDRESS, and
// MAPPED-ADDRESS for RFC 3489-era clients, RESPONSE-ORIGIN and
// OTHER-ADDRESS (RFC 5780 §7.3-7.4), SOFTWARE, FINGERPRINT.
func (s *Server) success(req *stun.Message, src netip.AddrPort, from net.PacketConn, other *netip.AddrPort) (*stun.Message, error) {
	ip, port := src.Addr().AsSlice(), int(src.Port())
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(req.TransactionID),
		stun.BindingSuccess,
		&stun.XORMappedAddress{IP: ip, Port: port},
		&stun.MappedAddress{IP: ip, Port: port},
	}
	// An unspecified local address (a socket bound to 0.0.0.0) says nothing
	// about where the reply came from, so it is left out.
	if origin, err := addrPort(from.LocalAddr()); err == nil && !origin.Addr().IsUnspecified() {
		setters = append(setters, &stun.ResponseOrigin{IP: origin.Addr().AsSlice(), Port: int(origin.Port())})
	}
	if other != nil {
		setters = append(setters, &stun.OtherAddress{IP: other.Addr().AsSlice(), Port: int(other.Port())})
	}
	if s.software != "" {
		setters = append(setters, stun.NewSoftware(s.software))
	}
	setters = append(setters, stun.Fingerprint)
	return stun.Build(setters...)
}

func (s *Server) unsupported(req *stun.Message) *stun.Message {
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(req.TransactionID),
		stun.NewType(stun.MethodBinding, stun.ClassErrorResponse),
		stun.CodeUnknownAttribute,
		stun.UnknownAttributes{stun.AttrChangeRequest},
	}
	if s.software != "" {
		setters = append(setters, stun.NewSoftware(s.software))
	}
	m, err := stun.Build(append(setters, stun.Fingerprint)...)
	if err != nil {
		s.log.Warn("stun: build 420 response", "err", err)
		return nil
	}
	return m
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
