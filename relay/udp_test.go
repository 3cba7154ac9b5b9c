package relay

import (
	"net"
	"net/netip"
	"runtime"
	"testing"

	"github.com/meshnode/meshnode/internal/wire"
)

// TestFramesLeaveFromTheBoundPort: a frame to a node leaves from the
// address the node bound to, so its NAT lets it in: through the reading
// socket when that shares the address (no two readers write one socket),
// through the node's own socket when it bound to another address (another
// of the coordinator's STUN ports).
func TestFramesLeaveFromTheBoundPort(t *testing.T) {
	tests := []struct {
		name     string
		samePort bool
		wantVia  string // which socket sends the frame to b
	}{
		{"b bound through another socket of the port", true, "reader"},
		{"b bound through another port", false, "b's socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, coord, pa, pb := benchRelay(t)
			port := &udpPort{}
			readerConn, bConn := &fakeConn{}, &fakeConn{}
			reader := &udpSock{port: port, conn: readerConn}
			bPort := port
			if !tt.samePort {
				bPort = &udpPort{}
			}
			bSock := &udpSock{port: bPort, conn: bConn}
			fromA, fromB := netip.MustParseAddrPort("198.18.1.1:41820"), netip.MustParseAddrPort("198.18.2.1:41820")
			bindVia(t, s, reader, coord.Public(), pa, fromA, func() []byte { return last(readerConn) })
			bindVia(t, s, bSock, coord.Public(), pb, fromB, func() []byte { return last(bConn) })
			*readerConn, *bConn = fakeConn{}, fakeConn{}

			p := wgPacket(200, 1)
			deliver(s, reader, wire.AppendRelayData(nil, pb.Public(), p), fromA)
			got := map[string]*fakeConn{"reader": readerConn, "b's socket": bConn}
			for name, c := range got {
				want := 0
				if name == tt.wantVia {
					want = 1
				}
				if len(c.sent) != want {
					t.Errorf("%s sent %d frames, want %d", name, len(c.sent), want)
				}
			}
			via := got[tt.wantVia]
			if len(via.sent) == 1 {
				f, err := wire.ParseRelay(via.sent[0])
				if err != nil || f.Key != pa.Public() || via.to[0] != fromB {
					t.Errorf("sent %+v (%v) to %v, want a's packet to b at %v", f, err, via.to[0], fromB)
				}
			}
		})
	}
}

// last returns the last frame c sent.
func last(c *fakeConn) []byte { return c.sent[len(c.sent)-1] }

// TestManySocketsOneTable: nodes spread by the kernel over the sockets of
// one port reach each other, whichever socket each bound through.
func TestManySocketsOneTable(t *testing.T) {
	h := newHarness(t, false)
	const n = 8
	nodes := make([]*udpNode, n)
	for i := range nodes {
		nodes[i] = h.newUDPNode(t, newKey(t))
		h.auth.add(nodes[i].pub)
	}
	for i := range nodes {
		h.auth.peer(nodes[i].pub, nodes[(i+1)%n].pub)
		nodes[i].handshake(h.coord.Public())
	}
	for i, from := range nodes {
		to := nodes[(i+1)%n]
		p := wgPacket(100+i, byte(i))
		from.send(wire.AppendRelayData(nil, to.pub, p))
		expectData(t, to, from.pub, p)
	}
}

// TestListenUDP: the sockets share one address, and an address in use is
// refused, even by a group of sockets that share theirs.
func TestListenUDP(t *testing.T) {
	conns, err := ListenUDP("udp4", "127.0.0.1:0", 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeConns(conns) })
	want := 3
	if runtime.GOOS != "linux" {
		want = 1
	}
	if len(conns) != want {
		t.Fatalf("%d sockets, want %d", len(conns), want)
	}
	addr := conns[0].LocalAddr().String()
	for _, c := range conns[1:] {
		if c.LocalAddr().String() != addr {
			t.Errorf("socket on %s, want all on %s", c.LocalAddr(), addr)
		}
	}
	single, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { single.Close() })
	for _, taken := range []string{addr, single.LocalAddr().String()} {
		if more, err := ListenUDP("udp4", taken, 2); err == nil {
			closeConns(more)
			t.Errorf("ListenUDP on %s, which is in use: no error", taken)
		}
	}
}

// closeConns closes conns.
func closeConns(conns []net.PacketConn) {
	for _, c := range conns {
		c.Close()
	}
}
