package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultPrefix starts the name of every namespace a lab creates; Sweep
// removes stale namespaces with this prefix only.
const DefaultPrefix = "mnlab"

// keepMarker in a lab directory tells Sweep it was kept on purpose.
const keepMarker = "KEEP"

// cmdTimeout bounds every short command (ip, nft, conntrack, sysctl): they
// answer in milliseconds, so reaching it means the kernel or tool is stuck.
const cmdTimeout = 30 * time.Second

// ErrUnsupported marks a machine that can't run the lab: not root, a missing
// tool, or no network namespaces. Tests skip on it.
var ErrUnsupported = errors.New("real-kernel NAT lab unsupported here")

// Tools are the commands the lab runs.
type Tools struct {
	IP        string // iproute2
	NFT       string // nftables
	Conntrack string // conntrack-tools
	Ping      string // iputils-ping
}

// Packages are the Debian packages that provide Tools.
const Packages = "iproute2 nftables conntrack iputils-ping"

// LookupTools finds the lab's commands and names the package of each one
// that is missing.
func LookupTools() (Tools, error) {
	var t Tools
	var errs []error
	for _, c := range []struct {
		dst      *string
		cmd, pkg string
	}{
		{&t.IP, "ip", "iproute2"},
		{&t.NFT, "nft", "nftables"},
		{&t.Conntrack, "conntrack", "conntrack"},
		{&t.Ping, "ping", "iputils-ping"},
	} {
		p, err := exec.LookPath(c.cmd)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s not found; install it with: apt-get install %s", c.cmd, c.pkg))
			continue
		}
		*c.dst = p
	}
	return t, errors.Join(errs...)
}

// Check reports why this machine can't run the lab, wrapping ErrUnsupported,
// or nil when it can try.
func Check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root (network namespaces, nftables, TUN devices); run as root, e.g. sudo make e2e", ErrUnsupported)
	}
	if _, err := LookupTools(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return nil
}

// Options configure a Lab.
type Options struct {
	// Prefix starts every namespace name; DefaultPrefix when empty.
	Prefix string
	// Bin is the meshnode binary that Coordinator and Node run.
	Bin string
	// KeepDir keeps the directory of logs and state after Close.
	KeepDir bool
}

// Lab is one isolated internet of namespaces. Close removes all of it.
type Lab struct {
	id    string
	dir   string
	bin   string
	keep  bool
	tools Tools
	inet  *Netns
	coord *Netns

	mu     sync.Mutex
	nss    []*Netns
	ports  int
	sites  int
	closed bool
}

// New creates a lab: its directory and the "internet" namespace with its
// bridge. On error everything already made is removed.
func New(ctx context.Context, opts Options) (*Lab, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	tools, _ := LookupTools()
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	suffix := make([]byte, 2)
	if _, err := rand.Read(suffix); err != nil {
		return nil, fmt.Errorf("random lab suffix: %w", err)
	}
	id := fmt.Sprintf("%s-%d-%s", prefix, os.Getpid(), hex.EncodeToString(suffix))
	// Named like the namespaces, so Sweep finds it after a crash.
	dir, err := os.MkdirTemp("", id+"-")
	if err != nil {
		return nil, fmt.Errorf("lab directory: %w", err)
	}
	if opts.KeepDir {
		if err := os.WriteFile(filepath.Join(dir, keepMarker), nil, 0o600); err != nil {
			return nil, errors.Join(fmt.Errorf("lab directory: %w", err), os.RemoveAll(dir))
		}
	}
	l := &Lab{
		id:    id,
		dir:   dir,
		bin:   opts.Bin,
		keep:  opts.KeepDir,
		tools: tools,
	}
	inet, err := l.NewNetns(ctx, "inet")
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%w: cannot create a network namespace: %w", ErrUnsupported, err), l.Close())
	}
	l.inet = inet
	// The internet is one IPv4 segment, bridged; for IPv6 the internet
	// namespace also routes, to the prefixes behind the sites' firewalls
	// (routeSite6). Its bridge ports are plain layer 2: no IPv6 of their
	// own.
	if err := inet.Sysctl(
		"net.ipv4.ip_forward", "0",
		"net.ipv6.conf.all.disable_ipv6", "0",
		"net.ipv6.conf.default.disable_ipv6", "1",
		"net.ipv6.conf.all.forwarding", "1",
	); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	if err := inet.IP(ctx, "link add br0 type bridge stp_state 0 forward_delay 0"); err != nil {
		return nil, errors.Join(fmt.Errorf("internet bridge: %w", err), l.Close())
	}
	if err := inet.Sysctl("net.ipv6.conf.br0.disable_ipv6", "0", "net.ipv6.conf.br0.accept_dad", "0"); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	if err := configure(ctx, inet, "br0", []netip.Prefix{netip.PrefixFrom(internetRouter6, internet6Bits)}); err != nil {
		return nil, errors.Join(fmt.Errorf("internet bridge: %w", err), l.Close())
	}
	return l, nil
}

