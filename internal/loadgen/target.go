package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/crypto"
)

// Target is the coordinator under load.
type Target interface {
	// Token creates a reusable join token giving tags.
	Token(ctx context.Context, tags []string) (string, error)
	// SetPolicy sets the access policy.
	SetPolicy(ctx context.Context, text string) error
	// PID is the process whose RSS and CPU time are reported.
	PID() int
	// Close stops the coordinator.
	Close() error
}

// startTimeout bounds a coordinator's start and each admin command.
const startTimeout = 60 * time.Second

// freePort picks a loopback TCP port that is free now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// InProcess is a coordinator in this process (its RSS and CPU include the
// load generator's own).
type InProcess struct {
	srv    *coordinator.Server
	cancel context.CancelFunc
	done   chan error
}

// StartInProcess starts a coordinator with its data in dir, serving on a
// free loopback port.
func StartInProcess(dir string, log *slog.Logger) (*InProcess, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := config.DefaultCoordinator()
	cfg.DataDir = dir
	cfg.Listen = addr
	cfg.STUNListen = "127.0.0.1:0"
	cfg.MetricsListen = ""
	cfg.UIListen = ""
	cfg.PublicURL = "https://" + addr
	cfg.LogLevel = "warn"
	srv, err := coordinator.New(coordinator.Options{Config: cfg, Logger: log})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		srv.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &InProcess{srv: srv, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- srv.Serve(ctx, ln) }()
	return p, nil
}

// Token implements Target.
func (p *InProcess) Token(ctx context.Context, tags []string) (string, error) {
	tok, err := p.srv.CreateToken(ctx, coordinator.TokenOptions{Reusable: true, Tags: tags})
	if err != nil {
		return "", err
	}
	return tok.String(), nil
}

// SetPolicy implements Target.
func (p *InProcess) SetPolicy(ctx context.Context, text string) error {
	_, err := p.srv.SetPolicy(ctx, text)
	return err
}

// PID implements Target.
func (p *InProcess) PID() int { return os.Getpid() }

// Close implements Target.
func (p *InProcess) Close() error {
	p.cancel()
	err := <-p.done
	return errors.Join(err, p.srv.Close())
}

// Process is a meshnode coordinator process started from a binary, so
// its RSS and CPU time are its own; any revision's binary works
// (scripts/build-rev.sh), which lets a run compare before and after.
type Process struct {
	bin, dir string
	cmd      *exec.Cmd
	done     chan error
}

// StartProcess starts bin as a coordinator with its data in dir, serving
// on a free loopback port, with extra flags after the others, and waits
// until it answers. Its log goes to dir/coordinator.log.
func StartProcess(bin, dir string, extra ...string) (*Process, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "coordinator.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	data := filepath.Join(dir, "data")
	args := append([]string{"coordinator", "--data-dir", data, "--listen", addr,
		"--stun-listen", "127.0.0.1:0", "--metrics-listen", "", "--ui-listen", "",
		"--public-url", "https://" + addr, "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &Process{bin: bin, dir: data, cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("coordinator %s exited at start (%v); see %s", bin, err, logf.Name())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Close()
			return nil, fmt.Errorf("coordinator %s not listening on %s after %v", bin, addr, startTimeout)
		}
	}
}

// admin runs one admin command of the binary against the running
// coordinator and returns its output.
func (p *Process) admin(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	args = append(args, "--data-dir", p.dir)
	out, err := exec.CommandContext(ctx, p.bin, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", p.bin, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Token implements Target: the token is the line of the output that
// parses as one.
func (p *Process) Token(ctx context.Context, tags []string) (string, error) {
	args := []string{"token", "create", "--reusable"}
	for _, t := range tags {
		args = append(args, "--tag", t)
	}
	out, err := p.admin(ctx, args...)
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		for f := range strings.FieldsSeq(sc.Text()) {
			if _, err := crypto.ParseToken(f); err == nil {
				return f, nil
			}
		}
	}
	return "", fmt.Errorf("no token in the output of token create: %q", out)
}

// SetPolicy implements Target.
func (p *Process) SetPolicy(ctx context.Context, text string) error {
	f := filepath.Join(filepath.Dir(p.dir), "policy.yaml")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		return err
	}
	_, err := p.admin(ctx, "policy", "set", f)
	return err
}

// PID implements Target.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Close implements Target: SIGTERM, then SIGKILL after a grace period.
func (p *Process) Close() error {
	p.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may be gone
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill() //nolint:errcheck // it may be gone
		<-p.done
	}
	return nil
}

// Usage is a process's resource use.
type Usage struct {
	RSS, PeakRSS int64   // bytes
	CPU          float64 // user and system seconds
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times on Linux.
const clockTicks = 100

// usage reads pid's resource use from /proc (proc(5)).
func usage(pid int) (Usage, error) {
	var u Usage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			u.RSS = kb << 10
		case "VmHWM":
			u.PeakRSS = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return u, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return u, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	u.CPU = (ut + st) / clockTicks
	return u, nil
}

// discard is a logger for the clients' streams, which log every
// reconnect: the report counts them instead.
var discard = slog.New(slog.NewTextHandler(io.Discard, nil))
