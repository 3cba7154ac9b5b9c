package admit

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// A client that closed its connection while it waited in the listen queue
// is closed at accept, counted as gone, and never handed to the server:
// the next client is.
func TestAcceptSkipsClientsThatLeft(t *testing.T) {
	var gone atomic.Int32
	g := New(Limits{PerSource: 10, Total: 10, Timeout: waitTimeout}, func(reason string) {
		if reason == ClosedGone {
			gone.Add(1)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := g.Listener(ln)
	defer gl.Close()

	left, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := left.Write([]byte("left")); err != nil {
		t.Fatal(err)
	}
	left.Close()
	stays, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stays.Close()
	if _, err := stays.Write([]byte("stay")); err != nil {
		t.Fatal(err)
	}

	c, err := gl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "stay" {
		t.Fatalf("accepted the connection that sent %q (%v), want the one still there", got, err)
	}
	if n := gone.Load(); n != 1 {
		t.Fatalf("%d connections counted gone, want 1", n)
	}
	if p := g.Pending(); p != 1 {
		t.Fatalf("%d pending, want 1: the one that left holds no place", p)
	}
}