// ID is the lab's unique name; every namespace name starts with it.
func (l *Lab) ID() string { return l.id }

// Dir holds the logs (NAME.log) and node and coordinator state.
func (l *Lab) Dir() string { return l.dir }

// Tools are the commands the lab runs.
func (l *Lab) Tools() Tools { return l.tools }

// NewNetns creates a namespace named after the lab and role, with loopback up.
// Lab.Close removes it if nothing closed it earlier.
func (l *Lab) NewNetns(ctx context.Context, role string) (*Netns, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("namespace %s: lab %s is closed", role, l.id)
	}
	n := &Netns{Name: l.id + "-" + role, lab: l}
	l.nss = append(l.nss, n)
	l.mu.Unlock()
	if _, err := l.run(ctx, l.tools.IP, "netns", "add", n.Name); err != nil {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		return nil, err
	}
	if err := n.IP(ctx, "link set lo up"); err != nil {
		return nil, err
	}
	return n, nil
}

// Namespaces lists the lab's namespaces that are not closed, in order of
// creation.
func (l *Lab) Namespaces() []*Netns {
	l.mu.Lock()
	nss := slices.Clone(l.nss)
	l.mu.Unlock()
	return slices.DeleteFunc(nss, (*Netns).isClosed)
}

// CoordinatorHost returns the namespace that holds both CoordinatorAddrs on
// the internet, creating it on first use.
func (l *Lab) CoordinatorHost(ctx context.Context) (*Netns, error) {
	l.mu.Lock()
	n := l.coord
	l.mu.Unlock()
	if n != nil {
		return n, nil
	}
	n, err := l.NewNetns(ctx, "coord")
	if err != nil {
		return nil, err
	}
	if err := l.dualStackSysctls(n, false); err != nil {
		return nil, err
	}
	a, b := CoordinatorAddrs()
	if err := l.ConnectInternet(ctx, n, "eth0", netip.PrefixFrom(a, internetBits), netip.PrefixFrom(b, internetBits), netip.PrefixFrom(CoordinatorAddr6(), internet6Bits)); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.coord = n
	l.mu.Unlock()
	return n, nil
}

// routerSysctls disables IPv6 on every interface of a namespace that runs
// no node and has no IPv6 (link-local chatter only adds noise) and turns
// forwarding on or off.
func (l *Lab) routerSysctls(n *Netns, forward bool) error {
	return n.Sysctl(
		"net.ipv6.conf.all.disable_ipv6", "1",
		"net.ipv6.conf.default.disable_ipv6", "1",
		"net.ipv4.ip_forward", onOff(forward),
	)
}

