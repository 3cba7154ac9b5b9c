package tcppunch

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// punchResult is one Punch call's outcome.
type punchResult struct {
	p   *Path
	err error
}

// goPunch runs punch (Punch or a Listener's) in the background.
func goPunch(ctx context.Context, punch func(context.Context, Options) (*Path, error), o Options) <-chan punchResult {
	ch := make(chan punchResult, 1)
	go func() {
		p, err := punch(ctx, o)
		ch <- punchResult{p, err}
	}()
	return ch
}

// runPath runs p's read loop and reports its result.
func runPath(ctx context.Context, p *Path) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- p.Run(ctx) }()
	return ch
}

func TestPunchLoopback(t *testing.T) {
	tests := []struct {
		name         string
		addrA, addrB string // where each node's mapping appears to the other
	}{
		// Both mappings on one address: the two connects share one
		// 4-tuple, so they meet as an accept or a simultaneous open.
		{"one address", "127.0.0.1", "127.0.0.1"},
		// B's mapping on another address: B's own connect arrives from
		// 127.0.0.1, which is not the mapping A punches, and A refuses it.
		{"two addresses", "127.0.0.1", "127.0.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			privA, privB := newKey(t), newKey(t)
			pubA, pubB := privA.Public(), privB.Public()
			portA, portB := freePort(t), freePort(t)
			remoteOfA := netip.AddrPortFrom(netip.MustParseAddr(tt.addrA), portA)
			remoteOfB := netip.AddrPortFrom(netip.MustParseAddr(tt.addrB), portB)
			gotA, gotB := newCollector(), newCollector()
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			chA := goPunch(ctx, Punch, Options{Priv: privA, Peer: pubB, LocalPort: portA, Remote: remoteOfB, Log: testLog(t), Deliver: gotA.deliver, RetryInterval: testRetry})
			chB := goPunch(ctx, Punch, Options{Priv: privB, Peer: pubA, LocalPort: portB, Remote: remoteOfA, Log: testLog(t), Deliver: gotB.deliver, RetryInterval: testRetry})
			resA, resB := receive(t, "punch A", chA), receive(t, "punch B", chB)
			if resA.err != nil || resB.err != nil {
				t.Fatalf("punch: A: %v; B: %v", resA.err, resB.err)
			}
			a, b := resA.p, resB.p
			if a.RemoteAddr() != remoteOfB || a.Peer() != pubB {
				t.Errorf("A's path goes to %s (%s), want %s (%s)", a.RemoteAddr(), a.Peer().Short(), remoteOfB, pubB.Short())
			}
			if b.RemoteAddr() != remoteOfA || b.Peer() != pubA {
				t.Errorf("B's path goes to %s (%s), want %s (%s)", b.RemoteAddr(), b.Peer().Short(), remoteOfA, pubA.Short())
			}
			runA, runB := runPath(ctx, a), runPath(ctx, b)

			packets := [][]byte{
				[]byte("one small packet"),
				{},
				bytes.Repeat([]byte{0xab}, 1420),
				bytes.Repeat([]byte{0xcd}, maxFrame-wire.RelayHeaderLen), // the largest WireGuard packet
			}
			for _, dir := range []struct {
				name       string
				from       *Path
				to         collector
				src, dst   crypto.PublicKey
				wantSource crypto.PublicKey
			}{
				{"A to B", a, gotB, pubA, pubB, pubA},
				{"B to A", b, gotA, pubB, pubA, pubB},
			} {
				frames := make([][]byte, len(packets))
				for i, pkt := range packets {
					// Addressed to the destination, as the Bind frames
					// packets for a relay.
					frames[i] = wire.AppendRelayData(nil, dir.dst, pkt)
				}
				if err := dir.from.SendFrames(frames); err != nil {
					t.Fatalf("%s: SendFrames: %v", dir.name, err)
				}
				for i, pkt := range packets {
					f, err := wire.ParseRelay(dir.to.next(t))
					if err != nil {
						t.Fatalf("%s: frame %d: %v", dir.name, i, err)
					}
					if f.Type != wire.RelayData || f.Key != dir.wantSource {
						t.Errorf("%s: frame %d is type %d from %s, want data from %s (the sender's key)", dir.name, i, f.Type, f.Key.Short(), dir.wantSource.Short())
					}
					if !bytes.Equal(f.Payload, pkt) {
						t.Errorf("%s: frame %d carries %d bytes, want the %d sent", dir.name, i, len(f.Payload), len(pkt))
					}
				}
				// The sender's frames are the Bind's pooled buffers:
				// they must come back untouched.
				for i, pkt := range packets {
					if !bytes.Equal(frames[i], wire.AppendRelayData(nil, dir.dst, pkt)) {
						t.Errorf("%s: SendFrames modified frame %d", dir.name, i)
					}
				}
			}

			if err := a.Close(); err != nil {
				t.Errorf("close A: %v", err)
			}
			if err := receive(t, "A's Run after Close", runA); err != nil {
				t.Errorf("A's Run after Close = %v, want nil", err)
			}
			if err := receive(t, "B's Run after the peer closed", runB); err == nil || !strings.Contains(err.Error(), "peer closed") {
				t.Errorf("B's Run after A closed = %v, want the peer closed", err)
			}
		})
	}
}

