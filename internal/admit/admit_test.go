package admit

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/wait"
)

const waitTimeout = 10 * time.Second

// server accepts through a gate and keeps what it accepted.
type server struct {
	ln       net.Listener
	mu       sync.Mutex
	accepted []*Conn
	closed   map[string]int
}

func serve(t *testing.T, lim Limits) (*server, *Gate) {
	t.Helper()
	s := &server{closed: map[string]int{}}
	g := New(lim, func(reason string) {
		s.mu.Lock()
		s.closed[reason]++
		s.mu.Unlock()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln = g.Listener(ln)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.accepted = append(s.accepted, c.(*Conn))
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		s.ln.Close()
		<-done
		for _, c := range s.accepted {
			c.Close()
		}
	})
	return s, g
}

func (s *server) count(reason string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed[reason]
}

// dial connects from the loopback address from.
func (s *server) dial(t *testing.T, from string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer waits until the server has closed c.
func closedByServer(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitTimeout)) //nolint:errcheck // the read reports it
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: not closed by the server (%v)", what, err)
	}
}

// open reports whether the server still holds c open.
func open(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond)) //nolint:errcheck // the read reports it
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestPerSourceCap(t *testing.T) {
	s, g := serve(t, Limits{PerSource: 2, Total: 10, Timeout: time.Hour})
	a, b := s.dial(t, "127.0.0.2"), s.dial(t, "127.0.0.2")
	wait.For(t, waitTimeout, "two pending", func() bool { return g.Pending() == 2 })
	third := s.dial(t, "127.0.0.2")
	closedByServer(t, third, "third connection from one source")
	other := s.dial(t, "127.0.0.3")
	wait.For(t, waitTimeout, "another source admitted", func() bool { return g.Pending() == 3 })
	if !open(a) || !open(b) || !open(other) || s.count(ClosedPerSource) != 1 {
		t.Fatalf("open %v %v %v, per-source closes %d", open(a), open(b), open(other), s.count(ClosedPerSource))
	}
}

// When full, the gate evicts from the source that holds the most: one
// flooding source can't push out a newcomer from elsewhere.
func TestEvictsFromTheBiggestSource(t *testing.T) {
	s, g := serve(t, Limits{PerSource: 10, Total: 4, Timeout: time.Hour})
	var flood []net.Conn
	for range 3 {
		flood = append(flood, s.dial(t, "127.0.0.2"))
	}
	lone := s.dial(t, "127.0.0.3")
	wait.For(t, waitTimeout, "gate full", func() bool { return g.Pending() == 4 })
	newcomer := s.dial(t, "127.0.0.4")
	closedByServer(t, flood[0], "the flooding source's oldest")
	wait.For(t, waitTimeout, "newcomer admitted", func() bool { return s.count(ClosedEvicted) == 1 && g.Pending() == 4 })
	// More from the flooding source evict its own.
	more := s.dial(t, "127.0.0.2")
	closedByServer(t, flood[1], "the flooding source's next oldest")
	for _, c := range []net.Conn{lone, newcomer, flood[2], more} {
		if !open(c) {
			t.Fatalf("%v closed; only the flooding source's oldest should go", c.LocalAddr())
		}
	}
}

func TestTimeoutAndPromote(t *testing.T) {
	s, g := serve(t, Limits{PerSource: 10, Total: 10, Timeout: 200 * time.Millisecond})
	idle, authed := s.dial(t, "127.0.0.2"), s.dial(t, "127.0.0.2")
	var promoted *Conn
	wait.For(t, waitTimeout, "both accepted", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.accepted {
			if c.RemoteAddr().String() == authed.LocalAddr().String() {
				promoted = c
			}
		}
		return len(s.accepted) == 2
	})
	promoted.Promote()
	closedByServer(t, idle, "idle connection past the timeout")
	if s.count(ClosedTimeout) != 1 || g.Pending() != 0 || !open(authed) {
		t.Fatalf("timeouts %d, pending %d, promoted open %v", s.count(ClosedTimeout), g.Pending(), open(authed))
	}
}

func TestExtend(t *testing.T) {
	s, g := serve(t, Limits{PerSource: 10, Total: 10, Timeout: 200 * time.Millisecond})
	busy := s.dial(t, "127.0.0.2")
	wait.For(t, waitTimeout, "accepted", func() bool { return g.Pending() == 1 })
	s.mu.Lock()
	pc := s.accepted[0]
	s.mu.Unlock()
	pc.Extend(time.Hour)
	idle := s.dial(t, "127.0.0.2")
	closedByServer(t, idle, "idle connection past the timeout")
	if !open(busy) || g.Pending() != 1 {
		t.Fatalf("extended connection open %v, pending %d", open(busy), g.Pending())
	}
}

func TestSourceShares(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"198.51.100.7:1234", "198.51.100.7/32"},
		{"[::ffff:198.51.100.7]:1234", "198.51.100.7/32"},
		{"[2001:db8:1:2:aaaa::1]:1234", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:99", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:1", "fe80::/64"},
	} {
		a, err := net.ResolveTCPAddr("tcp", tt.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := sourceOf(a); got != netip.MustParsePrefix(tt.want) {
			t.Errorf("sourceOf(%s) = %v, want %s", tt.addr, got, tt.want)
		}
	}
}

func TestPromoteThroughTLSContext(t *testing.T) {
	s, g := serve(t, Limits{PerSource: 10, Total: 10, Timeout: time.Hour})
	s.dial(t, "127.0.0.2")
	wait.For(t, waitTimeout, "accepted", func() bool { return g.Pending() == 1 })
	s.mu.Lock()
	pc := s.accepted[0]
	s.mu.Unlock()
	ctx := ConnContext(context.Background(), tls.Server(pc, &tls.Config{}))
	Promote(ctx)
	if g.Pending() != 0 {
		t.Fatal("Promote through a TLS connection's context left it pending")
	}
	Promote(context.Background()) // no gated connection: nothing to do
}
