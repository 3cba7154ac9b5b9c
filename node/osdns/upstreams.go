package osdns

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strconv"

	"github.com/miekg/dns"
)

// resolvedStubs are systemd-resolved's own listeners (resolved.conf(5):
// 127.0.0.53 the stub, 127.0.0.54 the proxy): never upstreams.
var resolvedStubs = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.53/32"),
	netip.MustParsePrefix("127.0.0.54/32"),
}

// readFile reads a resolver file; a missing one is empty (a machine with
// no resolvers configured).
func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the upstream resolvers: %w", err)
	}
	return b, nil
}

// upstreams are the nameservers of a resolv.conf(5) file, outside exclude,
// on its port (53).
func upstreams(content []byte, exclude []netip.Prefix) ([]netip.AddrPort, error) {
	cfg, err := dns.ClientConfigFromReader(bytes.NewReader(content))
	if err != nil {
		return nil, fmt.Errorf("read the upstream resolvers: %w", err)
	}
	port, err := strconv.ParseUint(cfg.Port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("read the upstream resolvers: port %q: %w", cfg.Port, err)
	}
	var out []netip.AddrPort
next:
	for _, s := range cfg.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil || a.IsUnspecified() {
			continue // a host name (resolving it would need DNS), or "this host"
		}
		a = a.Unmap()
		for _, p := range exclude {
			if p.Contains(a) {
				continue next
			}
		}
		out = append(out, netip.AddrPortFrom(a, uint16(port)))
	}
	return out, nil
}
