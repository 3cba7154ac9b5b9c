package meshdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Port is DNS's port (RFC 1035 §4.2), where the OS expects a resolver.
const Port = 53

// Server timing.
const (
	// startTimeout bounds a DNS server's start on a socket already open.
	startTimeout = 5 * time.Second
	// shutdownTimeout bounds waiting for queries in progress on Close.
	shutdownTimeout = time.Second
	// queryBuffer is the largest query read over UDP: a query is small,
	// but EDNS options may take it past 512 bytes (RFC 6891 §6.2.5).
	queryBuffer = 4096
)

// qrBit is the header's QR flag: set in responses (RFC 1035 §4.1.1).
const qrBit = 1 << 15

// Listeners open the resolver's sockets on one overlay address: the
// kernel's, or a test's user-space network stack.
type Listeners struct {
	Packet func(netip.AddrPort) (net.PacketConn, error)
	Stream func(netip.AddrPort) (net.Listener, error)
}

// KernelListeners open the host's sockets.
func KernelListeners() Listeners {
	return Listeners{
		Packet: func(ap netip.AddrPort) (net.PacketConn, error) {
			return net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		},
		Stream: func(ap netip.AddrPort) (net.Listener, error) {
			return net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
		},
	}
}

// Server is the resolver listening on the node's overlay addresses.
type Server struct {
	servers []*dns.Server
	addrs   []netip.AddrPort
}

// Serve listens with h on UDP and TCP at each address (the overlay
// addresses, port Port). It serves on every address it could open; the
// error names those it could not.
func Serve(h *Handler, addrs []netip.AddrPort, l Listeners) (*Server, error) {
	s := &Server{}
	var errs []error
	for _, ap := range addrs {
		if err := s.serve(h, ap, l); err != nil {
			errs = append(errs, err)
		}
	}
	return s, errors.Join(errs...)
}

// serve opens both sockets on ap and starts a DNS server on each, or on
// neither.
func (s *Server) serve(h *Handler, ap netip.AddrPort, l Listeners) error {
	pc, err := l.Packet(ap)
	if err != nil {
		return fmt.Errorf("resolver on udp %s: %w", ap, err)
	}
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		ap = ua.AddrPort() // the port a test's listener chose
	}
	ln, err := l.Stream(ap)
	if err != nil {
		pc.Close()
		return fmt.Errorf("resolver on tcp %s: %w", ap, err)
	}
	servers := []*dns.Server{
		h.server(&dns.Server{PacketConn: guardConn{PacketConn: pc, admit: h.admit}}),
		h.server(&dns.Server{Listener: guardListener{Listener: ln, admit: h.admit, slots: make(chan struct{}, h.limit.l.TCPConns)}}),
	}
	for i, srv := range servers {
		if err := start(srv); err != nil {
			stop(servers[:i])
			pc.Close()
			ln.Close()
			return fmt.Errorf("resolver on %s: %w", ap, err)
		}
	}
	s.servers = append(s.servers, servers...)
	s.addrs = append(s.addrs, ap)
	return nil
}

// server completes a DNS server's settings for h.
func (h *Handler) server(srv *dns.Server) *dns.Server {
	srv.Handler = h
	srv.UDPSize = queryBuffer
	srv.MsgAcceptFunc = acceptQuery
	srv.MsgInvalidFunc = func([]byte, error) { h.Stats.Malformed.Add(1) }
	return srv
}

// acceptQuery lets queries through to the handler: responses are dropped
// (answering them could loop two resolvers), other opcodes (NOTIFY,
// UPDATE) get NOTIMP, and malformed headers FORMERR.
func acceptQuery(dh dns.Header) dns.MsgAcceptAction {
	if dh.Bits&qrBit != 0 {
		return dns.MsgIgnore
	}
	if opcode := int(dh.Bits>>11) & 0xF; opcode != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented
	}
	return dns.DefaultMsgAcceptFunc(dh)
}

// start runs srv on its socket and returns once it serves.
func start(srv *dns.Server) error {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	failed := make(chan error, 1)
	go func() { failed <- srv.ActivateAndServe() }()
	select {
	case <-started:
		return nil
	case err := <-failed:
		return err
	case <-time.After(startTimeout):
		return fmt.Errorf("DNS server not started after %v", startTimeout)
	}
}

// Addrs are the addresses the resolver serves on.
func (s *Server) Addrs() []netip.AddrPort { return s.addrs }

// Close stops serving and closes the sockets.
func (s *Server) Close() { stop(s.servers) }

// stop shuts servers down, which closes their sockets.
func stop(servers []*dns.Server) {
	for _, srv := range servers {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		srv.ShutdownContext(ctx) //nolint:errcheck // closing; the sockets go either way
		cancel()
	}
}
