package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Process shutdown timing.
const (
	// stopGrace is how long a process gets to exit after SIGTERM: a node
	// tears down its TUN device and tells the coordinator it leaves.
	stopGrace = 10 * time.Second
	// killWait bounds waiting for a process after SIGKILL; only a process
	// stuck in the kernel takes longer, and then the lab reports it.
	killWait = 10 * time.Second
	// tailBytes is how much of a log Tail reads: enough for the last few
	// dozen lines of debug logging.
	tailBytes = 64 << 10
)

// Proc is a long-running process the lab started. It is only ever signalled
// by its own PID.
type Proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// startProc starts argv with stdout and stderr appended to logPath. The
// parent-death signal kills it if the test binary dies before its cleanup
// runs (a panic, a -timeout, SIGKILL).
func startProc(name, logPath string, argv []string) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, argv[0], err)
	}
	p := &Proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Name is the name the process was started under.
func (p *Proc) Name() string { return p.name }

// PID is the process ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// LogPath is the file that collects the process's output.
func (p *Proc) LogPath() string { return p.logPath }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// ExitErr is the process's exit status; call it after Done is closed.
func (p *Proc) ExitErr() error {
	<-p.done
	return p.waitErr
}

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and, if the process is still running after grace,
// SIGKILL. It returns nil once the process is gone.
func (p *Proc) Stop(grace time.Duration) error {
	if !p.Running() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM %s (pid %d): %w", p.name, p.PID(), err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	return p.Kill()
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Proc) Kill() error {
	if !p.Running() {
		return nil
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGKILL %s (pid %d): %w", p.name, p.PID(), err)
	}
	t := time.NewTimer(killWait)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		return fmt.Errorf("%s (pid %d) still running %v after SIGKILL", p.name, p.PID(), killWait)
	}
}

// Tail returns up to the last n lines of the process's log.
func (p *Proc) Tail(n int) string {
	return tailFile(p.logPath, n)
}

// tailFile returns up to the last n lines of a file, or why it can't.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(stat log: %v)", err)
	}
	off := max(st.Size()-tailBytes, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(buf, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
