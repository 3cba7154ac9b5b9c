package natlab

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// TestReadDeadline checks deadlines time out with a net.Error whose
// Timeout() is true, also for a read already blocked, and clear again.
func TestReadDeadline(t *testing.T) {
	tests := []struct {
		name string
		set  func(c *Conn) // arranges the deadline around a blocking read
	}{
		{"future", func(c *Conn) { c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)) }},
		{"past", func(c *Conn) { c.SetReadDeadline(time.Now().Add(-time.Second)) }},
		{"moved while blocked", func(c *Conn) {
			c.SetReadDeadline(time.Now().Add(time.Hour))
			go c.SetReadDeadline(time.Now())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newLab(t)
			c := listen(t, l.NewHost("h"), 5000)
			tt.set(c)
			_, _, err := c.ReadFromUDPAddrPort(make([]byte, 10))
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read error %v, want a net.Error timeout", err)
			}
			if err := c.SetReadDeadline(time.Time{}); err != nil {
				t.Fatal(err)
			}
			send(t, c, c.LocalAddrPort(), "to myself")
			if got, _ := recv(t, c); got != "to myself" {
				t.Errorf("after clearing the deadline read %q", got)
			}
		})
	}
}

// TestCloseUnblocks checks closing a Conn, or the whole Lab, ends a blocked
// read with net.ErrClosed, and later calls fail the same way.
func TestCloseUnblocks(t *testing.T) {
	tests := []struct {
		name  string
		close func(*Lab, *Conn) error
	}{
		{"conn", func(_ *Lab, c *Conn) error { return c.Close() }},
		{"lab", func(l *Lab, _ *Conn) error { return l.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newLab(t)
			c := listen(t, l.NewHost("h"), 5000)
			done := make(chan error, 1)
			go func() {
				_, _, err := c.ReadFrom(make([]byte, 10))
				done <- err
			}()
			if err := tt.close(l, c); err != nil {
				t.Fatalf("close: %v", err)
			}
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("blocked read returned %v, want net.ErrClosed", err)
				}
			case <-time.After(readTimeout):
				t.Fatal("close did not unblock the reader")
			}
			if _, err := c.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(ap("198.18.0.1:1"))); !errors.Is(err, net.ErrClosed) {
				t.Errorf("write after close: %v, want net.ErrClosed", err)
			}
			if err := c.Close(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("second Close: %v, want net.ErrClosed", err)
			}
		})
	}
}

// TestNoGoroutineLeak closes a lab with delayed packets in flight and
// blocked readers, and waits for the goroutine count to come back down.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	l := New(nil)
	h := l.NewHost("h")
	h.SetLatency(time.Hour)
	c := listen(t, h, 5000)
	c.SetReadDeadline(time.Now().Add(time.Hour))
	readers := make(chan error, 4)
	for range cap(readers) {
		go func() {
			_, _, err := c.ReadFromUDPAddrPort(make([]byte, 10))
			readers <- err
		}()
	}
	for range 10 {
		send(t, c, c.LocalAddrPort(), "in flight")
	}
	l.Close()
	for range cap(readers) {
		if err := <-readers; !errors.Is(err, net.ErrClosed) {
			t.Errorf("reader returned %v, want net.ErrClosed", err)
		}
	}
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

