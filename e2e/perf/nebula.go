package perf

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meshnode/meshnode/e2e/netlab"
)

const (
	nebulaPort = 4242
	nebulaMTU  = 1300
)

// nebulaNet is Nebula's overlay: the lighthouse is .1, the nodes follow
// in the order they join. Away from the lab's LANs, meshnode's overlay and
// wgNet.
var nebulaNet = netip.MustParsePrefix("172.16.100.0/24")

// nebulaHost is one Nebula instance's name and role, for its config.
type nebulaHost struct {
	name       string
	lighthouse bool
}

// nebulaMesh is one Nebula network: a CA, a lighthouse on a public site of
// its own, and the nodes that join it, each with its own certificate and
// the next address on nebulaNet. The throughput setup and the time to
// first ping each build one.
type nebulaMesh struct {
	bins NebulaBins
	name string // names the directory and the processes' logs
	dir  string
	pub  *netlab.Site
	lh   netip.AddrPort // the lighthouse's underlay address
	next int            // the next node's index on nebulaNet
}

// nebulaNode is a node with its certificate signed and its config written,
// ready to start.
type nebulaNode struct {
	name, config string
	addr         netip.Addr
}

// newNebulaMesh makes a CA in the lab's directory name, and starts the
// lighthouse (nebulaAddr(0)) on a new public site and waits for its TUN.
func newNebulaMesh(ctx context.Context, env Env, bins NebulaBins, name string) (*nebulaMesh, error) {
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	pub, err := env.Lab.AddSite(sctx, netlab.SiteConfig{Kind: netlab.Public})
	if err != nil {
		return nil, err
	}
	m := &nebulaMesh{
		bins: bins, name: name, dir: filepath.Join(env.Lab.Dir(), name),
		pub: pub, lh: netip.AddrPortFrom(pub.Hosts[0].Addr, nebulaPort),
	}
	err = func() error {
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			return err
		}
		if err := nebulaCert(sctx, bins.Cert, m.dir, "ca", "-name", name, "-out-crt", "ca.crt", "-out-key", "ca.key"); err != nil {
			return err
		}
		lh, err := m.join(sctx, "lighthouse", true)
		if err != nil {
			return err
		}
		_, err = m.up(ctx, lh, pub.Hosts[0])
		return err
	}()
	if err != nil {
		env.closeSite(pub)
		return nil, err
	}
	return m, nil
}

// close removes the lighthouse's site.
func (m *nebulaMesh) close(env Env) { env.closeSite(m.pub) }

// join signs a certificate for a node named name at the mesh's next
// address and writes its config.
func (m *nebulaMesh) join(ctx context.Context, name string, lighthouse bool) (nebulaNode, error) {
	if m.next >= 1<<(32-nebulaNet.Bits())-2 {
		return nebulaNode{}, fmt.Errorf("nebula mesh %s: no address left on %v for %s", m.name, nebulaNet, name)
	}
	n := nebulaNode{name: name, addr: nebulaAddr(m.next), config: filepath.Join(m.dir, name+".yaml")}
	m.next++
	if err := nebulaCert(ctx, m.bins.Cert, m.dir, "sign", "-ca-crt", "ca.crt", "-ca-key", "ca.key", "-name", name,
		"-networks", netip.PrefixFrom(n.addr, nebulaNet.Bits()).String(), "-out-crt", name+".crt", "-out-key", name+".key"); err != nil {
		return nebulaNode{}, err
	}
	cfg, err := nebulaConfig(m.dir, nebulaHost{name, lighthouse}, m.lh)
	if err != nil {
		return nebulaNode{}, err
	}
	return n, os.WriteFile(n.config, cfg, 0o600)
}

// start runs n's Nebula on h.
func (m *nebulaMesh) start(n nebulaNode, h *netlab.Host) (*netlab.Proc, error) {
	return h.NS.Start("nebula-"+m.name+"-"+n.name, m.bins.Nebula, "-config", n.config)
}

// up starts n on h and waits until its TUN has its address.
func (m *nebulaMesh) up(ctx context.Context, n nebulaNode, h *netlab.Host) (*netlab.Proc, error) {
	p, err := m.start(n, h)
	if err != nil {
		return nil, err
	}
	return p, waitAddr(ctx, h.NS, p, n.addr)
}

