package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/crypto"
)

const officePolicy = `# The home reaches the office web; only the laptop logs in there.
rules:
  - name: web
    from: tag:home
    to: tag:office
    ports: [443]
    proto: tcp
  - name: ssh
    from: laptop
    to: tag:office
    ports: 22
    proto: tcp
`

// registeredMesh is a coordinator data directory, no coordinator running,
// with laptop (tag home), nas (tag office) and an untagged phone.
func registeredMesh(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "coordinator.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := config.DefaultCoordinator()
	for _, n := range []struct{ name, tag string }{{"laptop", "home"}, {"nas", "office"}, {"phone", ""}} {
		id, secret, err := crypto.NewTokenCredentials()
		if err != nil {
			t.Fatal(err)
		}
		tok := store.Token{ID: id, SecretHash: crypto.HashSecret(secret), Created: time.Now(), Expires: time.Now().Add(time.Hour)}
		if n.tag != "" {
			tok.Tags = []string{n.tag}
		}
		if err := st.CreateToken(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		key, err := crypto.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Register(context.Background(), store.Registration{TokenID: id, Secret: secret, Key: key.Public(), Name: n.name,
			Pool: store.Pool{V4: cfg.Network, V6: cfg.NetworkV6}, Now: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPolicyCheck: errors name the file, line and column and exit 2;
// names no node holds are warnings; a good file is valid.
func TestPolicyCheck(t *testing.T) {
	t.Parallel()
	dir, cfg := registeredMesh(t), emptyConfig(t)
	bad := writeFile(t, "bad.yaml", "rules:\n  - from: Laptop\n    to: [tag:office, 100.88.0.0/24]\n    proto: sctp\n")
	code, out := run(t, "policy", "check", bad, "--data-dir", dir, "--config", cfg)
	for _, want := range []string{bad + ":2:11: rule 1 from: \"Laptop\"", "write laptop", bad + ":4:12: rule 1: proto \"sctp\""} {
		if code != exitUsage || !strings.Contains(out, want) {
			t.Errorf("check of a bad file: exit %d, output:\n%s\nwant exit %d and %q", code, out, exitUsage, want)
		}
	}
	overlap := writeFile(t, "overlap.yaml", "rules:\n  - {from: laptop, to: 100.88.0.0/24}\n")
	if code, out := run(t, "policy", "check", overlap, "--data-dir", dir, "--config", cfg); code != exitUsage || !strings.Contains(out, overlap+":2:24: rule 1 to: \"100.88.0.0/24\" overlaps the mesh's own addresses") {
		t.Errorf("check of an overlapping prefix: exit %d, output:\n%s", code, out)
	}
	good := writeFile(t, "office.yaml", officePolicy+"  - {from: ghost, to: tag:printers}\n")
	code, out = run(t, "policy", "check", good, "--data-dir", dir, "--config", cfg)
	for _, want := range []string{"valid, 3 rules (checked against 3 registered nodes)", `warning: ` + good + `:13:12: no node is named "ghost"`, `no node holds the tag "printers"`} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("check of a good file: exit %d, output:\n%s\nwant %q", code, out, want)
		}
	}
	code, out = run(t, "policy", "check", good, "--data-dir", filepath.Join(dir, "missing"), "--config", cfg)
	if code != exitOK || !strings.Contains(out, "Names and tags not checked against the mesh") {
		t.Errorf("check without a data dir: exit %d, output:\n%s", code, out)
	}
}

// TestPolicySetGetTestClear: the commands on a data directory, as on the
// coordinator host while the coordinator is stopped.
func TestPolicySetGetTestClear(t *testing.T) {
	t.Parallel()
	dir, cfg := registeredMesh(t), emptyConfig(t)
	file := writeFile(t, "office.yaml", officePolicy)
	cli := func(args ...string) string {
		t.Helper()
		out, err := runCLI(t, append(args, "--data-dir", dir, "--config", cfg)...)
		if err != nil {
			t.Fatalf("meshnode %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	if out := cli("policy", "get"); !strings.Contains(out, "No access policy was ever set") {
		t.Errorf("get before any: %q", out)
	}
	if out := cli("policy", "test", "phone", "nas:22/tcp"); !strings.HasPrefix(out, "allow: phone -> nas (100.88.0.2) tcp/22: no access policy is set") {
		t.Errorf("test without a policy: %q", out)
	}
	if out := cli("policy", "set", file); !strings.Contains(out, "Access policy version 1 set, 2 rules") {
		t.Errorf("set: %q", out)
	}
	if out := cli("policy", "get"); !strings.HasPrefix(out, "# access policy version 1, set ") || !strings.HasSuffix(out, officePolicy) {
		t.Errorf("get: %q", out)
	}
	for _, tt := range []struct{ src, dst, want string }{
		{"laptop", "nas:443/tcp", "allow: laptop -> nas (100.88.0.2) tcp/443: by rule 1: web"},
		{"laptop", "nas:443", "allow: laptop -> nas (100.88.0.2) tcp/443: by rule 1: web"},
		{"laptop", "100.88.0.2:22", "allow: laptop -> nas (100.88.0.2) tcp/22: by rule 2: ssh"},
		{"laptop", "[fd6d:6573:686e::2]:22/tcp", "allow: laptop -> nas (fd6d:6573:686e::2) tcp/22: by rule 2: ssh"},
		{"100.88.0.1", "nas:53/udp", "deny: laptop -> nas (100.88.0.2) udp/53: no rule allows it"},
		{"phone", "nas/icmp", "deny: phone -> nas (100.88.0.2) icmp: no rule allows it"},
		{"laptop", "192.168.10.5:443", "deny: laptop -> 192.168.10.5 tcp/443: no rule allows it"},
	} {
		if out := cli("policy", "test", tt.src, tt.dst); strings.TrimSpace(out) != tt.want {
			t.Errorf("test %s %s: %q, want %q", tt.src, tt.dst, out, tt.want)
		}
	}
	lan := writeFile(t, "lan.yaml", "rules:\n  - {from: laptop, to: 192.168.10.0/24, proto: tcp}\n")
	if out := cli("policy", "test", "--file", lan, "laptop", "192.168.10.5:443"); !strings.HasPrefix(out, "allow: laptop -> 192.168.10.5 tcp/443: by rule 1") {
		t.Errorf("test --file: %q", out)
	}
	if out := cli("policy", "clear"); !strings.Contains(out, "removed (version 2)") {
		t.Errorf("clear: %q", out)
	}
	if out := cli("policy", "get"); !strings.Contains(out, "version 2") || !strings.Contains(out, "removed; every node reaches every other") {
		t.Errorf("get after clear: %q", out)
	}
	if out := cli("policy", "get", "--version", "1"); !strings.HasSuffix(out, officePolicy) {
		t.Errorf("get --version 1: %q", out)
	}
	// Set from standard input, as 'policy get | policy set -' does.
	root := newRootCmd()
	root.SetIn(strings.NewReader(cli("policy", "get", "--version", "1")))
	root.SetOut(new(strings.Builder))
	root.SetArgs([]string{"policy", "set", "-", "--data-dir", dir, "--config", cfg})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("set -: %v", err)
	}
	if out := cli("policy", "get"); !strings.HasPrefix(out, "# access policy version 3") {
		t.Errorf("get after set -: %q", out)
	}
}

func TestPolicyUsageErrors(t *testing.T) {
	t.Parallel()
	dir, cfg := registeredMesh(t), emptyConfig(t)
	bad := writeFile(t, "bad.yaml", "rules:\n  - {from: Laptop, to: nas}\n")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"set a bad file", []string{"policy", "set", bad}, bad + ":2:12"},
		{"set a missing file", []string{"policy", "set", filepath.Join(dir, "nope.yaml")}, "nope.yaml"},
		{"unknown version", []string{"policy", "get", "--version", "9"}, "no access policy version 9"},
		{"unknown source", []string{"policy", "test", "ghost", "nas:22"}, `SRC "ghost"`},
		{"unknown destination", []string{"policy", "test", "laptop", "ghost:22"}, `DST "ghost"`},
		{"no port", []string{"policy", "test", "laptop", "nas"}, "tcp needs a port"},
		{"icmp port", []string{"policy", "test", "laptop", "nas:7/icmp"}, "icmp has no ports"},
		{"bad protocol", []string{"policy", "test", "laptop", "nas:22/sctp"}, `protocol "sctp"`},
		{"bad port", []string{"policy", "test", "laptop", "nas:http"}, `port "http"`},
		{"no file", []string{"policy", "check"}, "FILE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runCLI(t, append(tt.args, "--data-dir", dir, "--config", cfg)...)
			var u usageError
			if !errors.As(err, &u) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want a usage error mentioning %q", err, tt.want)
			}
		})
	}
}