// TestConnDatagrams checks socket-like details meshnode's Bind relies on.
func TestConnDatagrams(t *testing.T) {
	l, _ := newLab(t)
	h := l.NewHost("h")
	a, b := listen(t, h, 5000), listen(t, h, 6000)

	t.Run("sender buffer reuse", func(t *testing.T) {
		buf := []byte("original")
		if _, err := a.WriteTo(buf, b.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		copy(buf, "mutated!")
		if got, _ := recv(t, b); got != "original" {
			t.Errorf("received %q, the packet must be copied on write", got)
		}
	})
	t.Run("ReadFrom address type and truncation", func(t *testing.T) {
		send(t, a, b.LocalAddrPort(), "0123456789")
		small := make([]byte, 4)
		n, addr, err := b.ReadFrom(small)
		if err != nil || n != 4 || string(small) != "0123" {
			t.Fatalf("ReadFrom = %d %q %v, want 4 truncated bytes", n, small[:n], err)
		}
		if ua, ok := addr.(*net.UDPAddr); !ok || ua.AddrPort() != a.LocalAddrPort() {
			t.Errorf("ReadFrom address %#v, want *net.UDPAddr %v", addr, a.LocalAddrPort())
		}
	})
	t.Run("queue full", func(t *testing.T) {
		const extra = 5
		for range QueueLen + extra {
			send(t, a, b.LocalAddrPort(), "flood")
		}
		if b.Dropped() != extra || h.Stats().QueueFull != extra || b.Queued() != QueueLen {
			t.Errorf("Dropped %d, QueueFull %d, Queued %d; want %d, %d, %d", b.Dropped(), h.Stats().QueueFull, b.Queued(), extra, extra, QueueLen)
		}
		drain(t, b)
	})
	t.Run("bad writes", func(t *testing.T) {
		writes := []struct {
			name string
			err  error
			do   func() error
		}{
			{"not a UDPAddr", syscall.EINVAL, func() error {
				_, err := a.WriteTo([]byte("x"), &net.TCPAddr{IP: net.IPv4(198, 18, 0, 1), Port: 1})
				return err
			}},
			{"port 0", syscall.EINVAL, func() error {
				_, err := a.WriteToUDPAddrPort([]byte("x"), ap("198.18.0.1:0"))
				return err
			}},
			{"other address family", syscall.ENETUNREACH, func() error {
				_, err := a.WriteToUDPAddrPort([]byte("x"), ap("[2001:2::1]:3478"))
				return err
			}},
			{"too big", syscall.EMSGSIZE, func() error {
				_, err := a.WriteToUDPAddrPort(make([]byte, maxDatagram+1), b.LocalAddrPort())
				return err
			}},
			{"write deadline passed", os.ErrDeadlineExceeded, func() error {
				a.SetWriteDeadline(time.Now().Add(-time.Second))
				defer a.SetWriteDeadline(time.Time{})
				_, err := a.WriteToUDPAddrPort([]byte("x"), b.LocalAddrPort())
				return err
			}},
		}
		for _, w := range writes {
			if err := w.do(); !errors.Is(err, w.err) {
				t.Errorf("%s: error %v, want %v", w.name, err, w.err)
			}
		}
	})
}

// TestListenPacket checks address selection and the errors.
func TestListenPacket(t *testing.T) {
	l, _ := newLab(t)
	h := l.NewHost("h", ip("198.18.0.10"), ip("198.18.0.11"))
	taken := listen(t, h, 3478)
	tests := []struct {
		name    string
		addr    netip.AddrPort
		want    func(netip.AddrPort) bool
		wantErr error
	}{
		{"unspecified is the first IP", ap("0.0.0.0:4000"), func(a netip.AddrPort) bool { return a == ap("198.18.0.10:4000") }, nil},
		{"second IP", ap("198.18.0.11:3478"), func(a netip.AddrPort) bool { return a == ap("198.18.0.11:3478") }, nil},
		{"ephemeral port", netip.AddrPort{}, func(a netip.AddrPort) bool {
			return a.Addr() == ip("198.18.0.10") && a.Port() >= ephemeralFirst && a.Port() <= ephemeralLast
		}, nil},
		{"in use", taken.LocalAddrPort(), nil, syscall.EADDRINUSE},
		{"not the host's address", ap("198.18.0.99:4000"), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := h.ListenPacket(tt.addr)
			if tt.want == nil {
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("ListenPacket(%v) error %v, want one (%v)", tt.addr, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if !tt.want(c.LocalAddrPort()) {
				t.Errorf("bound %v", c.LocalAddrPort())
			}
		})
	}
	taken.Close()
	if c, err := h.ListenPacket(taken.LocalAddrPort()); err != nil {
		t.Errorf("port not free after Close: %v", err)
	} else {
		c.Close()
	}
}
