package tcppunch

import (
	"github.com/meshnode/meshnode/internal/wait"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
)

const (
	// waitTimeout bounds every wait in these tests; on loopback everything
	// happens in milliseconds, so reaching it means the behaviour is broken.
	waitTimeout = 20 * time.Second
	// frameQueue bounds frames a test collects before it reads them.
	frameQueue = 1024
	// testRetry spaces a punch's connect attempts (Options.RetryInterval):
	// loopback refuses a connect at once, so the next needn't wait the
	// production second.
	testRetry = 50 * time.Millisecond
)

func newKey(t testing.TB) crypto.PrivateKey {
	t.Helper()
	k, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// freePort returns a TCP port free on every address, as a punch's
// Listener binds it, picked by the kernel; a port free on one address may
// be held on another (a TIME_WAIT on 127.0.0.3 fails the Listener's bind).
// It never returns a port twice: the kernel may hand a port just closed out
// again, and two nodes given the same port punch themselves.
func freePort(t *testing.T) uint16 {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	var held []net.Listener // ports seen before, kept bound so the kernel picks another
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	for {
		ln, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatalf("pick a free port: %v", err)
		}
		port := addrPort(ln.Addr()).Port()
		if !handedOut.ports[port] {
			ln.Close()
			handedOut.ports[port] = true
			return port
		}
		held = append(held, ln)
	}
}

// handedOut holds the ports freePort returned.
var handedOut = struct {
	sync.Mutex
	ports map[uint16]bool
}{ports: make(map[uint16]bool)}

func testLog(testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// collector gathers delivered frames.
type collector chan []byte

func newCollector() collector { return make(collector, frameQueue) }

func (c collector) deliver(f []byte) {
	select {
	case c <- f:
	default:
		panic("test collector full: raise frameQueue")
	}
}

// next waits for the next delivered frame.
func (c collector) next(t *testing.T) []byte {
	t.Helper()
	select {
	case f := <-c:
		return f
	case <-time.After(waitTimeout):
		t.Fatalf("no frame delivered within %v", waitTimeout)
		return nil
	}
}

// eventually polls cond until it returns nil or waitTimeout passes.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	wait.ForNil(t, waitTimeout, what, cond)
}

// receive waits for a value from ch for at most waitTimeout.
func receive[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("%s: nothing after %v", what, waitTimeout)
		var zero T
		return zero
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
