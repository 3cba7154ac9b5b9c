package pgtest

import (
	"testing"

	"github.com/meshnode/meshnode/internal/testenv"
)

// Cluster is a PostgreSQL cluster of one test's own, for tests that stop
// and start it (the shared one serves every test of a binary). It costs an
// initdb, a few seconds.
type Cluster struct{ c *cluster }

// Options are how New starts a cluster.
type Options struct {
	// Enter, when set, runs a function inside the network namespace the
	// cluster listens in (netlab's Netns.Do): its processes then reach
	// it on 127.0.0.1 there. The test reaches it through a Unix socket.
	Enter func(func() error) error
}

// New starts a cluster for t; it is stopped and removed when t ends.
// Without PostgreSQL t is skipped, or fails under CI=true.
func New(t testing.TB, o Options) *Cluster {
	t.Helper()
	c, err := newCluster(o.Enter, template.enabled)
	if isMissing(err) {
		testenv.Unavailable(t, "%v", err)
	}
	if err != nil {
		t.Fatalf("start a PostgreSQL cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return &Cluster{c: c}
}

// DB creates a database for t alone and returns its URL (TCP, on
// 127.0.0.1 of the cluster's namespace), with a password the cluster
// ignores. It goes with the cluster.
func (c *Cluster) DB(t testing.TB) string {
	t.Helper()
	name := "t_" + randomName()
	if err := c.c.exec(c.c.createDatabase(name, "")); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return c.c.url(name)
}

// AdminURL reaches the cluster's maintenance database as its superuser,
// through its Unix socket: for a test acting on the server.
func (c *Cluster) AdminURL() string { return c.c.adminURL() }

// Stop shuts the server down fast (SIGINT by PID: every session ends),
// keeping its data.
func (c *Cluster) Stop() error { return c.c.shutdown() }

// Start runs the server again on its data and port, and waits until it
// accepts connections.
func (c *Cluster) Start() error { return c.c.start() }

// PID is the server's process ID, while it runs.
func (c *Cluster) PID() int { return c.c.cmd.Process.Pid }
