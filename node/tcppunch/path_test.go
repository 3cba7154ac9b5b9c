package tcppunch

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/wire"
)

// connPair returns both ends of a loopback TCP connection.
func connPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c2 := receive(t, "accept", accepted)
	if c2 == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c1.Close(); c2.Close() })
	return c1, c2
}

// prefixed is a frame with its length prefix, as it travels.
func prefixed(frame []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(frame))), frame...)
}

func TestPathClosesOnBadFrames(t *testing.T) {
	pubA, pubB, pubC := newKey(t).Public(), newKey(t).Public(), newKey(t).Public()
	hello := wire.RelayFrame{Type: wire.RelayHello, Key: pubB}.Marshal()
	tests := []struct {
		name string
		raw  []byte // what B sends after one good frame
		// halfClose ends B's side after raw, so A's read sees the end.
		halfClose bool
		want      string
	}{
		{"length beyond any frame", binary.BigEndian.AppendUint32(nil, 0xffffffff), false, "frame length 4294967295 outside"},
		{"length one over the largest frame", binary.BigEndian.AppendUint32(nil, maxFrame+1), false, fmt.Sprintf("frame length %d outside", maxFrame+1)},
		{"length shorter than a header", binary.BigEndian.AppendUint32(nil, 3), false, "frame length 3 outside"},
		{"not a relay frame", prefixed(make([]byte, wire.RelayHeaderLen)), false, "bad header"},
		{"not a data frame", prefixed(hello), false, "frame type 2"},
		{"another node's key", prefixed(wire.AppendRelayData(nil, pubC, []byte("spoofed"))), false, "names source " + pubC.Short()},
		{"cut off mid-frame", append(binary.BigEndian.AppendUint32(nil, 100), make([]byte, 10)...), true, "read 100-byte frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, cb := connPair(t)
			got := newCollector()
			a := newPath(ca, pubA, pubB, got.deliver, testLog(t))
			run := runPath(t.Context(), a)
			good := wire.AppendRelayData(nil, pubB, []byte("good"))
			if _, err := cb.Write(append(prefixed(good), tt.raw...)); err != nil {
				t.Fatal(err)
			}
			if tt.halfClose {
				if err := cb.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			err := receive(t, "Run", run)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run = %v, want an error saying %q", err, tt.want)
			}
			if f := got.next(t); !bytes.Equal(f, good) {
				t.Errorf("delivered %q, want the good frame %q", f, good)
			}
			if n := len(got); n != 0 {
				t.Errorf("%d more frames delivered after the good one", n)
			}
			// The path closed its end: B reads EOF (or a reset if B's
			// unread bytes were still queued), never a hang.
			cb.SetReadDeadline(time.Now().Add(waitTimeout))
			if _, err := io.Copy(io.Discard, cb); err != nil && !strings.Contains(err.Error(), "reset") {
				t.Errorf("B's read after the path closed: %v, want EOF", err)
			}
		})
	}
}

func TestSendFramesRejects(t *testing.T) {
	pubA, pubB, pubC := newKey(t).Public(), newKey(t).Public(), newKey(t).Public()
	tests := []struct {
		name  string
		frame []byte
		want  string
	}{
		{"frame for another peer", wire.AppendRelayData(nil, pubC, []byte("x")), "frame for peer " + pubC.Short()},
		{"not a data frame", wire.RelayFrame{Type: wire.RelayHello, Key: pubB}.Marshal(), "only data frames"},
		{"too short", wire.RelayMagic[:], "bad header"},
		{"too large", wire.AppendRelayData(nil, pubB, make([]byte, maxFrame)), "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, cb := connPair(t)
			a := newPath(ca, pubA, pubB, func([]byte) {}, testLog(t))
			got := newCollector()
			b := newPath(cb, pubB, pubA, got.deliver, testLog(t))
			runPath(t.Context(), b)
			good := wire.AppendRelayData(nil, pubB, []byte("good"))
			err := a.SendFrames([][]byte{good, tt.frame})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("SendFrames = %v, want an error saying %q", err, tt.want)
			}
			// Nothing of the rejected batch went out, and the path still
			// works.
			if err := a.SendFrames([][]byte{good}); err != nil {
				t.Fatalf("SendFrames after the rejected batch: %v", err)
			}
			f, err := wire.ParseRelay(got.next(t))
			if err != nil || f.Key != pubA || string(f.Payload) != "good" {
				t.Errorf("first frame B got: %+v, %v; want the good frame from A", f, err)
			}
			if n := len(got); n != 0 {
				t.Errorf("B got %d more frames", n)
			}
		})
	}
}