// setUpNebula builds a Nebula mesh, brings up a node on each host, and
// waits until a ping crosses (Nebula has no relay here: a reply means the
// punched direct path). down removes the lighthouse.
func setUpNebula(ctx context.Context, env Env, bins NebulaBins, a, b *netlab.Host) (contender, func(), error) {
	m, err := newNebulaMesh(ctx, env, bins, "nebula")
	if err != nil {
		return contender{}, nil, err
	}
	c, err := func() (contender, error) {
		sctx, cancel := context.WithTimeout(ctx, startTimeout)
		defer cancel()
		var c contender
		for _, h := range []struct {
			name string
			host *netlab.Host
		}{{"a", a}, {"b", b}} {
			n, err := m.join(sctx, h.name, false)
			if err != nil {
				return c, err
			}
			p, err := m.up(ctx, n, h.host)
			if err != nil {
				return c, err
			}
			c.procs, c.target = append(c.procs, p), n.addr
		}
		_, err := firstReply(ctx, a.NS, env.Lab.Tools().Ping, c.target)
		return c, err
	}()
	if err != nil {
		m.close(env)
		return contender{}, nil, err
	}
	return c, func() { m.close(env) }, nil
}

// nebulaFirst is Nebula's first node of a time-to-first-ping pair: a mesh
// of its own, the node up and settled (a ping to the lighthouse's Nebula
// address answered: its handshake with the lighthouse is done and its
// address reported). Each second node joins with its own certificate and
// address, signed before the clock starts; the first node pings it from
// the moment it starts (its address is in its certificate).
func nebulaFirst(env Env, bins NebulaBins) firstNode {
	return func(ctx context.Context, h *netlab.Host, name string) (secondNode, func(), error) {
		m, err := newNebulaMesh(ctx, env, bins, "nebula-"+name)
		if err != nil {
			return nil, nil, err
		}
		err = func() error {
			sctx, cancel := context.WithTimeout(ctx, startTimeout)
			defer cancel()
			a, err := m.join(sctx, name, false)
			if err != nil {
				return err
			}
			if _, err := m.up(ctx, a, h); err != nil {
				return err
			}
			_, err = firstReply(ctx, h.NS, env.Lab.Tools().Ping, nebulaAddr(0))
			return err
		}()
		if err != nil {
			m.close(env)
			return nil, nil, err
		}
		second := func(ctx context.Context, hb *netlab.Host, name string) (time.Duration, error) {
			sctx, cancel := context.WithTimeout(ctx, startTimeout)
			defer cancel()
			b, err := m.join(sctx, name, false)
			if err != nil {
				return 0, err
			}
			start := time.Now()
			if _, err := m.start(b, hb); err != nil {
				return 0, err
			}
			reply, err := firstReply(ctx, h.NS, env.Lab.Tools().Ping, b.addr)
			if err != nil {
				return 0, err
			}
			return reply.Sub(start), nil
		}
		return second, func() { m.close(env) }, nil
	}
}

// waitAddr polls until addr is on an interface in n: Nebula brings its
// TUN up a moment after it starts, and a ping before that fails at once.
func waitAddr(ctx context.Context, n *netlab.Netns, p *netlab.Proc, addr netip.Addr) error {
	return pollWhile(ctx, p, func(ctx context.Context) error {
		out, err := n.Exec(ctx, "ip", "-o", "addr", "show", "to", addr.String())
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) == "" {
			return fmt.Errorf("%v is on no interface in %s yet", addr, n.Name)
		}
		return nil
	})
}

// nebulaAddr is instance i's address on nebulaNet.
func nebulaAddr(i int) netip.Addr {
	a := nebulaNet.Addr().As4()
	a[3] = byte(1 + i)
	return netip.AddrFrom4(a)
}

// nebulaCert runs nebula-cert in dir.
func nebulaCert(ctx context.Context, bin, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nebula-cert %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// nebulaConfig is h's config: its certificate, the lighthouse at lh
// (nebulaAddr(0)), punching on, the TUN at nebulaMTU (the lighthouse's
// too, so a node can ping it to learn it is registered) and a firewall
// that allows everything.
func nebulaConfig(dir string, h nebulaHost, lh netip.AddrPort) ([]byte, error) {
	allowAll := []map[string]string{{"port": "any", "proto": "any", "host": "any"}}
	lighthouses := []string{nebulaAddr(0).String()}
	if h.lighthouse {
		lighthouses = []string{}
	}
	return yaml.Marshal(map[string]any{
		"pki": map[string]string{
			"ca":   filepath.Join(dir, "ca.crt"),
			"cert": filepath.Join(dir, h.name+".crt"),
			"key":  filepath.Join(dir, h.name+".key"),
		},
		"static_host_map": map[string][]string{nebulaAddr(0).String(): {lh.String()}},
		"lighthouse":      map[string]any{"am_lighthouse": h.lighthouse, "interval": 60, "hosts": lighthouses},
		"listen":          map[string]any{"host": "0.0.0.0", "port": nebulaPort},
		"punchy":          map[string]any{"punch": true, "respond": true},
		"tun":             map[string]any{"dev": "nebula1", "mtu": nebulaMTU},
		"logging":         map[string]string{"level": "info"},
		"firewall":        map[string]any{"outbound": allowAll, "inbound": allowAll},
	})
}
