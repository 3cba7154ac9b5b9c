// Package pgtest gives tests a real, throwaway PostgreSQL cluster: initdb
// in a temporary directory, postgres on a free loopback port as an
// unprivileged user (PostgreSQL refuses to run as root), a fresh database
// per test. One cluster serves a whole test binary: initdb costs seconds,
// a database tens of milliseconds; the shared cluster and a test's own
// (New) start from copies of what initdb made once. Main stops the shared
// cluster by PID and removes its directory and the template; should the
// binary die first, the kernel stops it (Pdeathsig), leaving only the
// directories (meshnode-pg-* in $TMPDIR, else in /dev/shm: tempRoot).
//
// The binaries come from Debian's postgresql package (scripts/deps.sh),
// under /usr/lib/postgresql/VERSION/bin. Without them the tests skip, or
// fail under CI=true (internal/testenv).
package pgtest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/testenv"
)

// superuser is the cluster's only role, made by initdb.
const superuser = "meshnode"

var (
	once    sync.Once
	shared  *cluster
	failure string // why the cluster could not start; "" when it runs
	// unavailable marks failure as a missing part (skip locally) rather
	// than a broken start (always a failure).
	unavailable bool
)

// Main runs the package's tests and then stops the cluster if one was
// started, and removes the template clusters are copied from (template.go):
// a package's TestMain is `os.Exit(pgtest.Main(m))`.
func Main(m *testing.M) int {
	template.enabled = true
	code := m.Run()
	var err error
	if shared != nil {
		err = shared.stop()
	}
	if err = errors.Join(err, removeTemplate()); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// get starts the cluster on first use and returns it, or ends t.
func get(t testing.TB) *cluster {
	t.Helper()
	once.Do(func() {
		// From the template, as the tests' own clusters: one initdb per
		// binary, whose copy costs a fraction of another.
		c, err := newCluster(nil, template.enabled)
		switch {
		case err == nil:
			shared = c
		case isMissing(err):
			failure, unavailable = err.Error(), true
		default:
			failure = err.Error()
		}
	})
	switch {
	case unavailable:
		testenv.Unavailable(t, "%s", failure)
	case failure != "":
		t.Fatalf("start a PostgreSQL cluster: %s", failure)
	}
	return shared
}

// AdminURL is the URL of the cluster's maintenance database, as its
// superuser: for tests that act on the server itself.
func AdminURL(t testing.TB) string {
	t.Helper()
	return get(t).url("postgres")
}

// DB creates a database for t alone and returns its URL; it is dropped
// when t ends. The URL carries a password (the cluster trusts loopback and
// ignores it) so tests can check that errors never show one.
func DB(t testing.TB) string {
	t.Helper()
	c := get(t)
	return c.url(c.testDB(t, ""))
}

// testDB creates a database for t, a copy of from (template1, PostgreSQL's
// blank database, when ""), dropped when t ends, and returns its name.
func (c *cluster) testDB(t testing.TB, from string) string {
	t.Helper()
	name := "t_" + randomName()
	if err := c.exec(c.createDatabase(name, from)); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		// FORCE ends connections a failed test left open (PostgreSQL 13+).
		if err := c.exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return name
}

// createDatabase is the statement that creates the database name as a
// copy of from (template1 when ""). From PostgreSQL 15 on it copies the
// files (STRATEGY FILE_COPY) rather than writing every block through the
// WAL and shared buffers (WAL_LOG, the default): for a database as small
// as a test's, a third of the server's CPU. FILE_COPY's price is the two
// checkpoints around the copy, which fsync=off (start) makes nearly free;
// it is the strategy every release before 15 used, and as crash-safe.
func (c *cluster) createDatabase(name, from string) string {
	stmt := `CREATE DATABASE ` + name
	if from != "" {
		stmt += ` TEMPLATE ` + from
	}
	if version(c.bin) >= 15 {
		stmt += ` STRATEGY FILE_COPY`
	}
	return stmt
}

// Password is the password DB's URLs carry.
const Password = "hunter2-not-checked"

func (c *cluster) url(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(superuser, Password), Host: c.addr, Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// adminURL reaches the maintenance database through the Unix socket,
// from wherever the test runs, whichever namespace postgres listens in.
func (c *cluster) adminURL() string {
	u := url.URL{Scheme: "postgres", User: url.User(superuser), Path: "/postgres",
		RawQuery: url.Values{"host": {c.dir}, "port": {strconv.Itoa(c.port)}}.Encode()}
	return u.String()
}

// connectTimeout bounds one administrative statement on the cluster.
const connectTimeout = 30 * time.Second

// randomName is a lower-case identifier part, unique per call.
func randomName() string {
	b := []byte(rand.Text()[:12])
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
