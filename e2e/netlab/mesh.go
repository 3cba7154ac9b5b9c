package netlab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Coordinator ports: the config defaults, and the alternate STUN port that
// RFC 5780 tests need on the second address.
const (
	CoordinatorPort = 8443
	STUNPort        = 3478
	STUNAltPort     = 3479
)

// Start-up and shutdown timing of meshnode processes.
const (
	// readyTimeout bounds a coordinator or node start (keys, database,
	// TLS certificate, registration): seconds normally, so reaching it
	// means it is stuck.
	readyTimeout = 30 * time.Second
	// downTimeout bounds a node's leaving after `meshnode down`.
	downTimeout = 10 * time.Second
	// tokenExpiry outlives the longest test run.
	tokenExpiry = "2h"
	// logTail is how many log lines an error quotes.
	logTail = 15
)

// Coordinator is a `meshnode coordinator` process on the coordinator host.
type Coordinator struct {
	NS      *Netns
	lab     *Lab
	name    string // of its process and log
	dataDir string
	// port is the control API's; stun and stunAlt are the STUN ports on
	// the primary and alternate addresses (the IPv6 one has stun).
	port, stun, stunAlt int
	// database is its --database ("": SQLite in dataDir).
	database string
	// args are settings beyond the lab's (--dns-records ...).
	args []string

	mu   sync.Mutex
	proc *Proc
}

// StartCoordinator runs a coordinator on CoordinatorHost: control API and TCP
// relay on every address (IPv6-only nodes dial CoordinatorAddr6), STUN and
// UDP relay on both IPv4 addresses and on the IPv6 one; args are further
// flags.
func (l *Lab) StartCoordinator(ctx context.Context, args ...string) (*Coordinator, error) {
	if err := l.needBin(); err != nil {
		return nil, err
	}
	n, err := l.CoordinatorHost(ctx)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{NS: n, lab: l, name: "coordinator", dataDir: filepath.Join(l.dir, "coordinator"),
		port: CoordinatorPort, stun: STUNPort, stunAlt: STUNAltPort, args: args}
	return c, c.Start(ctx)
}

// URL is the coordinator's public URL.
func (c *Coordinator) URL() string {
	a, _ := CoordinatorAddrs()
	return fmt.Sprintf("https://%s", netip.AddrPortFrom(a, uint16(c.port)))
}

// URL6 is the coordinator's URL over IPv6, for nodes without IPv4.
func (c *Coordinator) URL6() string {
	return fmt.Sprintf("https://%s", netip.AddrPortFrom(CoordinatorAddr6(), uint16(c.port)))
}

// Start starts the coordinator (again, after Kill: same data directory) and
// waits until it accepts connections.
func (c *Coordinator) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil && c.proc.Running() {
		return fmt.Errorf("coordinator already running (pid %d)", c.proc.PID())
	}
	a, b := CoordinatorAddrs()
	argv := append(append([]string{c.lab.bin, "coordinator"}, c.dataArgs()...),
		"--listen", fmt.Sprintf(":%d", c.port),
		"--stun-listen", netip.AddrPortFrom(a, uint16(c.stun)).String(),
		"--stun-alternate", netip.AddrPortFrom(b, uint16(c.stunAlt)).String(),
		"--stun-listen-v6", netip.AddrPortFrom(CoordinatorAddr6(), uint16(c.stun)).String(),
		"--public-url", c.URL(),
		"--log-level", "debug",
	)
	argv = append(argv, c.args...)
	p, err := c.NS.Start(c.name, argv...)
	if err != nil {
		return err
	}
	c.proc = p
	api := netip.AddrPortFrom(a, uint16(c.port))
	err = Poll(ctx, readyTimeout, PollInterval, func(context.Context) error {
		if !p.Running() {
			return fmt.Errorf("coordinator exited: %v", p.ExitErr())
		}
		return c.NS.Do(func() error {
			conn, err := net.DialTimeout("tcp4", api.String(), time.Second)
			if err != nil {
				return err
			}
			return conn.Close()
		})
	})
	if err != nil {
		return fmt.Errorf("%s start: %w\n%s", c.name, err, p.Tail(logTail))
	}
	return nil
}

// Proc is the coordinator's current process.
func (c *Coordinator) Proc() *Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proc
}

// Kill ends the coordinator abruptly (SIGKILL by PID), as a crash.
func (c *Coordinator) Kill() error {
	p := c.Proc()
	if p == nil {
		return fmt.Errorf("%s not started", c.name)
	}
	return p.Kill()
}

// Token creates a reusable join token.
func (c *Coordinator) Token(ctx context.Context) (string, error) {
	return c.TokenAt(ctx, c.URL())
}

