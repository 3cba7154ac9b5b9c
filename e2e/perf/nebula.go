package perf

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/meshnode/meshnode/e2e/netlab"
)

const (
	nebulaPort = 4242
	nebulaMTU  = 1300
)

// nebulaNet is Nebula's overlay: the lighthouse is .1, host A .2, host B
// .3. Away from the lab's LANs, meshnode's overlay and wgNet.
var nebulaNet = netip.MustParsePrefix("172.16.100.0/24")

// nebulaHost is one Nebula instance of the comparison.
type nebulaHost struct {
	name       string
	host       *netlab.Host
	lighthouse bool
}

// setUpNebula makes a CA and a certificate for each host, starts a
// lighthouse on a new public site and Nebula on both hosts, and waits
// until a ping crosses (Nebula has no relay here: a reply means the
// punched direct path).
func setUpNebula(ctx context.Context, env Env, bins NebulaBins, a, b *netlab.Host) (contender, func(), error) {
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	pub, err := env.Lab.AddSite(sctx, netlab.SiteConfig{Kind: netlab.Public})
	if err != nil {
		return contender{}, nil, err
	}
	dir := filepath.Join(env.Lab.Dir(), "nebula")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return contender{}, nil, err
	}
	if err := nebulaCert(sctx, bins.Cert, dir, "ca", "-name", "perf", "-out-crt", "ca.crt", "-out-key", "ca.key"); err != nil {
		return contender{}, nil, err
	}
	lh := netip.AddrPortFrom(pub.Hosts[0].Addr, nebulaPort)
	hosts := []nebulaHost{{"lighthouse", pub.Hosts[0], true}, {"a", a, false}, {"b", b, false}}
	var procs []*netlab.Proc
	for i, h := range hosts {
		addr := nebulaAddr(i)
		if err := nebulaCert(sctx, bins.Cert, dir, "sign", "-ca-crt", "ca.crt", "-ca-key", "ca.key", "-name", h.name,
			"-networks", netip.PrefixFrom(addr, nebulaNet.Bits()).String(), "-out-crt", h.name+".crt", "-out-key", h.name+".key"); err != nil {
			return contender{}, nil, err
		}
		cfg, err := nebulaConfig(dir, h, lh)
		if err != nil {
			return contender{}, nil, err
		}
		path := filepath.Join(dir, h.name+".yaml")
		if err := os.WriteFile(path, cfg, 0o600); err != nil {
			return contender{}, nil, err
		}
		p, err := h.host.NS.Start("nebula-"+h.name, bins.Nebula, "-config", path)
		if err != nil {
			return contender{}, nil, err
		}
		if h.lighthouse {
			continue
		}
		procs = append(procs, p)
		if err := waitAddr(ctx, h.host.NS, p, addr); err != nil {
			return contender{}, nil, err
		}
	}
	if _, err := firstReply(ctx, a.NS, env.Lab.Tools().Ping, nebulaAddr(2)); err != nil {
		return contender{}, nil, err
	}
	return contender{target: nebulaAddr(2), procs: procs}, nil, nil
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
// (nebulaAddr(0)), punching on, the TUN at nebulaMTU (none on the
// lighthouse) and a firewall that allows everything.
func nebulaConfig(dir string, h nebulaHost, lh netip.AddrPort) ([]byte, error) {
	allowAll := []map[string]string{{"port": "any", "proto": "any", "host": "any"}}
	lighthouses := []string{nebulaAddr(0).String()}
	tun := map[string]any{"dev": "nebula1", "mtu": nebulaMTU}
	if h.lighthouse {
		lighthouses = []string{}
		tun = map[string]any{"disabled": true}
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
		"tun":             tun,
		"logging":         map[string]string{"level": "info"},
		"firewall":        map[string]any{"outbound": allowAll, "inbound": allowAll},
	})
}
