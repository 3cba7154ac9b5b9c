package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/e2e/labtest"
	"github.com/meshnode/meshnode/e2e/netlab"
	"github.com/meshnode/meshnode/internal/testenv"
)

// Environment variables (see doc.go).
const (
	envGate       = "MESHNODE_E2E"
	envBin        = "MESHNODE_BIN"
	envUnfiltered = "MESHNODE_UNFILTERED_BIN"
	envMatrix     = "MESHNODE_NATMATRIX"
)

// Deadlines. Waits poll; these only bound them, generously, so a slow CI
// machine is not a failure and a broken path still fails in bounded time.
const (
	// pathTimeout bounds reaching a path: punching takes seconds, a
	// birthday-paradox punch through a symmetric NAT 10-20 s, relay
	// fallback follows a failed punch round.
	pathTimeout = 45 * time.Second
	// reconnectTimeout bounds a node's return to a restarted coordinator:
	// its reconnect backoff may have grown while the coordinator was down.
	reconnectTimeout = 90 * time.Second
	// transferTimeout bounds one TCP transfer over the overlay.
	transferTimeout = 2 * time.Minute
	// stallTimeout fails a transfer whose path stopped carrying it: far
	// above a TCP retransmission after a lost segment, and above the few
	// seconds a path takes to be declared dead and replaced.
	stallTimeout = 15 * time.Second
	// setupTimeout bounds building a site or starting a process.
	setupTimeout = time.Minute
	// logLines is how much of each log a failure prints.
	logLines = 40
)

// env is one lab with a running coordinator and a join token.
type env struct {
	bin   string
	lab   *netlab.Lab
	coord *netlab.Coordinator
	token string
}

// binary returns the meshnode binary under test, or skips saying why the
// real-kernel lab can't run.
func binary(t *testing.T) string {
	t.Helper()
	if os.Getenv(envGate) == "" {
		t.Skipf("real-kernel NAT lab: run it with `make e2e` as root (or set %s=1)", envGate)
	}
	if err := netlab.Check(); err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	bin := locate(t, envBin, "meshnode", "make build")
	if out, err := exec.Command(bin, "up", "--help").CombinedOutput(); err != nil {
		testenv.Unavailable(t, "%s can't run `up` yet: %v: %s", bin, err, out)
	}
	return bin
}

// unfilteredBinary returns the test build of meshnode whose filter passes
// everything it sends (make unfiltered-sender), or makes the test
// unavailable.
func unfilteredBinary(t *testing.T) string {
	t.Helper()
	return locate(t, envUnfiltered, "meshnode-unfiltered-sender", "make unfiltered-sender")
}

// locate finds a binary: the path in the environment variable env, or
// ../bin/name; missing, the test is unavailable, and make says how to
// build it.
func locate(t *testing.T, env, name, make string) string {
	t.Helper()
	bin := os.Getenv(env)
	if bin == "" {
		bin = filepath.Join("..", "bin", name)
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		testenv.Unavailable(t, "no %s binary (%v): run `%s`, or `make e2e` which builds it", name, err, make)
	}
	return bin
}

// newEnv builds a lab, starts its coordinator (with further flags
// coordArgs) and creates a token. It all goes away when the test ends; a
// failed test first prints the logs' tails.
func newEnv(t *testing.T, coordArgs ...string) *env {
	t.Helper()
	bin := binary(t)
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	lab := labtest.NewLab(ctx, t, bin)
	e := &env{bin: bin, lab: lab}
	var err error
	e.coord, err = lab.StartCoordinator(ctx, coordArgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("coordinator log (last %d lines):\n%s", logLines, e.coord.Proc().Tail(logLines))
		}
	})
	e.token, err = e.coord.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// site builds a network; it goes away when the (sub)test ends.
func (e *env) site(t *testing.T, cfg netlab.SiteConfig) *netlab.Site {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	s, err := e.lab.AddSite(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("remove site %d: %v", s.Index, err)
		}
	})
	return s
}

// node starts a node on h. When the (sub)test ends it goes down and is
// removed from the coordinator, so later nodes of a shared coordinator
// don't see it; a failed test first prints its log's tail.
func (e *env) node(t *testing.T, h *netlab.Host, name string) *netlab.Node {
	t.Helper()
	return e.nodeWithToken(t, h, name, e.token)
}

// nodeWithToken is node joining with another token (one whose URL an
// IPv6-only host can reach).
func (e *env) nodeWithToken(t *testing.T, h *netlab.Host, name, token string) *netlab.Node {
	t.Helper()
	return e.startNode(t, h, netlab.NodeConfig{Name: name, Token: token}, true)
}

