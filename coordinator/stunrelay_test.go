package coordinator_test

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/meshnode/meshnode/coordinator/stunserver"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/relay"
)

// stunClients is how many client sockets ask the shared port: enough that
// the kernel's hash spreads them over both of its sockets.
const stunClients = 8

// TestSTUNPortCarriesTheRelay: the STUN port, opened as Run opens it (two
// sockets sharing it here), answers STUN from every client and carries the
// UDP relay: two nodes bind through it, each from its own socket, and a
// frame from one reaches the other naming its sender.
func TestSTUNPortCarriesTheRelay(t *testing.T) {
	t.Parallel()
	h, nodes := mesh(t, "a", "b")
	conns, err := relay.ListenUDP("udp4", "127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- h.srv.ServeSTUN(ctx, stunserver.Conns{Primary: conns[0], PrimaryMore: conns[1:]})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeSTUN: %v", err)
		}
		for _, c := range conns {
			c.Close()
		}
	})
	port := conns[0].LocalAddr().(*net.UDPAddr)

	for i := range stunClients {
		c := udpClient(t)
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		resp := &stun.Message{Raw: exchange(t, c, port, req.Raw)}
		var mapped stun.XORMappedAddress
		if err := resp.Decode(); err != nil || mapped.GetFrom(resp) != nil {
			t.Fatalf("client %d: STUN answer %x: %v", i, resp.Raw, err)
		}
		if got, want := mapped.String(), c.LocalAddr().String(); got != want {
			t.Errorf("client %d: mapped address %s, want %s", i, got, want)
		}
	}

	a, b := udpClient(t), udpClient(t)
	for _, side := range []struct {
		n *node
		c *net.UDPConn
	}{{nodes[0], a}, {nodes[1], b}} {
		hello := wire.RelayFrame{Type: wire.RelayHello, Key: side.n.key()}.Marshal()
		f, err := wire.ParseRelay(exchange(t, side.c, port, hello))
		if err != nil || f.Type != wire.RelayChallenge {
			t.Fatalf("hello: %+v %v, want a challenge", f, err)
		}
		proof, err := crypto.Proof(side.n.priv, side.n.reg.CoordinatorKey, wire.RelayProofLabel, f.Challenge)
		if err != nil {
			t.Fatal(err)
		}
		auth := wire.RelayFrame{Type: wire.RelayAuth, Key: side.n.key(), Challenge: f.Challenge, Proof: proof}.Marshal()
		if f, err := wire.ParseRelay(exchange(t, side.c, port, auth)); err != nil || f.Type != wire.RelayOK {
			t.Fatalf("auth: %+v %v, want OK", f, err)
		}
	}
	payload := append([]byte{4, 0, 0, 0}, bytes.Repeat([]byte{0xAB}, 60)...) // a WireGuard transport message
	if _, err := a.WriteToUDP(wire.AppendRelayData(nil, nodes[1].key(), payload), port); err != nil {
		t.Fatal(err)
	}
	f, err := wire.ParseRelay(read(t, b))
	if err != nil || f.Type != wire.RelayData || f.Key != nodes[0].key() || !bytes.Equal(f.Payload, payload) {
		t.Fatalf("b got %+v (%v), want a's packet naming a", f, err)
	}
}

// udpClient is a loopback UDP socket closed with the test.
func udpClient(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends pkt to to from c and returns the answer.
func exchange(t *testing.T, c *net.UDPConn, to *net.UDPAddr, pkt []byte) []byte {
	t.Helper()
	if _, err := c.WriteToUDP(pkt, to); err != nil {
		t.Fatal(err)
	}
	return read(t, c)
}

// read returns the next datagram on c.
func read(t *testing.T, c *net.UDPConn) []byte {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(waitFor)) //nolint:errcheck // a missing answer fails the read
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer on %s: %v", c.LocalAddr(), err)
	}
	return buf[:n]
}
