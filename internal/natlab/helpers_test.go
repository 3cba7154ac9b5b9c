package natlab

import (
	"fmt"
	"github.com/meshnode/meshnode/internal/wait"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// Test timing: polls are frequent, deadlines generous so a loaded -race run
// never flakes.
const (
	pollEvery   = 20 * time.Millisecond
	waitTimeout = 20 * time.Second
	readTimeout = 10 * time.Second
)

// logBuf collects the packet log; the test prints it only on failure.
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuf) logf(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, fmt.Sprintf(format, args...))
}

func (b *logBuf) text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// newLab returns a lab closed at cleanup whose packet log is shown if the
// test fails.
func newLab(t *testing.T) (*Lab, *logBuf) {
	t.Helper()
	buf := &logBuf{}
	l := New(buf.logf)
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Lab.Close: %v", err)
		}
		if t.Failed() {
			t.Logf("packet log:\n%s", buf.text())
		}
	})
	return l, buf
}

func mustNAT(t *testing.T, l *Lab, cfg NATConfig) *NAT {
	t.Helper()
	n, err := l.NewNAT(cfg)
	if err != nil {
		t.Fatalf("NewNAT: %v", err)
	}
	return n
}

func named(cfg NATConfig, name string) NATConfig {
	cfg.Name = name
	return cfg
}

func listen(t *testing.T, h *Host, port uint16) *Conn {
	t.Helper()
	c, err := h.ListenPacket(netip.AddrPortFrom(netip.Addr{}, port))
	if err != nil {
		t.Fatalf("ListenPacket on %s: %v", h.Name(), err)
	}
	return c
}

func send(t *testing.T, c *Conn, dst netip.AddrPort, payload string) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort([]byte(payload), dst); err != nil {
		t.Fatalf("write %v -> %v: %v", c.LocalAddrPort(), dst, err)
	}
}

// recv reads one datagram, failing the test after readTimeout.
func recv(t *testing.T, c *Conn) (string, netip.AddrPort) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(readTimeout)); err != nil {
		t.Fatalf("SetReadDeadline: %v", err)
	}
	buf := make([]byte, 2048)
	n, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("read on %v: %v", c.LocalAddrPort(), err)
	}
	return string(buf[:n]), src
}

// drain reads whatever is queued without blocking and returns the sources.
func drain(t *testing.T, c *Conn) []netip.AddrPort {
	t.Helper()
	var srcs []netip.AddrPort
	for range c.Queued() {
		_, src := recv(t, c)
		srcs = append(srcs, src)
	}
	return srcs
}

// observe sends from c to server and returns the source the server sees:
// the mapping, as STUN would report it.
func observe(t *testing.T, c, server *Conn) netip.AddrPort {
	t.Helper()
	send(t, c, server.LocalAddrPort(), "probe")
	_, src := recv(t, server)
	return src
}

// waitFor polls cond until it holds, failing with what after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.For(t, waitTimeout, what, cond)
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func ip(s string) netip.Addr     { return netip.MustParseAddr(s) }
