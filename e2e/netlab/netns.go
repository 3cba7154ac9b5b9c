package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netns"
)

// Netns is one network namespace the lab created.
type Netns struct {
	// Name is the namespace's name under /run/netns.
	Name string
	lab  *Lab

	mu     sync.Mutex
	procs  []*Proc
	closed bool
}

// IP runs `ip -n NAME -batch -` with one command per line, so a whole set-up
// costs one process. The batch stops at the first failing line.
func (n *Netns) IP(ctx context.Context, lines ...string) error {
	_, err := n.lab.runInput(ctx, strings.Join(lines, "\n")+"\n", n.lab.tools.IP, "-n", n.Name, "-batch", "-")
	return err
}

// Exec runs a command inside the namespace and returns its combined output.
func (n *Netns) Exec(ctx context.Context, name string, args ...string) (string, error) {
	return n.lab.run(ctx, append([]string{n.lab.tools.IP, "netns", "exec", n.Name, name}, args...)...)
}

// ExecInput is Exec with stdin.
func (n *Netns) ExecInput(ctx context.Context, stdin, name string, args ...string) (string, error) {
	return n.lab.runInput(ctx, stdin, append([]string{n.lab.tools.IP, "netns", "exec", n.Name, name}, args...)...)
}

// Start starts a long-running process inside the namespace, its output in
// the lab's log directory as NAME.log. Closing the namespace stops it.
func (n *Netns) Start(name string, argv ...string) (*Proc, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("start %s: namespace %s is closed", name, n.Name)
	}
	full := append([]string{n.lab.tools.IP, "netns", "exec", n.Name}, argv...)
	p, err := startProc(name, filepath.Join(n.lab.dir, name+".log"), full)
	if err != nil {
		return nil, err
	}
	n.procs = append(n.procs, p)
	return p, nil
}

// Sysctl writes sysctls (dotted keys, as sysctl(8) names them) inside the
// namespace. /proc/sys/net resolves to the writing thread's namespace.
func (n *Netns) Sysctl(kv ...string) error {
	if len(kv)%2 != 0 {
		return fmt.Errorf("sysctl in %s: %d arguments; want key, value pairs", n.Name, len(kv))
	}
	return n.Do(func() error {
		for i := 0; i < len(kv); i += 2 {
			p := "/proc/sys/" + strings.ReplaceAll(kv[i], ".", "/")
			if err := os.WriteFile(p, []byte(kv[i+1]), 0); err != nil {
				return fmt.Errorf("sysctl %s=%s in %s: %w", kv[i], kv[i+1], n.Name, err)
			}
		}
		return nil
	})
}

// noIPv6 turns IPv6 off on one interface before it comes up, on sites
// without IPv6: link-local addresses would only add chatter. Hosts keep
// IPv6 itself on, because the node's TUN device carries overlay IPv6.
func (n *Netns) noIPv6(ifname string) error {
	return n.Sysctl("net.ipv6.conf."+ifname+".disable_ipv6", "1")
}

// Do runs fn on an OS thread that is inside the namespace. Sockets fn opens
// belong to the namespace for their whole life, wherever they are used later.
func (n *Netns) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(n.Name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open network namespace %s: %w", n.Name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", n.Name, err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread stays locked: the runtime discards it when this
		// goroutine ends instead of reusing a thread in the wrong namespace.
		return errors.Join(fnErr, fmt.Errorf("leave network namespace %s: %w", n.Name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

func (n *Netns) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// Close stops the processes started in the namespace and deletes it, which
// also deletes its veth pairs. It is safe to call more than once.
func (n *Netns) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	procs := n.procs
	n.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		errs = append(errs, procs[i].Stop(stopGrace))
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	errs = append(errs, deleteNetns(ctx, n.lab.tools.IP, n.Name), removeEtc(n.Name))
	return errors.Join(errs...)
}

// deleteNetns removes a namespace. Processes still inside would keep it (and
// its veths) alive, so any left (short commands a test started and abandoned)
// are killed by PID first.
func deleteNetns(ctx context.Context, ipPath, name string) error {
	var errs []error
	out, err := run(ctx, "", ipPath, "netns", "pids", name)
	if err != nil {
		errs = append(errs, err)
	}
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill pid %d left in %s: %w", pid, name, err))
		}
	}
	if _, err := run(ctx, "", ipPath, "netns", "del", name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
