// Package osdns points the operating system at the node's resolver for
// the mesh's domain only (split DNS), and reads the upstream resolvers
// the machine had, which the resolver forwards everything else to:
// systemd-resolved through resolvectl on Linux, /etc/resolver/<domain> on
// macOS, and, only when the user opts in, /etc/resolv.conf, restored
// exactly when the node stops or at its next start after a crash.
package osdns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Modes: how the OS is pointed at the resolver.
const (
	ModeResolved    = "systemd-resolved"
	ModeResolverDir = "/etc/resolver" // macOS
	ModeResolvConf  = "resolv.conf"   // dns: manage-resolv-conf
	ModeNone        = "none"
)

// commandTimeout bounds one resolvectl command: it answers over D-Bus in
// milliseconds, so reaching it means resolved is stuck.
const commandTimeout = 5 * time.Second

// Paths are the files the package reads and writes; tests point them
// into a temporary directory.
type Paths struct {
	// ResolvConf is the system's resolver configuration.
	ResolvConf string
	// ResolvedUplinks is where systemd-resolved lists the upstream servers
	// it uses (not its own stub): the upstreams with resolved.
	ResolvedUplinks string
	// ResolverDir holds macOS's per-domain resolver files (resolver(5)).
	ResolverDir string
	// Proc is procfs, where this process's network namespace and the
	// host's (PID 1's) are read.
	Proc string
}

// DefaultPaths are the system's.
func DefaultPaths() Paths {
	return Paths{
		ResolvConf:      "/etc/resolv.conf",
		ResolvedUplinks: "/run/systemd/resolve/resolv.conf",
		ResolverDir:     "/etc/resolver",
		Proc:            "/proc",
	}
}

// Options configure a Manager.
type Options struct {
	Paths Paths
	// StateDir keeps the backup of /etc/resolv.conf while it is managed.
	StateDir string
	// ManageResolvConf allows writing /etc/resolv.conf where split DNS is
	// missing (dns: manage-resolv-conf).
	ManageResolvConf bool
	// Interface is the TUN device resolved attaches the servers to.
	Interface string
	// GOOS is the operating system (runtime.GOOS unless a test says).
	GOOS string
	// Run runs a command (resolvectl); nil runs it for real.
	Run func(ctx context.Context, name string, args ...string) error
	// LookPath finds a command; nil is exec.LookPath.
	LookPath func(string) (string, error)
	Log      *slog.Logger
}

// Config is what the OS is told: send the mesh's domain and the overlay's
// reverse zones to Servers.
type Config struct {
	Domain       string       // the mesh's domain, also a search domain
	ReverseZones []string     // routed only, no search
	Servers      []netip.Addr // the resolver's overlay addresses
}

// Manager applies a Config to the OS and takes it back.
type Manager struct {
	opts Options
	mode string // fixed by New

	// opMu orders the changes to the OS (Apply, Revert, Recover), which
	// run commands and write files; mu, never held across them, guards
	// what Mode reports.
	opMu    sync.Mutex
	applied *Config

	mu   sync.Mutex
	note string
}

// New returns a manager; nothing changes until Apply.
func New(opts Options) *Manager {
	if opts.GOOS == "" {
		opts.GOOS = runtime.GOOS
	}
	if opts.Run == nil {
		opts.Run = runCommand
	}
	if opts.LookPath == nil {
		opts.LookPath = exec.LookPath
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{opts: opts}
	m.mode, m.note = m.detect()
	return m
}

// runCommand runs name, its output quoted in the error.
func runCommand(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// detect decides the mode, and says why when it is ModeNone.
func (m *Manager) detect() (mode, note string) {
	switch {
	case m.opts.GOOS == "darwin":
		return ModeResolverDir, ""
	case m.opts.GOOS == "linux" && m.resolvedHere():
		return ModeResolved, ""
	case m.opts.ManageResolvConf:
		return ModeResolvConf, "no systemd-resolved: " + m.opts.Paths.ResolvConf + " points at the resolver while the node runs (dns: manage-resolv-conf)"
	}
	return ModeNone, "no systemd-resolved in this network namespace: " + m.opts.Paths.ResolvConf +
		" left alone, so only programs that ask the resolver directly get the mesh's names (set dns: manage-resolv-conf to point the system at it)"
}

// Mode is how the OS is pointed at the resolver, and why not when it is
// ModeNone or Apply failed.
func (m *Manager) Mode() (mode, note string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mode, m.note
}

func (m *Manager) setNote(note string) {
	m.mu.Lock()
	m.note = note
	m.mu.Unlock()
}

// Recover undoes what a node that crashed left: a managed
// /etc/resolv.conf goes back to the original, and resolver files are
// removed. It runs at every start, before anything reads the upstreams,
// whatever this run's settings.
func (m *Manager) Recover() error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	return errors.Join(m.restoreResolvConf(), m.removeResolverFiles(nil))
}

// Apply points the OS at cfg.Servers for cfg.Domain, replacing what an
// earlier Apply set.
func (m *Manager) Apply(ctx context.Context, cfg Config) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.applied != nil && slices.Equal(m.applied.Servers, cfg.Servers) && m.applied.Domain == cfg.Domain && slices.Equal(m.applied.ReverseZones, cfg.ReverseZones) {
		return nil
	}
	var err error
	switch m.mode {
	case ModeResolved:
		err = m.applyResolved(ctx, cfg)
	case ModeResolverDir:
		err = m.writeResolverFiles(cfg)
	case ModeResolvConf:
		err = m.writeResolvConf(cfg)
	default:
		return nil
	}
	if err != nil {
		m.setNote("not applied: " + err.Error())
		return err
	}
	note := ""
	if m.mode == ModeResolvConf {
		note = m.opts.Paths.ResolvConf + " points at the resolver while the node runs"
	}
	m.setNote(note)
	m.applied = &cfg
	return nil
}

// Revert takes back what Apply set.
func (m *Manager) Revert(ctx context.Context) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.applied == nil {
		return nil
	}
	m.applied = nil
	switch m.mode {
	case ModeResolved:
		return m.revertResolved(ctx)
	case ModeResolverDir:
		return m.removeResolverFiles(nil)
	case ModeResolvConf:
		return m.restoreResolvConf()
	}
	return nil
}

// Upstreams are the resolvers the machine had: what the resolver forwards
// to. With resolved, they are resolved's own upstreams, never its stub
// (which would send the mesh's reverse zones back here); with a managed
// /etc/resolv.conf, the original's. Addresses in exclude (the overlay:
// this resolver and its peers') are left out, so no query loops.
func (m *Manager) Upstreams(exclude []netip.Prefix) ([]netip.AddrPort, error) {
	var content []byte
	var err error
	switch m.mode {
	case ModeResolved:
		content, err = readFile(m.opts.Paths.ResolvedUplinks)
		exclude = append(slices.Clone(exclude), resolvedStubs...)
	case ModeResolvConf:
		content, err = m.originalResolvConf()
	default:
		content, err = readFile(m.opts.Paths.ResolvConf)
	}
	if err != nil {
		return nil, err
	}
	return upstreams(content, exclude)
}