func TestPunchRejectsWrongKey(t *testing.T) {
	tests := []struct {
		name string
		// remoteIP is where A punches B's mapping, on port portB.
		remoteIP string
		// impostor answers for B without B's private key, until ctx
		// ends; A listens on portA.
		impostor func(ctx context.Context, t *testing.T, portA, portB uint16, pubA, pubB crypto.PublicKey)
		want     string
	}{
		{
			name:     "peer holds another key",
			remoteIP: "127.0.0.1",
			impostor: func(ctx context.Context, t *testing.T, portA, portB uint16, pubA, _ crypto.PublicKey) {
				_, err := Punch(ctx, Options{Priv: newKey(t), Peer: pubA, LocalPort: portB,
					Remote: ap(fmt.Sprintf("127.0.0.1:%d", portA)), Log: testLog(t), Deliver: newCollector().deliver})
				if err == nil {
					t.Error("the impostor's own punch succeeded")
				}
			},
			want: "claims key",
		},
		{
			// Connects from the address A punches, to A's listener.
			name:     "claims the peer's key without holding it",
			remoteIP: "127.0.0.2",
			impostor: func(_ context.Context, t *testing.T, portA, _ uint16, pubA, pubB crypto.PublicKey) {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: waitTimeout}
				c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", portA))
				if err != nil {
					t.Fatalf("impostor connect: %v", err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(waitTimeout))
				challenge := make([]byte, challengeLen)
				rand.Read(challenge)
				hello := append(append(append(helloMagic[:], helloVersion), pubB[:]...), challenge...)
				if _, err := c.Write(hello); err != nil {
					t.Fatalf("impostor hello: %v", err)
				}
				theirs := make([]byte, helloLen)
				if _, err := io.ReadFull(c, theirs); err != nil {
					t.Fatalf("impostor reads hello: %v", err)
				}
				proof, err := crypto.Proof(newKey(t), pubA, proofLabel, proofInput(theirs[5+crypto.KeyLen:], pubB))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Write(proof); err != nil {
					t.Fatalf("impostor proof: %v", err)
				}
				// A sends its own proof, then must close: never a decision.
				rest, err := io.ReadAll(c)
				if err != nil {
					t.Fatalf("impostor waits for A to close: %v", err)
				}
				if len(rest) != proofLen {
					t.Errorf("after the impostor's proof A sent %d bytes, want only its %d-byte proof", len(rest), proofLen)
				}
			},
			want: "failed to prove key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			privA, pubB := newKey(t), newKey(t).Public()
			portA, portB := freePort(t), freePort(t)
			// A punches until it rejects a connection, and the
			// impostor until then.
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			ch := goPunch(ctx, Punch, Options{Priv: privA, Peer: pubB, LocalPort: portA,
				Remote: netip.AddrPortFrom(netip.MustParseAddr(tt.remoteIP), portB), Log: slog.New(cancelOnWarn(cancel)),
				Deliver: newCollector().deliver, RetryInterval: testRetry})
			eventually(t, "A listens", func() error {
				c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", portA))
				if err == nil {
					c.Close()
				}
				return err
			})
			tt.impostor(ctx, t, portA, portB, privA.Public(), pubB)
			res := receive(t, "A's punch", ch)
			if res.err == nil {
				res.p.Close()
				t.Fatal("A's punch accepted the impostor")
			}
			if !strings.Contains(res.err.Error(), tt.want) {
				t.Errorf("A's punch failed with %q, want it to say %q", res.err, tt.want)
			}
		})
	}
}

// cancelOnWarn is a log handler that calls its function at a warning,
// which a punch logs only when it rejects a connection.
type cancelOnWarn context.CancelFunc

func (c cancelOnWarn) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (c cancelOnWarn) Handle(context.Context, slog.Record) error    { c(); return nil }
func (c cancelOnWarn) WithAttrs([]slog.Attr) slog.Handler           { return c }
func (c cancelOnWarn) WithGroup(string) slog.Handler                { return c }

