// Package pgtest gives tests a real, throwaway PostgreSQL cluster: initdb
// in a temporary directory, postgres on a free loopback port as an
// unprivileged user (PostgreSQL refuses to run as root), a fresh database
// per test. One cluster serves a whole test binary: initdb costs seconds,
// a database tens of milliseconds; a test's own cluster (New) starts from
// a copy of what initdb made once. Main stops the shared cluster by PID
// and removes its directory and the template; should the binary die
// first, the kernel stops it (Pdeathsig), leaving only the directories
// (meshnode-pg-* in $TMPDIR).
//
// The binaries come from Debian's postgresql package (scripts/deps.sh),
// under /usr/lib/postgresql/VERSION/bin. Without them the tests skip, or
// fail under CI=true (internal/testenv).
package pgtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
		c, err := newCluster(nil, false) // the binary's only initdb when no test has a cluster of its own
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
	name := "t_" + randomName()
	admin := c.adminURL()
	run(t, admin, `CREATE DATABASE `+name)
	t.Cleanup(func() {
		// FORCE ends connections a failed test left open (PostgreSQL 13+).
		run(t, admin, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	})
	return c.url(name)
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

func run(t testing.TB, dsn, stmt string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: connect to the cluster: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, stmt); err != nil {
		t.Fatalf("pgtest: %s: %v", stmt, err)
	}
}

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