// nodeWith is node with more `meshnode up` flags.
func (e *env) nodeWith(t *testing.T, h *netlab.Host, name string, args ...string) *netlab.Node {
	t.Helper()
	return e.startNode(t, h, netlab.NodeConfig{Name: name, Token: e.token, Args: args}, true)
}

// startNode starts a node on h. When the (sub)test ends it goes down and,
// with remove, is removed from the coordinator; a failed test first prints
// its log's tail.
func (e *env) startNode(t *testing.T, h *netlab.Host, cfg netlab.NodeConfig, remove bool) *netlab.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	n, err := e.lab.StartNode(ctx, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node %s log (last %d lines):\n%s", cfg.Name, logLines, n.Proc().Tail(logLines))
		}
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := n.Down(ctx); err != nil {
			t.Errorf("node %s down: %v", cfg.Name, err)
		}
		if !remove {
			return
		}
		if err := e.coord.RemoveNode(ctx, cfg.Name); err != nil {
			t.Errorf("remove node %s from the coordinator: %v", cfg.Name, err)
		}
	})
	return n
}

// pair is what two nodes see of each other.
type pair struct {
	A, B netlab.PeerStatus // A's view of B, B's view of A
}

// Path is the path both sides report, or both when they differ.
func (p pair) Path() string {
	if p.A.Path == p.B.Path {
		return p.A.Path
	}
	return p.A.Path + "/" + p.B.Path
}

// Transport says "TCP" when either side's path runs over TCP (a punched
// TCP path, "tcp IP:PORT", or the TCP relay, an https URL), else "UDP".
func (p pair) Transport() string {
	for _, ep := range []string{p.A.Endpoint, p.B.Endpoint} {
		if strings.HasPrefix(ep, "tcp ") || strings.HasPrefix(ep, "https://") {
			return "TCP"
		}
	}
	return "UDP"
}

// observe reads both nodes' view of each other.
func observe(ctx context.Context, a, b *netlab.Node) (pair, error) {
	var p pair
	for _, side := range []struct {
		n, peer *netlab.Node
		dst     *netlab.PeerStatus
	}{{a, b, &p.A}, {b, a, &p.B}} {
		st, err := side.n.Status(ctx)
		if err != nil {
			return p, err
		}
		ps, ok := st.Peer(side.peer.Name)
		if !ok {
			return p, fmt.Errorf("%s doesn't list %s as a peer yet", side.n.Name, side.peer.Name)
		}
		*side.dst = ps
	}
	return p, nil
}

// waitPath polls until both nodes see each other online with a path in
// want, and returns what they see; on timeout the error says what they saw.
func waitPath(ctx context.Context, a, b *netlab.Node, timeout time.Duration, want ...string) (pair, error) {
	var last pair
	err := netlab.Poll(ctx, timeout, netlab.PollInterval, func(ctx context.Context) error {
		p, err := observe(ctx, a, b)
		if err != nil {
			return err
		}
		last = p
		for _, side := range []netlab.PeerStatus{p.A, p.B} {
			if !side.Online || !slices.Contains(want, side.Path) {
				return fmt.Errorf("%s sees %s online=%v path=%q endpoint=%q; want online and %v",
					a.Name+"/"+b.Name, side.Name, side.Online, side.Path, side.Endpoint, want)
			}
		}
		return nil
	})
	return last, err
}

// mustDirect waits for a direct path both ways, or fails the test.
func mustDirect(t *testing.T, a, b *netlab.Node) pair {
	t.Helper()
	start := time.Now()
	p, err := waitPath(t.Context(), a, b, pathTimeout, netlab.PathDirect)
	if err != nil {
		t.Fatalf("direct path between %s and %s: %v", a.Name, b.Name, err)
	}
	t.Logf("direct path %s→%s via %s, %s→%s via %s, in %.1f s",
		a.Name, b.Name, p.A.Endpoint, b.Name, a.Name, p.B.Endpoint, time.Since(start).Seconds())
	return p
}

// mustStatus reads a node's status, which has an overlay IPv4 address.
func mustStatus(t *testing.T, n *netlab.Node) netlab.Status {
	t.Helper()
	st, err := n.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Me().V4().IsValid() {
		t.Fatalf("%s has no overlay IPv4 address: %+v", n.Name, st.Self)
	}
	return st
}

// mustPing pings from a to b's overlay IPv4 address.
func mustPing(t *testing.T, a, b *netlab.Node, count int) {
	t.Helper()
	to := mustStatus(t, b).Me().V4()
	r, err := a.Host.NS.Ping(t.Context(), to, count)
	if err != nil {
		t.Fatalf("ping %s→%s (%v): %v\n%s", a.Name, b.Name, to, err, r.Output)
	}
	t.Logf("ping %s→%s (%v): %d/%d replies", a.Name, b.Name, to, r.Received, r.Sent)
}
