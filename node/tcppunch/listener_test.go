package tcppunch

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

func TestDialerSharesPort(t *testing.T) {
	l, err := NewListener(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Port() == 0 {
		t.Fatal("listener on port 0 reports port 0, want the port the kernel chose")
	}
	servers := make([]net.Listener, 2)
	for i := range servers {
		if servers[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		defer servers[i].Close()
	}
	tests := []struct {
		name   string
		dialer *net.Dialer
		server net.Listener
		ok     bool
	}{
		// The coordinator connection beside the punch listener.
		{"reuse dialer", Dialer(l.Port()), servers[0], true},
		// A second flow from the same port, as a punch's connect.
		{"second reuse dialer", Dialer(l.Port()), servers[1], true},
		// Why the options matter: a plain socket can't share the port.
		{"plain dialer", &net.Dialer{LocalAddr: &net.TCPAddr{Port: int(l.Port())}}, servers[0], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.dialer.DialContext(t.Context(), "tcp", tt.server.Addr().String())
			if !tt.ok {
				if err == nil {
					c.Close()
					t.Fatalf("a socket without SO_REUSEADDR/SO_REUSEPORT bound port %d beside the listener", l.Port())
				}
				return
			}
			if err != nil {
				t.Fatalf("dial from port %d: %v", l.Port(), err)
			}
			defer c.Close()
			if got := addrPort(c.LocalAddr()).Port(); got != l.Port() {
				t.Errorf("connection comes from port %d, want %d", got, l.Port())
			}
		})
	}
}

// warnCounter counts warnings, such as a punch rejecting a connection.
type warnCounter struct{ n atomic.Int64 }

func (w *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnCounter) Handle(context.Context, slog.Record) error    { w.n.Add(1); return nil }
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w *warnCounter) WithGroup(string) slog.Handler                { return w }

func TestListenerConcurrentPunches(t *testing.T) {
	const peers = 5
	privA := newKey(t)
	l, err := NewListener(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	hub := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), l.Port())
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	var warns warnCounter
	type side struct {
		priv     crypto.PrivateKey
		got      collector
		fromA    <-chan punchResult // A's punch to this peer
		fromPeer <-chan punchResult // this peer's punch to A
	}
	sides := make([]side, peers)
	for i := range sides {
		s := &sides[i]
		s.priv, s.got = newKey(t), newCollector()
		port := freePort(t)
		s.fromA = goPunch(ctx, l.Punch, Options{Priv: privA, Peer: s.priv.Public(), Remote: netip.AddrPortFrom(hub.Addr(), port),
			Log: slog.New(&warns), Deliver: newCollector().deliver, RetryInterval: testRetry})
		s.fromPeer = goPunch(ctx, Punch, Options{Priv: s.priv, Peer: privA.Public(), LocalPort: port, Remote: hub,
			Log: testLog(t), Deliver: s.got.deliver, RetryInterval: testRetry})
	}
	for i, s := range sides {
		a, p := receive(t, "A's punch", s.fromA), receive(t, "peer's punch", s.fromPeer)
		if a.err != nil || p.err != nil {
			t.Fatalf("peer %d: A: %v; peer: %v", i, a.err, p.err)
		}
		defer a.p.Close()
		defer p.p.Close()
		if a.p.Peer() != s.priv.Public() {
			t.Errorf("A's path %d authenticated %s, want %s", i, a.p.Peer().Short(), s.priv.Public().Short())
		}
		runPath(ctx, p.p)
		if err := a.p.SendFrames([][]byte{wire.AppendRelayData(nil, s.priv.Public(), []byte("to peer"))}); err != nil {
			t.Fatal(err)
		}
		f, err := wire.ParseRelay(s.got.next(t))
		if err != nil || f.Key != privA.Public() || string(f.Payload) != "to peer" {
			t.Errorf("peer %d got %+v, %v; want A's frame", i, f, err)
		}
	}
	if n := warns.n.Load(); n != 0 {
		t.Errorf("A's punches logged %d warnings (a punch was handed another's connection), want 0", n)
	}
}

func TestListenerPunchPort(t *testing.T) {
	l, err := NewListener(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	o := Options{Priv: newKey(t), Peer: newKey(t).Public(), LocalPort: l.Port() + 1, Remote: ap("127.0.0.1:9"), Deliver: func([]byte) {}}
	_, err = l.Punch(t.Context(), o)
	if err == nil || !strings.Contains(err.Error(), "differs from the listener's port") {
		t.Errorf("Punch from another port = %v, want it refused", err)
	}
}

func TestListenerRoutes(t *testing.T) {
	privA, pubB := newKey(t), newKey(t).Public()
	l, err := NewListener(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	var warns warnCounter
	// B's mapping is on 127.0.0.2; nothing listens there, so the punch
	// only ever gets what the listener routes to it.
	punch := goPunch(ctx, l.Punch, Options{Priv: privA, Peer: pubB, Remote: ap(fmt.Sprintf("127.0.0.2:%d", freePort(t))),
		Log: slog.New(&warns), Deliver: newCollector().deliver})
	defer func() {
		cancel()
		receive(t, "punch ends", punch)
	}()
	eventually(t, "the punch is registered", func() error {
		if !l.expects(netip.MustParseAddr("127.0.0.2")) {
			return errors.New("no punch aimed at 127.0.0.2 yet")
		}
		return nil
	})
	tests := []struct {
		name  string
		from  string
		claim crypto.PublicKey // zero: send no hello
		// answered: the punch took the connection and sent its hello.
		answered bool
	}{
		{"address no punch aims at", "127.0.0.1", crypto.PublicKey{}, false},
		{"key no punch expects", "127.0.0.2", newKey(t).Public(), false},
		{"the peer's key from the peer's address", "127.0.0.2", pubB, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tt.from)}, Timeout: waitTimeout}
			c, err := d.DialContext(t.Context(), "tcp", fmt.Sprintf("127.0.0.1:%d", l.Port()))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(waitTimeout))
			if !tt.claim.IsZero() {
				challenge := make([]byte, challengeLen)
				rand.Read(challenge)
				if _, err := c.Write(append(append(append(helloMagic[:], helloVersion), tt.claim[:]...), challenge...)); err != nil {
					t.Fatal(err)
				}
			}
			got := make([]byte, helloLen)
			_, err = io.ReadFull(c, got)
			switch {
			case tt.answered && err != nil:
				t.Errorf("no hello from the punch: %v", err)
			case tt.answered && [4]byte(got[:4]) != helloMagic:
				t.Errorf("the punch answered %x, want a hello", got[:5])
			case !tt.answered && err != io.EOF:
				t.Errorf("read = %v, want the connection closed unanswered (EOF)", err)
			}
		})
	}
	if n := warns.n.Load(); n != 0 {
		t.Errorf("the punch logged %d warnings: it was handed a connection it should not have seen", n)
	}
}