func TestPunchStops(t *testing.T) {
	tests := []struct {
		name string
		// remote returns B's mapping; it may call stop when Punch is
		// mid-way.
		remote  func(t *testing.T, stop context.CancelFunc) netip.AddrPort
		timeout time.Duration
		want    error
	}{
		{
			name: "deadline while every connect is refused",
			remote: func(t *testing.T, _ context.CancelFunc) netip.AddrPort {
				return ap(fmt.Sprintf("127.0.0.1:%d", freePort(t)))
			},
			timeout: 300 * time.Millisecond, // several attempts, testRetry apart
			want:    context.DeadlineExceeded,
		},
		{
			name: "cancel during a handshake",
			remote: func(t *testing.T, stop context.CancelFunc) netip.AddrPort {
				// A peer that accepts and never speaks: the handshake
				// waits until the cancel.
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				accepted := make(chan net.Conn, 1)
				go func() {
					c, err := ln.Accept()
					ln.Close()
					if err == nil {
						accepted <- c
						stop()
					}
				}()
				t.Cleanup(func() {
					ln.Close()
					select {
					case c := <-accepted:
						c.Close()
					default:
					}
				})
				return addrPort(ln.Addr())
			},
			timeout: waitTimeout,
			want:    context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			port := freePort(t)
			ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
			defer cancel()
			remote := tt.remote(t, cancel)
			start := time.Now()
			_, err := Punch(ctx, Options{Priv: newKey(t), Peer: newKey(t).Public(), LocalPort: port, Remote: remote, Log: testLog(t),
				Deliver: newCollector().deliver, RetryInterval: testRetry})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Punch = %v, want %v", err, tt.want)
			}
			if took := time.Since(start); took > tt.timeout+2*time.Second {
				t.Errorf("Punch took %v to stop, want about %v", took, tt.timeout)
			}
			// The listener is gone: a listener without port reuse binds.
			ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
			if err != nil {
				t.Errorf("port %d still held after Punch returned: %v", port, err)
			} else {
				ln.Close()
			}
			eventually(t, "Punch's goroutines end", func() error {
				if n := runtime.NumGoroutine(); n > before {
					return fmt.Errorf("%d goroutines, %d before", n, before)
				}
				return nil
			})
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	priv := newKey(t)
	good := Options{Priv: priv, Peer: newKey(t).Public(), LocalPort: 41641, Remote: ap("198.18.0.2:41641"), Deliver: func([]byte) {}}
	tests := []struct {
		name   string
		change func(*Options)
		want   []string
	}{
		{"no private key", func(o *Options) { o.Priv = crypto.PrivateKey{} }, []string{"Priv is unset"}},
		{"no peer", func(o *Options) { o.Peer = crypto.PublicKey{} }, []string{"Peer is unset"}},
		{"own key as peer", func(o *Options) { o.Peer = priv.Public() }, []string{"this node's own key"}},
		{"no local port", func(o *Options) { o.LocalPort = 0 }, []string{"LocalPort is 0"}},
		{"no remote", func(o *Options) { o.Remote = netip.AddrPort{} }, []string{"Remote invalid AddrPort"}},
		{"remote port 0", func(o *Options) { o.Remote = ap("198.18.0.2:0") }, []string{"Remote 198.18.0.2:0"}},
		{"unspecified remote", func(o *Options) { o.Remote = ap("0.0.0.0:41641") }, []string{"Remote 0.0.0.0:41641"}},
		{"no deliver", func(o *Options) { o.Deliver = nil }, []string{"Deliver is nil"}},
		{"several at once", func(o *Options) { o.LocalPort, o.Deliver = 0, nil }, []string{"LocalPort is 0", "Deliver is nil"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.change(&o)
			_, err := Punch(t.Context(), o)
			if err == nil {
				t.Fatal("Punch accepted bad options")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	if err := good.validate(); err != nil {
		t.Errorf("good options rejected: %v", err)
	}
}

// TestRetryIntervalDefault: options that leave RetryInterval zero, as the
// node does, space connect attempts by the production second.
func TestDialAttemptTimeoutDefault(t *testing.T) {
	if got := (&puncher{}).dialAttemptTimeout(); got != dialAttemptTimeout {
		t.Errorf("dial attempt timeout %v, want %v", got, dialAttemptTimeout)
	}
	const asked = 1500 * time.Millisecond
	if got := (&puncher{o: Options{DialAttemptTimeout: asked}}).dialAttemptTimeout(); got != asked {
		t.Errorf("dial attempt timeout %v, want the %v asked for", got, asked)
	}
}

func TestRetryIntervalDefault(t *testing.T) {
	if got := (&puncher{}).retryInterval(); got != retryInterval {
		t.Errorf("retry interval %v, want %v", got, retryInterval)
	}
	if got := (&puncher{o: Options{RetryInterval: testRetry}}).retryInterval(); got != testRetry {
		t.Errorf("retry interval %v, want the %v asked for", got, testRetry)
	}
}
