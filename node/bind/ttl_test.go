package bind

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.zx2c4.com/wireguard/conn"
)

// TestStdNetSendTTL: a packet sent with SendTTL leaves the shared socket's
// port with that TTL, while WireGuard's sends keep the default; closing
// leaves nothing holding the port.
func TestStdNetSendTTL(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("per-packet TTL on the StdNetBind's socket is implemented on Linux")
	}
	rx := newTTLReceiver(t)
	to := rx.addr()

	s := NewStdNet()
	_, port, err := s.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if !s.CanSendTTL() {
		t.Fatal("CanSendTTL is false: the StdNetBind's sockets weren't found")
	}
	if err := s.SendTTL([]byte("prime"), to, 2); err != nil {
		t.Fatalf("SendTTL: %v", err)
	}
	if ttl, from := rx.read(t); ttl != 2 || from != port {
		t.Errorf("primed packet: TTL %d from port %d, want TTL 2 from the bind's %d", ttl, from, port)
	}
	if err := s.Send([][]byte{[]byte("data")}, &conn.StdNetEndpoint{AddrPort: to}); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := rx.read(t); ttl == 2 {
		t.Errorf("a WireGuard send after the primed one left with TTL %d: the socket's TTL changed", ttl)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.SendTTL([]byte("x"), to, 2); !errors.Is(err, ErrNoTTL) || s.CanSendTTL() {
		t.Errorf("after Close: SendTTL %v (want ErrNoTTL), CanSendTTL %v", err, s.CanSendTTL())
	}
	// A rebind reopens the same port: no duplicate may still hold it.
	if _, again, err := s.Open(port); err != nil || again != port {
		t.Fatalf("reopen port %d: got %d, %v", port, again, err)
	}
	if err := s.SendTTL([]byte("again"), to, 3); err != nil {
		t.Errorf("SendTTL after the rebind: %v", err)
	}
	if ttl, _ := rx.read(t); ttl != 3 {
		t.Errorf("after the rebind: TTL %d, want 3", ttl)
	}
	s.Close()
}

// ttlReceiver is a loopback socket that reports each datagram's TTL.
type ttlReceiver struct {
	c  *net.UDPConn
	pc *ipv4.PacketConn
}

func newTTLReceiver(t *testing.T) ttlReceiver {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pc := ipv4.NewPacketConn(c)
	if err := pc.SetControlMessage(ipv4.FlagTTL, true); err != nil {
		t.Fatal(err)
	}
	return ttlReceiver{c, pc}
}

func (r ttlReceiver) addr() netip.AddrPort { return r.c.LocalAddr().(*net.UDPAddr).AddrPort() }

// read returns the next datagram's TTL and source port.
func (r ttlReceiver) read(t *testing.T) (int, uint16) {
	t.Helper()
	buf := make([]byte, 64)
	if err := r.c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, cm, from, err := r.pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	return cm.TTL, uint16(from.(*net.UDPAddr).Port)
}

// Bind.WriteTTL from an auxiliary socket (the birthday technique's) sets
// that packet's TTL; a shared socket that can't set it says so.
func TestBindWriteTTL(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("per-packet TTL on plain sockets is implemented on Linux")
	}
	rx := newTTLReceiver(t)
	aux := func() (UDPConn, error) { return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}) }
	b := newBind(staticRouter{}, (&recorder{}).handlers(), aux)
	if _, _, err := b.Open(0); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ids, err := b.OpenAux(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteTTL([]byte("prime"), rx.addr(), ids[0], 3); err != nil {
		t.Fatalf("WriteTTL from an auxiliary socket: %v", err)
	}
	if ttl, _ := rx.read(t); ttl != 3 {
		t.Errorf("auxiliary socket's packet: TTL %d, want 3", ttl)
	}
	// The shared socket here is a plain ConnBind over a *net.UDPConn,
	// which offers no per-packet TTL.
	if b.CanSendTTL() {
		t.Error("CanSendTTL is true for a socket that can't")
	}
	if err := b.WriteTTL([]byte("x"), rx.addr(), 0, 2); !errors.Is(err, ErrNoTTL) {
		t.Errorf("WriteTTL on the shared socket: %v, want ErrNoTTL", err)
	}
	for _, ttl := range []int{0, 256} {
		if err := b.WriteTTL([]byte("x"), rx.addr(), ids[0], ttl); err == nil {
			t.Errorf("TTL %d accepted", ttl)
		}
	}
}
