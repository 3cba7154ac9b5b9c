package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/crypto"
)

// testToken is a well-formed token for a coordinator nobody runs.
var testToken = crypto.Token{URL: "https://198.18.0.1:8443", Pin: strings.Repeat("ab", 32), ID: "0123456789ab", Secret: "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I"}.String()

func writeTokenFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// settle loads settings as `meshnode up args` does and settles the token,
// returning the settings and what was logged.
func settle(t *testing.T, args ...string) (config.Node, string, error) {
	t.Helper()
	cmd := newUpCmd()
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	n := config.DefaultNode()
	if _, err := config.Load(&n, "", "", cmd.Flags()); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	err := resolveToken(cmd, &n, slog.New(slog.NewTextHandler(&logs, nil)))
	return n, logs.String(), err
}

func TestTokenSources(t *testing.T) {
	private := writeTokenFile(t, testToken+"\n", 0o600)
	readable := writeTokenFile(t, testToken, 0o644)
	for _, tc := range []struct {
		name string
		args []string
		env  string // MESHNODE_TOKEN
		warn string // in the log; empty: no warning at all
	}{
		{"token file", []string{"--token-file", private}, "", ""},
		{"environment", nil, testToken, ""},
		{"token file others can read", []string{"--token-file", readable}, "", "the token file can be read by other users; run chmod 600"},
		{"command line", []string{"--token", testToken}, "", "the join token was given on the command line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("MESHNODE_TOKEN", tc.env)
			}
			n, logs, err := settle(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if n.Token != testToken {
				t.Fatalf("token %q, want %q", n.Token, testToken)
			}
			if tc.warn == "" && logs != "" || !strings.Contains(logs, tc.warn) {
				t.Fatalf("logged %q, want %q", logs, tc.warn)
			}
		})
	}
}

// TestTokenFromPipe: --token-file <(command) hands the node a pipe.
func TestTokenFromPipe(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("/proc/self/fd is Linux's")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := w.WriteString(testToken + "\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	n, logs, err := settle(t, "--token-file", "/proc/self/fd/"+strconv.Itoa(int(r.Fd())))
	if err != nil || n.Token != testToken || logs != "" {
		t.Fatalf("token %q, log %q, err %v; want the piped token, no warning", n.Token, logs, err)
	}
}

// TestBadTokenFileIsAUsageError: a token file that can't give a token
// stops `up` with exit code 2 and says which file and what to do.
func TestBadTokenFileIsAUsageError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	empty := writeTokenFile(t, "\n", 0o600)
	garbage := writeTokenFile(t, "hello", 0o600)
	large := writeTokenFile(t, strings.Repeat("x", maxTokenFile+1), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing", []string{"--token-file", missing}, []string{missing, "meshnode token create"}},
		{"empty", []string{"--token-file", empty}, []string{empty, "is empty", "meshnode token create"}},
		{"not a token", []string{"--token-file", garbage}, []string{"token file " + garbage, "mntok1_"}},
		{"directory", []string{"--token-file", dir}, []string{dir, "is a directory"}},
		{"too large", []string{"--token-file", large}, []string{large, "holds no token"}},
		{"token and token file", []string{"--token-file", empty, "--token", testToken}, []string{"token and token_file are both set"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"up", "--state-dir", dir, "--socket", filepath.Join(dir, "s")}, tc.args...)
			code, out := run(t, args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d; output: %s", code, exitUsage, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q does not mention %q", out, w)
				}
			}
		})
	}
}

// TestBadTokenNamesItsSource: a malformed token is reported with where it
// came from, and one on the command line is also warned about.
func TestBadTokenNamesItsSource(t *testing.T) {
	dir := t.TempDir()
	base := []string{"up", "--state-dir", dir, "--socket", filepath.Join(dir, "s")}
	code, out := run(t, append(base, "--token", "hello")...)
	if code != exitUsage || !strings.Contains(out, "--token: join token must start with") || !strings.Contains(out, "given on the command line") {
		t.Errorf("--token hello: exit %d, output %q", code, out)
	}
	t.Setenv("MESHNODE_TOKEN", "hello")
	code, out = run(t, base...)
	if code != exitUsage || !strings.Contains(out, "MESHNODE_TOKEN: join token must start with") || strings.Contains(out, "command line") {
		t.Errorf("MESHNODE_TOKEN=hello: exit %d, output %q", code, out)
	}
}
