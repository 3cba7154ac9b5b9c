package pgtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// Prepared is a database made once per test binary, on the shared
// cluster, by a function of the tests' choosing (a schema migrated, say),
// that DB copies for each test: a copy costs the server far less than
// running the preparation again, migrations being many small DDL
// transactions. Tests of the preparation itself (migrations on a blank
// database) take DB instead.
type Prepared struct {
	prepare func(ctx context.Context, url string) error

	once sync.Once
	name string // the template database's; "" until made
	err  error
}

// NewPrepared returns a Prepared that prepare makes on first use, given
// the URL of a blank database. prepare must close every connection it
// opened before it returns: PostgreSQL copies a database only while
// nobody is connected to it.
func NewPrepared(prepare func(ctx context.Context, url string) error) *Prepared {
	return &Prepared{prepare: prepare}
}

// DB creates a database for t alone, a copy of the prepared one, and
// returns its URL (as pgtest.DB's); it is dropped when t ends.
func (p *Prepared) DB(t testing.TB) string {
	t.Helper()
	c := get(t)
	p.once.Do(func() { p.name, p.err = c.prepared(p.prepare) })
	if p.err != nil {
		t.Fatalf("pgtest: prepare a database to copy: %v", p.err)
	}
	return c.url(c.testDB(t, p.name))
}

// prepared makes a blank database, runs prepare on it, and closes it to
// connections, so that nothing changes it after and copies of it never
// wait on a session. It lasts as long as the cluster.
func (c *cluster) prepared(prepare func(ctx context.Context, url string) error) (string, error) {
	name := "p_" + randomName()
	if err := c.exec(c.createDatabase(name, "")); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
	defer cancel()
	if err := prepare(ctx, c.url(name)); err != nil {
		return "", fmt.Errorf("database %s: %w", name, err)
	}
	if err := c.exec(`ALTER DATABASE ` + name + ` WITH ALLOW_CONNECTIONS false IS_TEMPLATE true`); err != nil {
		return "", err
	}
	return name, nil
}
