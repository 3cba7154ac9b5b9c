package pgtest

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/meshnode/meshnode/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// Each DB is a fresh database of its own, dropped when its test ends.
func TestDBIsFreshAndDropped(t *testing.T) {
	var first string
	t.Run("first", func(t *testing.T) {
		first = DB(t)
		conn := connect(t, first)
		if _, err := conn.Exec(t.Context(), `CREATE TABLE mine (x INTEGER)`); err != nil {
			t.Fatal(err)
		}
		other := connect(t, DB(t))
		if _, err := other.Exec(t.Context(), `SELECT 1 FROM mine`); err == nil {
			t.Fatal("a second database sees the first one's table")
		}
	})
	var n int
	if err := connect(t, AdminURL(t)).QueryRow(t.Context(), `SELECT COUNT(*) FROM pg_database WHERE datname LIKE 't\_%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d test databases left after their tests (%v)", n, err)
	}
}

// A cluster runs as an unprivileged user on loopback, and stop ends its
// process and removes its directory.
func TestStopRemovesEverything(t *testing.T) {
	c, err := start()
	if isMissing(err) {
		testenv.Unavailable(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	pid := c.cmd.Process.Pid
	var listen string
	if err := connect(t, c.url("postgres")).QueryRow(t.Context(), `SELECT current_setting('listen_addresses')`).Scan(&listen); err != nil || listen != "127.0.0.1" {
		t.Fatalf("listen_addresses %q, %v; want loopback only", listen, err)
	}
	st, err := os.Stat(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	if owner := st.Sys().(*syscall.Stat_t).Uid; owner == 0 {
		t.Fatalf("cluster directory owned by root; PostgreSQL must run unprivileged")
	}
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("postgres (pid %d) still there after stop: %v", pid, err)
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Fatalf("cluster directory %s still there after stop: %v", c.dir, err)
	}
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