// TokenAt creates a reusable join token whose nodes dial url (URL6 for
// nodes without IPv4).
func (c *Coordinator) TokenAt(ctx context.Context, url string) (string, error) {
	out, err := c.lab.meshnode(ctx, c.NS, append([]string{"token", "create", "--reusable", "--expiry", tokenExpiry, "--public-url", url}, c.dataArgs()...)...)
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	tok := strings.TrimSpace(lines[len(lines)-1])
	if tok == "" {
		return "", fmt.Errorf("token create printed no token: %q", out)
	}
	return tok, nil
}

// RemoveNode removes a node from the mesh and every peer map
// (`meshnode nodes remove`), so the next test's nodes don't see it.
func (c *Coordinator) RemoveNode(ctx context.Context, name string) error {
	_, err := c.lab.meshnode(ctx, c.NS, append([]string{"nodes", "remove", name}, c.dataArgs()...)...)
	return err
}

// Routes runs `meshnode routes VERB NAME PREFIX...` on the coordinator
// host (approve or reject) and returns what it printed.
func (c *Coordinator) Routes(ctx context.Context, verb, name string, prefixes ...string) (string, error) {
	args := append([]string{"routes", verb, name}, prefixes...)
	return c.lab.meshnode(ctx, c.NS, append(args, c.dataArgs()...)...)
}

// Policy runs `meshnode policy VERB ARGS...` on the coordinator host
// (set FILE, test SRC DST, clear) and returns what it printed.
func (c *Coordinator) Policy(ctx context.Context, verb string, args ...string) (string, error) {
	argv := append([]string{"policy", verb}, args...)
	return c.lab.meshnode(ctx, c.NS, append(argv, c.dataArgs()...)...)
}

// TagNode gives a node tags (`meshnode nodes tag NAME TAG...`).
func (c *Coordinator) TagNode(ctx context.Context, name string, tags ...string) error {
	args := append([]string{"nodes", "tag", name}, tags...)
	_, err := c.lab.meshnode(ctx, c.NS, append(args, c.dataArgs()...)...)
	return err
}

// RenameNode renames a node (`meshnode nodes rename`).
func (c *Coordinator) RenameNode(ctx context.Context, name, newName string) error {
	_, err := c.lab.meshnode(ctx, c.NS, append([]string{"nodes", "rename", name, newName}, c.dataArgs()...)...)
	return err
}

// dataArgs are the flags that name the coordinator's state, for it and
// for the admin commands run beside it.
func (c *Coordinator) dataArgs() []string {
	if c.database == "" {
		return []string{"--data-dir", c.dataDir}
	}
	return []string{"--data-dir", c.dataDir, "--database", c.database}
}

// NodeConfig is how a node starts.
type NodeConfig struct {
	Name  string
	Token string
	// ListenPort is the node's UDP port; DefaultNodePort when zero.
	ListenPort int
	// Args are more `meshnode up` flags (--advertise-routes, --exit-node,
	// --dns manage-resolv-conf).
	Args []string
	// Bin is the binary this node runs (a test build such as
	// bin/meshnode-unfiltered-sender); the lab's when empty. The CLI
	// commands the lab runs against it (status, down) use the lab's.
	Bin string
}

// Node is a `meshnode up` process on a host.
type Node struct {
	Name   string
	Host   *Host
	lab    *Lab
	cfg    NodeConfig
	state  string
	socket string
	proc   *Proc
}

