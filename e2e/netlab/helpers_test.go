package netlab

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/testenv"
)

const (
	// probeTries and probeWait bound how long a test waits for one
	// datagram: ARP may queue the first one, nothing else delays it.
	probeTries = 10
	probeWait  = 500 * time.Millisecond
	// quietWait is how long a test listens for datagrams that must not
	// arrive after its positive control did.
	quietWait = 300 * time.Millisecond
)

// newTestLab builds a lab for one test, or skips saying why it can't. The
// test runs in parallel with the package's others: each lab is its own
// set of namespaces, named by a random suffix, and most of a lab test's
// time is waiting (ip and nft commands, probes that must not arrive).
// Call it first, from a top-level test.
func newTestLab(t *testing.T) *Lab {
	t.Helper()
	t.Parallel()
	if err := Check(); err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	l, err := New(t.Context(), Options{Prefix: "mnlabunit"})
	if errors.Is(err, ErrUnsupported) {
		testenv.Unavailable(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	return l
}

// newTestLabWithServer is newTestLab with the coordinator's host, where
// tests run their servers.
func newTestLabWithServer(t *testing.T) (*Lab, *Netns) {
	t.Helper()
	l := newTestLab(t)
	srvNS, err := l.CoordinatorHost(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return l, srvNS
}

// udpIn opens a UDP socket on addr inside n, of addr's family.
func udpIn(t *testing.T, n *Netns, addr string) *net.UDPConn {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	network := "udp4"
	if ap.Addr().Is6() {
		network = "udp6"
	}
	var c *net.UDPConn
	err := n.Do(func() error {
		var err error
		c, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(ap))
		return err
	})
	if err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, n.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// observe sends from c to srv until srv hears it, and returns the source
// address srv saw: c's mapping towards srv.
func observe(c, srv *net.UDPConn) (netip.AddrPort, error) {
	return observeEvery(c, srv, probeWait)
}

// observeEvery is observe with up to probeTries probes wait apart. Each
// call's probes carry their own token, and srv skips any other datagram: a
// late copy of an earlier call's probe, still queued at a server that
// subtests share, is not this call's mapping.
func observeEvery(c, srv *net.UDPConn, wait time.Duration) (netip.AddrPort, error) {
	probe := "probe " + rand.Text()
	buf := make([]byte, 64)
	to := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	for range probeTries {
		if _, err := c.WriteToUDPAddrPort([]byte(probe), to); err != nil {
			return netip.AddrPort{}, err
		}
		if err := srv.SetReadDeadline(time.Now().Add(wait)); err != nil {
			return netip.AddrPort{}, err
		}
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return netip.AddrPort{}, err
			}
			if string(buf[:n]) == probe {
				return netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), nil
			}
		}
	}
	return netip.AddrPort{}, errors.New("no datagram arrived")
}

// receiveUntil reads c until it gets the datagram last (and quietWait more)
// and returns every payload it read.
func receiveUntil(c *net.UDPConn, last string) ([]string, error) {
	var got []string
	buf := make([]byte, 64)
	deadline := time.Now().Add(probeTries * probeWait)
	seen := false
	for {
		if err := c.SetReadDeadline(deadline); err != nil {
			return got, err
		}
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if seen && errors.Is(err, os.ErrDeadlineExceeded) {
				return got, nil
			}
			return got, err
		}
		got = append(got, string(buf[:n]))
		if string(buf[:n]) == last && !seen {
			seen = true
			deadline = time.Now().Add(quietWait)
		}
	}
}

// ctx is a test context bounded well under the package timeout.
func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}