// dualStackSysctls keeps IPv6 on in a namespace with IPv6 addresses,
// without duplicate address detection (the lab's addresses are unique, and
// DAD would hold each back for a second), and turns forwarding of both
// families on or off.
func (l *Lab) dualStackSysctls(n *Netns, forward bool) error {
	return n.Sysctl(
		"net.ipv6.conf.all.disable_ipv6", "0",
		"net.ipv6.conf.default.disable_ipv6", "0",
		"net.ipv6.conf.all.accept_dad", "0",
		"net.ipv6.conf.default.accept_dad", "0",
		"net.ipv6.conf.all.forwarding", onOff(forward),
		"net.ipv4.ip_forward", onOff(forward),
	)
}

func onOff(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// routeSite6 has the internet route a site's IPv6 prefix to its router.
func (l *Lab) routeSite6(ctx context.Context, prefix netip.Prefix, router netip.Addr) error {
	if err := l.inet.IP(ctx, fmt.Sprintf("route add %s via %s dev br0", prefix, router)); err != nil {
		return fmt.Errorf("route %s to %s on the internet: %w", prefix, router, err)
	}
	return nil
}

// ConnectInternet plugs a namespace into the internet bridge through a new
// veth whose end in n is called ifname and carries addrs. With an IPv6
// address among them, IPv6 goes through the internet namespace's router.
func (l *Lab) ConnectInternet(ctx context.Context, n *Netns, ifname string, addrs ...netip.Prefix) error {
	l.mu.Lock()
	l.ports++
	port := fmt.Sprintf("p%d", l.ports)
	l.mu.Unlock()
	err := l.inet.IP(ctx,
		fmt.Sprintf("link add %s type veth peer name %s netns %s", port, ifname, n.Name),
		fmt.Sprintf("link set %s master br0", port),
		fmt.Sprintf("link set %s up", port),
	)
	if err != nil {
		return fmt.Errorf("connect %s to the internet: %w", n.Name, err)
	}
	if !slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Addr().Is6() }) {
		if err := n.noIPv6(ifname); err != nil {
			return err
		}
		return configure(ctx, n, ifname, addrs)
	}
	return configure(ctx, n, ifname, addrs, internetRouter6)
}

// configure puts addresses on an interface, brings it up and routes
// everything of each gateway's family through it.
func configure(ctx context.Context, n *Netns, ifname string, addrs []netip.Prefix, gws ...netip.Addr) error {
	lines := make([]string, 0, len(addrs)+len(gws)+1)
	for _, a := range addrs {
		if a.Addr().Is6() {
			lines = append(lines, fmt.Sprintf("addr add %s dev %s nodad", a, ifname))
			continue
		}
		lines = append(lines, fmt.Sprintf("addr add %s dev %s", a, ifname))
	}
	lines = append(lines, fmt.Sprintf("link set %s up", ifname))
	for _, gw := range gws {
		if gw.Is6() {
			lines = append(lines, fmt.Sprintf("route add ::/0 via %s dev %s", gw, ifname))
			continue
		}
		lines = append(lines, fmt.Sprintf("route add default via %s", gw))
	}
	if err := n.IP(ctx, lines...); err != nil {
		return fmt.Errorf("configure %s in %s: %w", ifname, n.Name, err)
	}
	return nil
}

// Close stops every process and removes every namespace of the lab (in
// reverse order of creation), then the lab directory unless KeepDir.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	nss := l.nss
	l.mu.Unlock()
	var errs []error
	for i := len(nss) - 1; i >= 0; i-- {
		errs = append(errs, nss[i].Close())
	}
	if !l.keep {
		errs = append(errs, os.RemoveAll(l.dir))
	}
	return errors.Join(errs...)
}

func (l *Lab) run(ctx context.Context, argv ...string) (string, error) {
	return run(ctx, "", argv...)
}

func (l *Lab) runInput(ctx context.Context, stdin string, argv ...string) (string, error) {
	return run(ctx, stdin, argv...)
}

// run runs a short command, bounded by cmdTimeout, and returns its combined
// output; the error quotes the command and its output.
func run(ctx context.Context, stdin string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
