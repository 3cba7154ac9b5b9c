package osdns

import (
	"context"
	"errors"
	"os"
	"path/filepath"
)

// resolvedHere reports whether systemd-resolved answers and runs in this
// network namespace. resolved is reached over D-Bus, which no network
// namespace separates, and it names links by index: a node in another
// namespace (a container, the test lab) must not configure the host's
// resolved, whose link of that index is another. resolved runs in the
// host's namespace, PID 1's; whether it runs at all, resolvectl tells.
// (Its own process may be invisible here: the packaged unit's
// ProtectProc=invisible hides other users' processes, not root's PID 1.)
func (m *Manager) resolvedHere() bool {
	if _, err := m.opts.LookPath("resolvectl"); err != nil {
		return false
	}
	self, err := os.Readlink(filepath.Join(m.opts.Paths.Proc, "self", "ns", "net"))
	if err != nil {
		return false
	}
	host, err := os.Readlink(filepath.Join(m.opts.Paths.Proc, "1", "ns", "net"))
	if err != nil || host != self {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	return m.opts.Run(ctx, "resolvectl", "status", "--no-pager") == nil
}

// command is one resolvectl command; an optional one may fail.
type command struct {
	args     []string
	optional bool
}

// resolvectl is each command that points resolved at the resolver for
// the link: its servers; the domain as a search and routing domain (so a
// bare NAME works) and the reverse zones as routing-only domains ("~");
// and never the default route, so resolved sends nothing else here. A
// systemd older than 246 lacks default-route, and then never makes a link
// with routing-only domains the default route anyway.
func resolvectl(iface string, cfg Config) []command {
	dnsArgs := []string{"dns", iface}
	for _, a := range cfg.Servers {
		dnsArgs = append(dnsArgs, a.String())
	}
	domainArgs := []string{"domain", iface, cfg.Domain}
	for _, z := range cfg.ReverseZones {
		domainArgs = append(domainArgs, "~"+z)
	}
	return []command{{args: dnsArgs}, {args: domainArgs}, {args: []string{"default-route", iface, "false"}, optional: true}}
}

// applyResolved configures the link, or leaves it as it was.
func (m *Manager) applyResolved(ctx context.Context, cfg Config) error {
	for _, c := range resolvectl(m.opts.Interface, cfg) {
		cctx, cancel := context.WithTimeout(ctx, commandTimeout)
		err := m.opts.Run(cctx, "resolvectl", c.args...)
		cancel()
		switch {
		case err != nil && c.optional:
			m.opts.Log.Debug("optional resolvectl command failed", "err", err)
		case err != nil:
			return errors.Join(err, m.revertResolved(ctx))
		}
	}
	return nil
}

// revertResolved drops the link's DNS settings. The link going away with
// the TUN device drops them too, which is what covers a crash.
func (m *Manager) revertResolved(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	return m.opts.Run(ctx, "resolvectl", "revert", m.opts.Interface)
}
