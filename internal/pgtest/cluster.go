package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bounds on the cluster's life: initdb takes a few seconds on a loaded
// 2-core machine, a start well under one, a fast shutdown about one.
const (
	initTimeout  = 2 * time.Minute
	readyTimeout = time.Minute
	stopTimeout  = 30 * time.Second
	pollEvery    = 50 * time.Millisecond
)

// cluster is a postgres and the directory that holds it.
type cluster struct {
	dir  string // removed by stop
	bin  string
	cred *syscall.Credential
	port int
	addr string // 127.0.0.1:port, in the namespace it listens in
	// enter, when set, runs a function inside the network namespace
	// postgres listens in (netlab's Netns.Do); the test reaches it
	// through its Unix socket in dir either way.
	enter func(func() error) error

	// One run of postgres: start begins one, shutdown or kill ends it.
	cmd  *exec.Cmd
	done chan struct{} // closed when postgres has exited
	exit error         // its exit status, once done is closed
	// release frees the thread that started postgres, once it has exited.
	release func()

	// admin is the one connection this binary's administrative
	// statements (CREATE and DROP DATABASE) take turns on: a connection
	// costs the server ~40 ms of CPU on this kind of VM (a backend's
	// fork, page faults and exit), as much as the statement itself. nil
	// until ready connects it, and again once it is lost.
	adminMu sync.Mutex
	admin   *pgx.Conn
}

// errMissing marks what a developer's machine may lack.
var errMissing = errors.New("missing")

func isMissing(err error) bool { return errors.Is(err, errMissing) }

// binDir finds Debian's PostgreSQL binaries, the newest version first.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: needs PostgreSQL's initdb and postgres under /usr/lib/postgresql/*/bin (Debian's postgresql package; scripts/deps.sh installs it)", errMissing)
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// credential is who runs PostgreSQL: the caller, unless that is root, which
// PostgreSQL refuses; then the postgres user Debian's package creates.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: running as root needs the postgres user to run PostgreSQL (Debian's postgresql package creates it): %v", errMissing, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// newCluster makes a cluster in a new temporary directory and starts it,
// inside enter's network namespace when enter is set. Its data is a copy
// of the template (template.go) when fromTemplate is set, else initdb's.
func newCluster(enter func(func() error) error, fromTemplate bool) (*cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tempRoot(), "meshnode-pg-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c := &cluster{dir: dir, bin: bin, cred: cred, port: port, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), enter: enter}
	if err := c.makeData(fromTemplate); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := c.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

// makeData makes the cluster's data directory, dir/data: a copy of the
// binary's template, or initdb's own.
func (c *cluster) makeData(fromTemplate bool) error {
	if err := own(c.dir, c.cred); err != nil {
		return err
	}
	if !fromTemplate {
		return initdb(c.bin, c.cred, c.dir)
	}
	data, err := templateData(c.bin, c.cred)
	if err != nil {
		return err
	}
	// cp -a keeps the files' modes, and their owner when root copies.
	if out, err := exec.Command("cp", "-a", data, filepath.Join(c.dir, "data")).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the template cluster: %v: %s", err, out)
	}
	return nil
}

// own gives dir to cred's user, who runs PostgreSQL; nil: the caller.
func own(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return os.Chown(dir, int(cred.Uid), int(cred.Gid))
}

// initdb makes a cluster's data in dir/data.
func initdb(bin string, cred *syscall.Credential, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
	defer cancel()
	// Trust on loopback and the socket in dir only (start); -N skips
	// fsync, as the cluster is thrown away.
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-N", "-A", "trust", "-U", superuser,
		"-E", "UTF8", "--locale=C", "-D", filepath.Join(dir, "data"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v: %s", err, out)
	}
	return nil
}

