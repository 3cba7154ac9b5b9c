package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sweepTimeout bounds removing leftover namespaces.
const sweepTimeout = time.Minute

// Guard is for the TestMain of a test binary that builds labs with
// DefaultPrefix: it removes what crashed earlier runs left behind, and on
// SIGINT or SIGTERM removes this run's namespaces and processes and exits
// with status 2, because t.Cleanup doesn't run when a test binary is
// interrupted. It reports on stderr, each line starting with who.
func Guard(who string) {
	sweepReport(who, false)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "%s: %v: removing this run's namespaces and processes\n", who, s)
		sweepReport(who, true)
		os.Exit(2)
	}()
}

// sweepReport sweeps DefaultPrefix's leftovers and says what it removed.
func sweepReport(who string, includeOwn bool) {
	ctx, cancel := context.WithTimeout(context.Background(), sweepTimeout)
	defer cancel()
	removed, err := Sweep(ctx, DefaultPrefix, includeOwn)
	if len(removed) > 0 {
		fmt.Fprintf(os.Stderr, "%s: removed %d lab namespaces and directories: %v\n", who, len(removed), removed)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: removing lab namespaces and directories: %v\n", who, err)
	}
}

// Sweep removes the namespaces and lab directories that labs with this
// prefix left behind: those whose creating process (the PID in the name) is
// gone, and also the current process's own when includeOwn is set (a signal
// handler's last clean-up). Other runs' namespaces, every other namespace,
// and directories kept on purpose (Options.KeepDir) are left alone. It
// returns the names it removed.
func Sweep(ctx context.Context, prefix string, includeOwn bool) ([]string, error) {
	tools, err := LookupTools()
	if err != nil {
		return nil, err
	}
	out, err := run(ctx, "", tools.IP, "netns", "list")
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		name := fields[0]
		if !stale(prefix, name, includeOwn) {
			continue
		}
		if err := deleteNetns(ctx, tools.IP, name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	// Namespaces' own resolv.conf (SetResolvConf), also of namespaces
	// already gone.
	etc, err := filepath.Glob(filepath.Join(netnsEtc, prefix+"-*"))
	if err != nil {
		return removed, errors.Join(append(errs, err)...)
	}
	for _, dir := range etc {
		if !stale(prefix, filepath.Base(dir), includeOwn) {
			continue
		}
		if err := removeEtc(filepath.Base(dir)); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, dir)
	}
	dirs, err := filepath.Glob(filepath.Join(os.TempDir(), prefix+"-*"))
	if err != nil {
		return removed, errors.Join(append(errs, err)...)
	}
	for _, dir := range dirs {
		if !stale(prefix, filepath.Base(dir), includeOwn) {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, keepMarker)); err == nil {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errors.Join(errs...)
}

// stale reports whether a name a lab made belongs to a run that is over.
func stale(prefix, name string, includeOwn bool) bool {
	pid, ok := ownerPID(prefix, name)
	if !ok {
		return false
	}
	if pid == os.Getpid() {
		return includeOwn
	}
	return !processAlive(pid)
}

// ownerPID parses PREFIX-PID-SUFFIX-ROLE, the names labs give namespaces.
func ownerPID(prefix, name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	if !ok {
		return 0, false
	}
	parts := strings.SplitN(rest, "-", 3)
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return 0, false
	}
	pid, err := strconv.Atoi(parts[0])
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// processAlive reports whether a process with this PID exists (signal 0
// checks without sending anything).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
