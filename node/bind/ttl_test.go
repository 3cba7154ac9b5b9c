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
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	pc := ipv4.NewPacketConn(rx)
	if err := pc.SetControlMessage(ipv4.FlagTTL, true); err != nil {
		t.Fatal(err)
	}
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()

	s := NewStdNet()
	_, port, err := s.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	read := func() (int, uint16) {
		t.Helper()
		buf := make([]byte, 64)
		if err := rx.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		_, cm, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		return cm.TTL, uint16(from.(*net.UDPAddr).Port)
	}
	if err := s.SendTTL([]byte("prime"), to, 2); err != nil {
		t.Fatalf("SendTTL: %v", err)
	}
	if ttl, from := read(); ttl != 2 || from != port {
		t.Errorf("primed packet: TTL %d from port %d, want TTL 2 from the bind's %d", ttl, from, port)
	}
	if err := s.Send([][]byte{[]byte("data")}, &conn.StdNetEndpoint{AddrPort: to}); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := read(); ttl == 2 {
		t.Errorf("a WireGuard send after the primed one left with TTL %d: the socket's TTL changed", ttl)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.SendTTL([]byte("x"), to, 2); !errors.Is(err, ErrNoTTL) {
		t.Errorf("SendTTL after Close: %v, want ErrNoTTL", err)
	}
	// A rebind reopens the same port: no duplicate may still hold it.
	if _, again, err := s.Open(port); err != nil || again != port {
		t.Fatalf("reopen port %d: got %d, %v", port, again, err)
	}
	if err := s.SendTTL([]byte("again"), netip.AddrPortFrom(to.Addr(), to.Port()), 3); err != nil {
		t.Errorf("SendTTL after the rebind: %v", err)
	}
	if ttl, _ := read(); ttl != 3 {
		t.Errorf("after the rebind: TTL %d, want 3", ttl)
	}
	s.Close()
}
