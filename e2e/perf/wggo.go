package perf

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

const (
	// wgModule is wireguard-go's module; its main package is the daemon.
	wgModule = "golang.zx2c4.com/wireguard"
	wgPort   = 51820
	wgMTU    = 1420
	// wgKeepalive is the persistent keepalive (s). Setting it sends at
	// once, so both sides start a handshake: the punch by hand.
	wgKeepalive = 25
	// wgSocketDir is where wireguard-go puts its UAPI sockets (IF.sock);
	// it is not per network namespace, so interface names carry the PID.
	wgSocketDir = "/var/run/wireguard"
	// buildTimeout bounds building wireguard-go (downloads included).
	buildTimeout = 5 * time.Minute
	// uapiTimeout bounds one UAPI exchange with a local daemon.
	uapiTimeout = 5 * time.Second
)

// wgNet is stock wireguard-go's overlay; host A is .1, host B .2. Away
// from the lab's 10.0.0.0/8 LANs and meshnode's 100.88.0.0/16.
var wgNet = netip.MustParsePrefix("172.16.99.0/24")

// wireguardGoVersion is the version of wireguard-go that go.mod requires
// (go.mod's replace points elsewhere; the requirement is upstream's).
func wireguardGoVersion(ctx context.Context, goBin string) (string, error) {
	out, err := exec.CommandContext(ctx, goBin, "list", "-m", "-f", "{{.Version}}", wgModule).Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w", wgModule, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// buildWireguardGo installs wireguard-go at version from the module
// proxy into dir, outside this module (so go.mod's replace doesn't apply),
// and returns the binary.
func buildWireguardGo(ctx context.Context, goBin, version, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "install", wgModule+"@"+version)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w: %s", wgModule, version, err, strings.TrimSpace(string(out)))
	}
	return filepath.Join(dir, filepath.Base(wgModule)), nil
}

// setUpWireguardGo builds stock wireguard-go into a temporary directory,
// runs it on the i-th host of each site with the other NAT's public
// address as the endpoint, and waits until a ping crosses. It returns the
// version.
func setUpWireguardGo(ctx context.Context, env Env, sa, sb *netlab.Site, i int) (contender, string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return contender{}, "", errors.New("go not found on PATH: stock wireguard-go is built with it")
	}
	version, err := wireguardGoVersion(ctx, goBin)
	if err != nil {
		return contender{}, "", err
	}
	dir, err := os.MkdirTemp("", "perf-wireguard-go-")
	if err != nil {
		return contender{}, version, err
	}
	// The running daemons keep their binary open; removing the directory
	// now is fine on Linux and leaves nothing behind on any exit path.
	defer os.RemoveAll(dir)
	bin, err := buildWireguardGo(ctx, goBin, version, dir)
	if err != nil {
		return contender{}, version, err
	}
	sites := []*netlab.Site{sa, sb}
	keys := make([]*ecdh.PrivateKey, 2)
	procs := make([]*netlab.Proc, 2)
	ifs := make([]string, 2)
	for k, s := range sites {
		if keys[k], err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
			return contender{}, version, err
		}
		ifs[k] = fmt.Sprintf("wgp%d%c", os.Getpid()%100000, 'a'+k)
		if procs[k], err = startWireguardGo(ctx, bin, s.Hosts[i].NS, ifs[k], wgAddr(k)); err != nil {
			return contender{}, version, err
		}
	}
	for k, s := range sites {
		peer := sites[1-k]
		cfg := uapiConfig(keys[k], keys[1-k].PublicKey(), netip.AddrPortFrom(peer.Router.WAN(), wgPort), wgAddr(1-k))
		if err := uapiSet(ctx, filepath.Join(wgSocketDir, ifs[k]+".sock"), cfg); err != nil {
			return contender{}, version, fmt.Errorf("configure wireguard-go on %s: %w", s.Hosts[i].NS.Name, err)
		}
	}
	if _, err := firstReply(ctx, sa.Hosts[i].NS, env.Lab.Tools().Ping, wgAddr(1)); err != nil {
		return contender{}, version, err
	}
	return contender{target: wgAddr(1), procs: procs}, version, nil
}

// wgAddr is host i's address on wgNet.
func wgAddr(i int) netip.Addr {
	a := wgNet.Addr().As4()
	a[3] = byte(1 + i)
	return netip.AddrFrom4(a)
}

// startWireguardGo runs the daemon in the foreground on interface ifname
// in n, waits for its UAPI socket, and puts addr on the interface.
func startWireguardGo(ctx context.Context, bin string, n *netlab.Netns, ifname string, addr netip.Addr) (*netlab.Proc, error) {
	p, err := n.Start("wireguard-go-"+ifname, bin, "-f", ifname)
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(wgSocketDir, ifname+".sock")
	err = pollWhile(ctx, p, func(ctx context.Context) error {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		return nil, err
	}
	if err := n.IP(ctx,
		fmt.Sprintf("addr add %s dev %s", netip.PrefixFrom(addr, wgNet.Bits()), ifname),
		fmt.Sprintf("link set %s mtu %d", ifname, wgMTU),
		fmt.Sprintf("link set %s up", ifname),
	); err != nil {
		return nil, err
	}
	return p, nil
}

// uapiConfig is a UAPI "set" body (wireguard.com/xplatform): this side's
// key and port, and the one peer with its endpoint and allowed address.
func uapiConfig(priv *ecdh.PrivateKey, peer *ecdh.PublicKey, endpoint netip.AddrPort, allowed netip.Addr) string {
	return strings.Join([]string{
		"private_key=" + hex.EncodeToString(priv.Bytes()),
		fmt.Sprintf("listen_port=%d", wgPort),
		"replace_peers=true",
		"public_key=" + hex.EncodeToString(peer.Bytes()),
		"endpoint=" + endpoint.String(),
		fmt.Sprintf("persistent_keepalive_interval=%d", wgKeepalive),
		"replace_allowed_ips=true",
		"allowed_ip=" + netip.PrefixFrom(allowed, allowed.BitLen()).String(),
	}, "\n") + "\n"
}

// uapiSet sends a "set" operation to the UAPI socket and checks its errno.
func uapiSet(ctx context.Context, sock, body string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(uapiTimeout)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("set=1\n" + body + "\n")); err != nil {
		return err
	}
	return readErrno(bufio.NewReader(c))
}

// readErrno reads a UAPI reply, key=value lines up to a blank line, and
// returns an error unless it says errno=0.
func readErrno(r *bufio.Reader) error {
	errno := ""
	for range 64 {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("UAPI reply: %w", err)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, "errno="); ok {
			errno = v
		}
	}
	if errno != "0" {
		return fmt.Errorf("UAPI set failed: errno=%q", errno)
	}
	return nil
}
