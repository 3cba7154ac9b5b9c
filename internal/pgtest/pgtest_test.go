package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshnode/meshnode/internal/helperproc"
	"github.com/meshnode/meshnode/internal/testenv"
	"github.com/meshnode/meshnode/internal/wait"
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

// A Prepared database is made once; each DB is a copy of it of the
// test's own, dropped when the test ends.
func TestPreparedDBsAreCopies(t *testing.T) {
	prepares := 0
	p := NewPrepared(func(ctx context.Context, url string) error {
		prepares++
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, `CREATE TABLE schema (version INTEGER); INSERT INTO schema VALUES (7)`)
		return err
	})
	t.Run("copies", func(t *testing.T) {
		first, second := connect(t, p.DB(t)), connect(t, p.DB(t))
		if _, err := first.Exec(t.Context(), `UPDATE schema SET version = 8`); err != nil {
			t.Fatal(err)
		}
		var v int
		if err := second.QueryRow(t.Context(), `SELECT version FROM schema`).Scan(&v); err != nil || v != 7 {
			t.Fatalf("second copy's version = %d, %v; want the prepared 7, untouched by the first copy", v, err)
		}
	})
	if prepares != 1 {
		t.Fatalf("prepared %d times for two databases; want once", prepares)
	}
	var n int
	if err := connect(t, AdminURL(t)).QueryRow(t.Context(), `SELECT COUNT(*) FROM pg_database WHERE datname LIKE 't\_%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d test databases left after their tests (%v)", n, err)
	}
}

// A failed preparation fails every test that wants a copy, naming why.
func TestPreparedFails(t *testing.T) {
	p := NewPrepared(func(context.Context, string) error { return errors.New("migration 3 broke") })
	for range 2 {
		ft := &fatalT{TB: t}
		ft.run(func() { p.DB(ft) })
		if !strings.Contains(ft.msg, "migration 3 broke") {
			t.Fatalf("DB after a failed preparation: %q; want its error", ft.msg)
		}
	}
}

// fatalT records a Fatalf instead of ending the test.
type fatalT struct {
	testing.TB
	msg string
}

func (f *fatalT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls fn on a goroutine of its own, which Fatalf ends.
func (f *fatalT) run(fn func()) {
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	<-done
}

// Clusters go where $TMPDIR says, when it is set.
func TestTempRootHonoursTMPDIR(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	if got := tempRoot(); got != dir {
		t.Fatalf("tempRoot() = %q with TMPDIR=%s", got, dir)
	}
}

// A cluster runs as an unprivileged user on loopback, and stop ends its
// process and removes its directory.
func TestStopRemovesEverything(t *testing.T) {
	c, err := newCluster(nil, false)
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

// helperEnv makes the test binary the child of TestClusterDiesWithItsTest.
const helperEnv = "MESHNODE_PGTEST_HELPER"

// TestHelperCluster starts a cluster, prints its PID, its directory and
// the template's, and waits to be killed, without stopping it.
func TestHelperCluster(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process for TestClusterDiesWithItsTest")
	}
	c, err := newCluster(nil, true)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("cluster", c.cmd.Process.Pid, c.dir, template.dir)
	select {}
}

// A test binary killed before it can stop its cluster takes the cluster
// with it (Pdeathsig), so crashed tests leave no postgres behind.
func TestClusterDiesWithItsTest(t *testing.T) {
	if _, err := binDir(); err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	cmd, out := helperproc.Start(t, "TestHelperCluster", helperEnv+"=1")
	line, err := bufio.NewReader(out).ReadString('\n')
	var pid int
	var dir, tmpl string
	if _, serr := fmt.Sscanf(line, "cluster %d %s %s", &pid, &dir, &tmpl); serr != nil {
		t.Fatalf("helper said %q (%v)", line, err)
	}
	t.Cleanup(func() { os.RemoveAll(dir); os.RemoveAll(tmpl) })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait() //nolint:errcheck // killed on purpose
	wait.For(t, time.Minute, fmt.Sprintf("postgres (pid %d) to end with its test binary", pid), func() bool {
		return gone(pid)
	})
}

// gone reports whether pid has exited: no such process, or a zombie
// nobody reaped yet (PID 1 of a container may not).
func gone(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i > 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
