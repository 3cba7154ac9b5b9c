package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/crypto"
)

// runCLI runs the meshnode command line with args and returns stdout.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// emptyConfig keeps a host's /etc/meshnode/coordinator.yaml out of the test.
func emptyConfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "coordinator.yaml")
	if err := os.WriteFile(path, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// lastToken parses the token that token create prints last.
func lastToken(t *testing.T, out string) crypto.Token {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	tok, err := crypto.ParseToken(lines[len(lines)-1])
	if err != nil {
		t.Fatalf("last line %q does not parse: %v", lines[len(lines)-1], err)
	}
	return tok
}

func TestTokenCreatePrintsTokenLast(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := emptyConfig(t)
	out, err := runCLI(t, "token", "create", "--config", cfg, "--data-dir", dir,
		"--public-url", "https://vpn.example.com:8443", "--reusable", "--tag", "web", "--tag", "eu")
	if err != nil {
		t.Fatal(err)
	}
	tok := lastToken(t, out)
	if tok.URL != "https://vpn.example.com:8443" || len(tok.Pin) != 64 {
		t.Fatalf("token %+v", tok)
	}

	out, err = runCLI(t, "token", "list", "--json", "--config", cfg, "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	var list []coordinator.TokenInfo
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("token list --json: %v\n%s", err, out)
	}
	if len(list) != 1 || list[0].ID != tok.ID || !list[0].Reusable || strings.Join(list[0].Tags, ",") != "web,eu" {
		t.Fatalf("token list %+v", list)
	}
	if strings.Contains(out, tok.Secret) {
		t.Fatal("token list shows the secret")
	}
	if _, err := runCLI(t, "token", "revoke", tok.ID, "--config", cfg, "--data-dir", dir); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "token", "list", "--config", cfg, "--data-dir", dir)
	if err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("token list after revoke: %v\n%s", err, out)
	}
}

func TestAdminUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := emptyConfig(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no public URL", []string{"token", "create", "--data-dir", dir}, "--public-url"},
		{"negative expiry", []string{"token", "create", "--data-dir", dir, "--expiry", "-1h"}, "--expiry"},
		{"bad duration", []string{"token", "create", "--data-dir", dir, "--expiry", "soon"}, "soon"},
		{"bad tag", []string{"token", "create", "--data-dir", dir, "--tag", "Not OK"}, `"Not OK"`},
		{"unknown token", []string{"token", "revoke", "feedface", "--data-dir", dir}, `"feedface"`},
		{"revoke without ID", []string{"token", "revoke", "--data-dir", dir}, "ID"},
		{"unknown node", []string{"nodes", "remove", "ghost", "--data-dir", dir}, `"ghost"`},
		{"tag unknown node", []string{"nodes", "tag", "ghost", "relay", "--data-dir", dir}, `"ghost"`},
		{"tag without a tag", []string{"nodes", "tag", "ghost", "--data-dir", dir}, "NAME TAG..."},
		{"bad tag on a node", []string{"nodes", "untag", "ghost", "Not OK", "--data-dir", dir}, `"Not OK"`},
		{"allow unknown", []string{"nodes", "allow", "ghost", "--data-dir", dir}, `"ghost"`},
		{"rename unknown node", []string{"nodes", "rename", "ghost", "spirit", "--data-dir", dir}, `"ghost"`},
		{"rename to a bad name", []string{"nodes", "rename", "ghost", "my pc", "--data-dir", dir}, `"my pc"`},
		{"rename without a new name", []string{"nodes", "rename", "ghost", "--data-dir", dir}, "NAME NEWNAME"},
		{"bad public URL", []string{"token", "create", "--data-dir", dir, "--public-url", "http://x"}, "public_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runCLI(t, append(tt.args, "--config", cfg)...)
			var u usageError
			if !errors.As(err, &u) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want a usage error mentioning %s", err, tt.want)
			}
		})
	}
}

func TestNodesBannedEmpty(t *testing.T) {
	t.Parallel()
	out, err := runCLI(t, "nodes", "banned", "--json", "--data-dir", t.TempDir(), "--config", emptyConfig(t))
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("nodes banned --json on an empty data dir: %q, %v", out, err)
	}
}

func TestNodesListEmpty(t *testing.T) {
	t.Parallel()
	out, err := runCLI(t, "nodes", "list", "--json", "--data-dir", t.TempDir(), "--config", emptyConfig(t))
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("nodes list --json on an empty data dir: %q, %v", out, err)
	}
}