// start runs postgres on the cluster's data, port and socket, and waits
// until it accepts connections: at first, and again after shutdown.
func (c *cluster) start() error {
	logFile, err := os.OpenFile(filepath.Join(c.dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	// TCP on loopback only; the Unix socket in dir (0700, the server's
	// user's) for the test itself; fsync off for speed.
	c.cmd = exec.Command(filepath.Join(c.bin, "postgres"), "-D", filepath.Join(c.dir, "data"), "-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+c.dir, "-c", "fsync=off",
		"-c", "max_connections=200")
	c.cmd.Dir = c.dir
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	// Pdeathsig: a test binary that dies without Main's cleanup takes its
	// cluster with it (SIGQUIT: immediate shutdown).
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	c.done = make(chan struct{})
	if err := c.startLocked(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	cmd, done, release := c.cmd, c.done, c.release
	go func() { c.exit = cmd.Wait(); release(); close(done) }()
	if err := c.ready(); err != nil {
		c.kill()
		log, _ := os.ReadFile(filepath.Join(c.dir, "postgres.log"))
		return fmt.Errorf("%w; its log: %s", err, log)
	}
	return nil
}

// startLocked starts postgres from a thread that lives until postgres has
// exited: the kernel sends Pdeathsig when the thread that forked dies, not
// the process (go.dev/issue/27505), and the runtime ends a thread whose
// locked goroutine returns. With enter, the thread forks inside its
// network namespace, so postgres listens there.
func (c *cluster) startLocked() error {
	started := make(chan error)
	held := make(chan struct{})
	var once sync.Once
	c.release = func() { once.Do(func() { close(held) }) }
	fork := c.cmd.Start
	if c.enter != nil {
		fork = func() error { return c.enter(c.cmd.Start) }
	}
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := fork()
		started <- err
		if err == nil {
			<-held
		}
	}()
	return <-started
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ready polls until the server accepts a connection, and keeps that
// connection for the administrative statements (exec).
func (c *cluster) ready() error {
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, c.adminURL())
		cancel()
		if err == nil {
			c.adminMu.Lock()
			c.admin = conn
			c.adminMu.Unlock()
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("postgres exited at start: %v", c.exit)
		case <-time.After(pollEvery):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres on %s not ready after %v: %v", c.addr, readyTimeout, err)
		}
	}
}

// stop shuts postgres down and removes the directory.
func (c *cluster) stop() error {
	return errors.Join(c.shutdown(), os.RemoveAll(c.dir))
}

// shutdown asks postgres for a fast shutdown (SIGINT) by PID, which ends
// every session, and kills it if it takes too long. The data stays: start
// runs it again.
func (c *cluster) shutdown() error {
	c.dropAdmin()
	if err := c.cmd.Process.Signal(syscall.SIGINT); err == nil {
		select {
		case <-c.done:
		case <-time.After(stopTimeout):
			c.kill()
			return fmt.Errorf("postgres (pid %d) ignored SIGINT for %v; killed", c.cmd.Process.Pid, stopTimeout)
		}
	}
	return nil
}

// kill ends postgres and its children (its process group) at once.
func (c *cluster) kill() {
	c.dropAdmin()
	syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck // best effort; gone already is fine
	<-c.done
}

// exec runs one administrative statement on the cluster's maintenance
// database, on the cluster's admin connection, connecting it first if it
// is gone. The statements take turns: pgx's connections serve one at a
// time, and CREATE DATABASE locks its template anyway.
func (c *cluster) exec(stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	c.adminMu.Lock()
	defer c.adminMu.Unlock()
	if c.admin == nil || c.admin.IsClosed() {
		conn, err := pgx.Connect(ctx, c.adminURL())
		if err != nil {
			return fmt.Errorf("connect to the cluster: %w", err)
		}
		c.admin = conn
	}
	if _, err := c.admin.Exec(ctx, stmt); err != nil {
		// pgx closes a connection it lost; the next statement makes
		// another.
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}

// dropAdmin closes the admin connection, before the server goes away.
func (c *cluster) dropAdmin() {
	c.adminMu.Lock()
	conn := c.admin
	c.admin = nil
	c.adminMu.Unlock()
	if conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(ctx) //nolint:errcheck // the server may be gone already
	}
}
