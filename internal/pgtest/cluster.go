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

// cluster is a running postgres and the directory that holds it.
type cluster struct {
	dir  string // removed by stop
	addr string // 127.0.0.1:port
	cmd  *exec.Cmd
	done chan struct{} // closed when postgres has exited
	exit error         // its exit status, once done is closed
	// release frees the thread that started postgres, once it has exited.
	release func()
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

func start() (*cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "meshnode-pg-")
	if err != nil {
		return nil, err
	}
	c, err := startIn(dir, bin, cred)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

func startIn(dir, bin string, cred *syscall.Credential) (*cluster, error) {
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
	defer cancel()
	// Trust on loopback only (listen_addresses below); -N skips fsync, as
	// the cluster is thrown away.
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-N", "-A", "trust", "-U", superuser,
		"-E", "UTF8", "--locale=C", "-D", data)
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), done: make(chan struct{})}
	logFile, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	// TCP on loopback only, no Unix socket; fsync off for speed.
	c.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "fsync=off",
		"-c", "max_connections=200")
	c.cmd.Dir = dir
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	// Pdeathsig: a test binary that dies without Main's cleanup takes its
	// cluster with it (SIGQUIT: immediate shutdown).
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	if err := c.startLocked(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	go func() { c.exit = c.cmd.Wait(); close(c.done); c.release() }()
	if err := c.ready(); err != nil {
		c.kill()
		log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
		return nil, fmt.Errorf("%w; its log: %s", err, log)
	}
	return c, nil
}

// startLocked starts postgres from a thread that lives until postgres has
// exited: the kernel sends Pdeathsig when the thread that forked dies, not
// the process (go.dev/issue/27505), and the runtime ends a thread whose
// locked goroutine returns.
func (c *cluster) startLocked() error {
	started := make(chan error)
	held := make(chan struct{})
	var once sync.Once
	c.release = func() { once.Do(func() { close(held) }) }
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := c.cmd.Start()
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

// ready polls until the server accepts a connection.
func (c *cluster) ready() error {
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, c.url("postgres"))
		cancel()
		if err == nil {
			return conn.Close(context.Background())
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

// stop asks postgres for a fast shutdown (SIGINT) by PID, kills it if it
// takes too long, and removes the directory.
func (c *cluster) stop() error {
	var errs []error
	if err := c.cmd.Process.Signal(syscall.SIGINT); err == nil {
		select {
		case <-c.done:
		case <-time.After(stopTimeout):
			errs = append(errs, fmt.Errorf("postgres (pid %d) ignored SIGINT for %v; killed", c.cmd.Process.Pid, stopTimeout))
			c.kill()
		}
	}
	return errors.Join(append(errs, os.RemoveAll(c.dir))...)
}

// kill ends postgres and its children (its process group) at once.
func (c *cluster) kill() {
	syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck // best effort; gone already is fine
	<-c.done
}
