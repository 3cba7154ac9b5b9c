package config

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad loads arbitrary bytes as a node's and as a coordinator's YAML
// file. Loading either fails with an error that names the file, or gives
// settings that Validate either refuses or finds within the documented
// bounds. The seed corpus in testdata/fuzz holds the packaged example
// configs and a few broken ones.
func FuzzLoad(f *testing.F) {
	path := filepath.Join(f.TempDir(), "meshnode.yaml")
	f.Fuzz(func(t *testing.T, yaml []byte) {
		if err := os.WriteFile(path, yaml, 0o600); err != nil {
			t.Fatal(err)
		}
		n := DefaultNode()
		if _, err := Load(&n, path, "", nil); err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("node config error %q does not name the file", err)
			}
		} else if n.Validate() == nil {
			checkNode(t, n)
		}
		c := DefaultCoordinator()
		if _, err := Load(&c, path, "", nil); err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("coordinator config error %q does not name the file", err)
			}
		} else if c.Validate() == nil {
			checkCoordinator(t, c)
		}
	})
}

// checkNode checks valid node settings against the README's bounds.
func checkNode(t *testing.T, n Node) {
	t.Helper()
	if n.ListenPort < 0 || n.ListenPort > 65535 || n.MTU < MinMTU || n.MTU > 9000 || n.Keepalive < MinKeepalive {
		t.Fatalf("valid settings out of bounds: port %d, mtu %d, keepalive %v", n.ListenPort, n.MTU, n.Keepalive)
	}
	if n.StateDir == "" || n.Interface == "" || n.Socket == "" {
		t.Fatalf("valid settings with an empty path: %+v", n)
	}
	if n.TUNDriver != "wireguard" && n.TUNDriver != "water" || !strings.Contains(" debug info warn error ", " "+n.LogLevel+" ") {
		t.Fatalf("valid settings with tun_driver %q, log_level %q", n.TUNDriver, n.LogLevel)
	}
	if len(n.Name) > 63 || strings.Trim(n.Name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" ||
		strings.HasPrefix(n.Name, "-") || strings.HasSuffix(n.Name, "-") {
		t.Fatalf("valid settings with name %q, not a DNS label", n.Name)
	}
	for _, s := range append([]string{n.RelayListen, n.RelayPublic}, n.STUNServers...) {
		if _, _, err := net.SplitHostPort(s); s != "" && err != nil {
			t.Fatalf("valid settings with address %q: %v", s, err)
		}
	}
	// Metrics are unauthenticated: never on every interface.
	if host, _, err := net.SplitHostPort(n.MetricsListen); n.MetricsListen != "" && (err != nil || host == "" || host == "0.0.0.0" || host == "::") {
		t.Fatalf("valid settings with metrics_listen %q on every interface (or no host:port)", n.MetricsListen)
	}
}

// checkCoordinator checks valid coordinator settings against the README's
// bounds.
func checkCoordinator(t *testing.T, c Coordinator) {
	t.Helper()
	if !c.Network.Addr().Is4() || c.Network.Bits() > 30 || c.NetworkV6.Addr().Is4() || c.NetworkV6.Bits() > 64 {
		t.Fatalf("valid settings with pools %v, %v", c.Network, c.NetworkV6)
	}
	if c.RelayRate < 1 || c.RelayRate > maxRelayRate || c.DataDir == "" {
		t.Fatalf("valid settings with relay_rate %d, data_dir %q", c.RelayRate, c.DataDir)
	}
	for _, s := range []string{c.Listen, c.STUNListen} {
		if _, _, err := net.SplitHostPort(s); err != nil {
			t.Fatalf("valid settings with listen address %q", s)
		}
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || u.Scheme != "https" || u.Host == "" {
			t.Fatalf("valid settings with public_url %q", c.PublicURL)
		}
	}
}
