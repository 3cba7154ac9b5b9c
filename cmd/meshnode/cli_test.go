package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run executes the CLI as a user would and returns the exit code and output.
func run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err != nil {
		out.WriteString(err.Error())
		return exitCode(err), out.String()
	}
	return exitOK, out.String()
}

func TestBadInputIsAUsageErrorNamingTheValue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badFile := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badFile, []byte("mtu: 1400\nlisten_prot: 1\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"mtu", []string{"up", "--mtu", "100", "--state-dir", dir}, []string{"mtu: 100", "1280-9000"}},
		{"driver", []string{"up", "--tun-driver", "tap", "--state-dir", dir}, []string{`tun_driver: "tap"`, "wireguard, water"}},
		{"keepalive", []string{"up", "--keepalive", "1ms", "--state-dir", dir}, []string{"keepalive: 1ms"}},
		{"token", []string{"up", "--token", "hello", "--state-dir", dir}, []string{"--token", "mntok1_"}},
		{"typo in file", []string{"up", "--config", badFile}, []string{"unknown key listen_prot", "listen_port"}},
		{"missing file", []string{"up", "--config", filepath.Join(dir, "nope.yaml")}, []string{"nope.yaml"}},
		{"no token yet", []string{"up", "--state-dir", dir, "--socket", filepath.Join(dir, "s")}, []string{"--token", "meshnode token create"}},
		{"flag", []string{"up", "--bogus"}, []string{"unknown flag: --bogus"}},
		{"argument", []string{"down", "extra"}, []string{"takes no arguments"}},
		{"arguments", []string{"status", "desktop", "laptop"}, []string{"at most one argument, NAME|IP"}},
		{"command", []string{"bogus"}, []string{`unknown command "bogus"`}},
		{"ping count", []string{"ping", "x", "--count", "0"}, []string{"--count 0"}},
		{"config check", []string{"config", "check", "--config", badFile}, []string{"unknown key listen_prot"}},
		{"coordinator network", []string{"coordinator", "--network", "10.0.0.0/31", "--data-dir", dir}, []string{"network"}},
		{"coordinator memory limit", []string{"coordinator", "--memory-limit", "450MB", "--data-dir", dir}, []string{"memory_limit", "450MB", "450MiB"}},
		{"token expiry", []string{"token", "create", "--expiry", "-1h", "--data-dir", dir}, []string{"expiry"}},
		{"web page off loopback", []string{"coordinator", "--ui-listen", "0.0.0.0:9481", "--data-dir", dir}, []string{"ui_listen", "loopback", "SSH tunnel"}},
		{"advertised route", []string{"up", "--advertise-routes", "192.168.10.0/24,10.1.2.3/16", "--state-dir", dir}, []string{"advertise_routes", "use 10.1.0.0/16"}},
		{"exit node of an exit node", []string{"up", "--exit-node", "office", "--advertise-exit-node", "--state-dir", dir}, []string{"exit_node", "uses no other exit node"}},
		{"set nothing", []string{"set"}, []string{"nothing to set", "--exit-node"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := run(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d (usage); output: %s", code, exitUsage, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q does not mention %q", out, w)
				}
			}
		})
	}
}

func TestEveryCommandHasHelpAndExamples(t *testing.T) {
	t.Parallel()
	root := newRootCmd()
	for _, c := range root.Commands() {
		if c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		subs := c.Commands()
		if len(subs) == 0 {
			if c.Short == "" || c.Example == "" {
				t.Errorf("meshnode %s: Short %q, Example %q: both are needed", c.Name(), c.Short, c.Example)
			}
			continue
		}
		for _, s := range subs {
			if s.Short == "" || s.Example == "" {
				t.Errorf("meshnode %s %s: Short %q, Example %q: both are needed", c.Name(), s.Name(), s.Short, s.Example)
			}
		}
	}
	code, out := run(t, "--help")
	if code != exitOK || !strings.Contains(out, "up") || !strings.Contains(out, "coordinator") {
		t.Fatalf("meshnode --help: %d %s", code, out)
	}
}

// 'meshnode admin login' needs the running coordinator: without one it
// fails, naming the data dir.
func TestAdminLoginWithoutCoordinator(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	code, out := run(t, "admin", "login", "--config", emptyConfig(t), "--data-dir", dir)
	if code != exitFailure || !strings.Contains(out, dir) || !strings.Contains(out, "running") {
		t.Fatalf("admin login without a coordinator: %d %s; want exit %d naming %s", code, out, exitFailure, dir)
	}
}
