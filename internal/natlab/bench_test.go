package natlab

import (
	"testing"
)

// BenchmarkRoundTrip measures one request and reply through a
// port-restricted NAT, the path every meshnode packet takes in lab tests.
func BenchmarkRoundTrip(b *testing.B) {
	l := New(nil)
	defer l.Close()
	server, err := l.NewHost("server").ListenPacket(ap("0.0.0.0:3478"))
	if err != nil {
		b.Fatal(err)
	}
	nat, err := l.NewNAT(named(PortRestrictedCone(), "nat"))
	if err != nil {
		b.Fatal(err)
	}
	client, err := nat.NewHost("client").ListenPacket(ap("0.0.0.0:5000"))
	if err != nil {
		b.Fatal(err)
	}
	msg, buf := make([]byte, 1280), make([]byte, 2048)
	b.SetBytes(int64(2 * len(msg)))
	for b.Loop() {
		if _, err := client.WriteToUDPAddrPort(msg, server.LocalAddrPort()); err != nil {
			b.Fatal(err)
		}
		_, src, err := server.ReadFromUDPAddrPort(buf)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := server.WriteToUDPAddrPort(msg, src); err != nil {
			b.Fatal(err)
		}
		if _, _, err := client.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}
