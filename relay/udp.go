package relay

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/internal/wire"
)

// ServeUDP relays on pc until ctx is done (then it returns nil) or a read
// fails. It does not close pc; it unblocks the read with a past deadline
// when ctx is done. Datagrams that aren't relay frames are dropped and
// counted (not_relay).
func (s *Server) ServeUDP(ctx context.Context, pc net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() {
		pc.SetReadDeadline(time.Now()) //nolint:errcheck // best effort: unblocks ReadFrom
	})
	defer stop()
	send := func(pkt []byte, to netip.AddrPort) error {
		_, err := pc.WriteTo(pkt, net.UDPAddrFromAddrPort(to))
		return err
	}
	// maxFrame exceeds any UDP payload, so nothing is truncated.
	buf := make([]byte, maxFrame)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay: read %s: %w", pc.LocalAddr(), err)
		}
		from, ok := addrPort(addr)
		if !ok || wire.Classify(buf[:n]) != wire.KindRelay {
			s.metrics.count(resNotRelay)
			continue
		}
		s.HandlePacket(buf[:n], from, send)
	}
}

// addrPort converts a PacketConn's source address.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return ap, ap.IsValid()
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}