func TestSendFramesConcurrent(t *testing.T) {
	const senders, perSender = 8, 50
	pubA, pubB := newKey(t).Public(), newKey(t).Public()
	ca, cb := connPair(t)
	a := newPath(ca, pubA, pubB, func([]byte) {}, testLog(t))
	got := newCollector()
	runPath(t.Context(), newPath(cb, pubB, pubA, got.deliver, testLog(t)))
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range perSender {
				// Sizes vary so interleaved writes would break framing.
				pkt := bytes.Repeat([]byte{byte(s)}, 100+s*700+i)
				if err := a.SendFrames([][]byte{wire.AppendRelayData(nil, pubB, pkt)}); err != nil {
					t.Errorf("sender %d: %v", s, err)
					return
				}
			}
		})
	}
	wg.Wait()
	counts := make(map[byte]int)
	for range senders * perSender {
		f, err := wire.ParseRelay(got.next(t))
		if err != nil || f.Key != pubA || len(f.Payload) == 0 {
			t.Fatalf("frame %+v, %v: want a data frame from A", f, err)
		}
		s := f.Payload[0]
		if want := bytes.Repeat([]byte{s}, 100+int(s)*700+counts[s]); !bytes.Equal(f.Payload, want) {
			t.Fatalf("sender %d's frame %d arrived mangled or out of order (%d bytes)", s, counts[s], len(f.Payload))
		}
		counts[s]++
	}
}

func TestRunEnds(t *testing.T) {
	pubA, pubB := newKey(t).Public(), newKey(t).Public()
	tests := []struct {
		name string
		end  func(a *Path, peer net.Conn, cancel func())
		want string // "" for nil
	}{
		{"Close", func(a *Path, _ net.Conn, _ func()) { a.Close() }, ""},
		{"ctx cancelled", func(_ *Path, _ net.Conn, cancel func()) { cancel() }, "context canceled"},
		{"peer closes", func(_ *Path, peer net.Conn, _ func()) { peer.Close() }, "the peer closed the connection"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, cb := connPair(t)
			a := newPath(ca, pubA, pubB, func([]byte) {}, testLog(t))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			run := runPath(ctx, a)
			tt.end(a, cb, cancel)
			err := receive(t, "Run", run)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Run = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Run = %v, want an error saying %q", err, tt.want)
			}
			// Sending on an ended path fails instead of blocking.
			if err := a.SendFrames([][]byte{wire.AppendRelayData(nil, pubB, nil)}); err == nil {
				t.Error("SendFrames on an ended path succeeded")
			}
			if err := a.Close(); err != nil {
				t.Errorf("Close after the end: %v", err)
			}
		})
	}
}

// BenchmarkSendFrames measures the punched path's throughput on loopback in
// WireGuard-sized packets, batched as wireguard-go sends them.
func BenchmarkSendFrames(b *testing.B) {
	const batch, packet = 64, 1420
	privA, privB := newKey(b), newKey(b)
	ca, cb := connPair(b)
	a := newPath(ca, privA.Public(), privB.Public(), func([]byte) {}, testLog(b))
	done := make(chan struct{})
	var delivered atomic.Int64
	rx := newPath(cb, privB.Public(), privA.Public(), func([]byte) {
		if delivered.Add(1) == int64(b.N*batch) {
			close(done)
		}
	}, testLog(b))
	go rx.Run(b.Context())
	frames := make([][]byte, batch)
	for i := range frames {
		frames[i] = wire.AppendRelayData(nil, privB.Public(), make([]byte, packet))
	}
	b.SetBytes(batch * packet)
	b.ResetTimer()
	for range b.N {
		if err := a.SendFrames(frames); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(waitTimeout):
		b.Fatalf("%d of %d frames delivered after %v", delivered.Load(), b.N*batch, waitTimeout)
	}
}