// StartNode runs a node on h and waits until its control socket answers
// with an overlay address.
func (l *Lab) StartNode(ctx context.Context, h *Host, cfg NodeConfig) (*Node, error) {
	if err := l.needBin(); err != nil {
		return nil, err
	}
	if cfg.Name == "" || cfg.Token == "" {
		return nil, fmt.Errorf("node %q: a node needs a Name and a Token", cfg.Name)
	}
	if cfg.ListenPort == 0 {
		cfg.ListenPort = DefaultNodePort
	}
	// A node that manages resolv.conf writes the one it sees: the host's,
	// unless its namespace has its own.
	manages := slices.ContainsFunc(cfg.Args, func(a string) bool { return strings.Contains(a, "manage-resolv-conf") })
	if manages && !h.NS.hasResolvConf() {
		return nil, fmt.Errorf("node %q manages resolv.conf, but namespace %s has none of its own: it would write the host's (call SetResolvConf first)", cfg.Name, h.NS.Name)
	}
	state := filepath.Join(l.dir, cfg.Name)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, fmt.Errorf("state of %s: %w", cfg.Name, err)
	}
	n := &Node{Name: cfg.Name, Host: h, lab: l, cfg: cfg, state: state, socket: filepath.Join(state, "meshnode.sock")}
	if err := n.Start(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

// Start runs the node's process and waits until its control socket answers
// with an overlay address. After the process ended (Kill, Down) it starts
// it again with the same state, as a reboot or an upgrade does.
func (n *Node) Start(ctx context.Context) error {
	if n.proc != nil && n.proc.Running() {
		return fmt.Errorf("node %s already running (pid %d)", n.Name, n.proc.PID())
	}
	bin := n.cfg.Bin
	if bin == "" {
		bin = n.lab.bin
	}
	argv := append([]string{bin, "up",
		"--token", n.cfg.Token,
		"--state-dir", n.state,
		"--interface", "mesh0",
		"--socket", n.socket,
		"--listen-port", strconv.Itoa(n.cfg.ListenPort),
		"--name", n.Name,
		"--log-level", "debug",
	}, n.cfg.Args...)
	p, err := n.Host.NS.Start(n.Name, argv...)
	if err != nil {
		return err
	}
	n.proc = p
	err = Poll(ctx, readyTimeout, PollInterval, func(ctx context.Context) error {
		if !p.Running() {
			return fmt.Errorf("node exited: %v", p.ExitErr())
		}
		st, err := n.Status(ctx)
		if err != nil {
			return err
		}
		if !st.Me().V4().IsValid() {
			return errors.New("no overlay address yet")
		}
		return nil
	})
	if err != nil {
		return errors.Join(fmt.Errorf("node %s start: %w\n%s", n.Name, err, p.Tail(logTail)), p.Stop(stopGrace))
	}
	return nil
}

// Kill ends the node's process abruptly (SIGKILL), as a crash or a power
// cut does: it says goodbye to nobody.
func (n *Node) Kill() error { return n.proc.Kill() }

// Proc is the node's process.
func (n *Node) Proc() *Proc { return n.proc }

// Socket is the node's control socket.
func (n *Node) Socket() string { return n.socket }

// Status is `meshnode status --json`.
func (n *Node) Status(ctx context.Context) (Status, error) {
	out, err := n.lab.meshnode(ctx, nil, "status", "--json", "--socket", n.socket)
	if err != nil {
		return Status{}, err
	}
	var st Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return Status{}, fmt.Errorf("status of %s: %w: %q", n.Name, err, out)
	}
	return st, nil
}

// Ping is `meshnode ping PEER --count N`: discovery pings and their path.
func (n *Node) Ping(ctx context.Context, peer string, count int) (string, error) {
	return n.lab.meshnode(ctx, nil, "ping", peer, "--count", strconv.Itoa(count), "--socket", n.socket)
}

// Set changes the running node's choices (`meshnode set ARGS`).
func (n *Node) Set(ctx context.Context, args ...string) (string, error) {
	return n.lab.meshnode(ctx, nil, append(append([]string{"set"}, args...), "--socket", n.socket)...)
}

// Profile records the node's CPU for seconds into out (`meshnode debug
// profile`), for go tool pprof.
func (n *Node) Profile(ctx context.Context, seconds int, out string) error {
	_, err := n.lab.meshnode(ctx, nil, "debug", "profile", "--seconds", strconv.Itoa(seconds), "-o", out, "--socket", n.socket)
	return err
}

// Down asks the node to leave the mesh (`meshnode down`) and waits for it to
// exit; a node that doesn't is stopped by signal.
func (n *Node) Down(ctx context.Context) error {
	if !n.proc.Running() {
		return nil
	}
	_, downErr := n.lab.meshnode(ctx, nil, "down", "--socket", n.socket)
	t := time.NewTimer(downTimeout)
	defer t.Stop()
	select {
	case <-n.proc.Done():
		return downErr
	case <-t.C:
	}
	return errors.Join(downErr, fmt.Errorf("node %s still running %v after down", n.Name, downTimeout), n.proc.Stop(stopGrace))
}

// needBin checks that the lab was given a meshnode binary.
func (l *Lab) needBin() error {
	if l.bin == "" {
		return errors.New("lab has no meshnode binary: set Options.Bin (make build puts it in bin/meshnode)")
	}
	return nil
}

// meshnode runs a short meshnode command, inside n when it isn't nil, and
// returns its stdout; the error quotes stderr.
func (l *Lab) meshnode(ctx context.Context, n *Netns, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	argv := append([]string{l.bin}, args...)
	if n != nil {
		argv = append([]string{l.tools.IP, "netns", "exec", n.Name}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("meshnode %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
