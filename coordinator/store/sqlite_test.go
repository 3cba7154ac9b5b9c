package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/helperproc"
)

func TestOpenErrorsNamePath(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.db")
	if err := os.WriteFile(corrupt, []byte(strings.Repeat("not a database ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A real database whose table pages are then overwritten: only the
	// integrity check on open notices.
	damaged := filepath.Join(dir, "damaged.db")
	s := openTest(t, damaged)
	secret := addToken(t, s, "t", true, time.Now().Add(time.Hour))
	for i := range 50 {
		if _, err := register(s, "t", secret, newKey(t), fmt.Sprintf("n%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	damage(t, damaged)
	aFile := filepath.Join(dir, "file")
	if err := os.WriteFile(aFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
	}{
		{"not a database", corrupt},
		{"damaged pages", damaged},
		{"missing directory", filepath.Join(dir, "no", "such", "dir", "c.db")},
		{"data dir is a file", filepath.Join(aFile, "c.db")},
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct{ name, path string }{"unwritable directory", filepath.Join(ro, "c.db")})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(t.Context(), tt.path)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("error %q does not name %s", err, tt.path)
			}
			t.Log(err)
		})
	}
}

// damage overwrites every page after the first two (schema) pages with a
// pattern, keeping the header valid.
func damage(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	if len(b) < 4*page {
		t.Fatalf("%s is only %d bytes", path, len(b))
	}
	for i := 2 * page; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// helperEnv makes the test binary a registering child process.
const helperEnv = "MESHNODE_STORE_HELPER_DB"

// TestHelperRegister is the child of TestUncleanStop: it registers nodes and
// prints "ack KEY" after each commit, until it is killed. It never closes
// the database.
func TestHelperRegister(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process for TestUncleanStopKeepsAcknowledged")
	}
	s, err := Open(context.Background(), path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	const maxNodes = 5000 // bounded; the parent kills the process long before
	for i := range maxNodes {
		k, err := crypto.NewPrivateKey()
		if err != nil {
			os.Exit(1)
		}
		n, err := register(s, "fleet", os.Getenv(helperEnv+"_SECRET"), k.Public(), fmt.Sprintf("n%d", i))
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Printf("ack %s %s\n", n.Key, n.IPv4)
	}
	os.Exit(0)
}

func TestUncleanStopKeepsAcknowledged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	secret := addToken(t, s, "fleet", true, time.Now().Add(time.Hour))
	s.Close()

	cmd, out := helperproc.Start(t, "TestHelperRegister", helperEnv+"="+path, helperEnv+"_SECRET="+secret)
	const killAfter = 40
	acked := map[string]string{}
	sc := bufio.NewScanner(out)
	for len(acked) < killAfter && sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "ack" {
			acked[f[1]] = f[2]
		} else if len(f) > 0 && f[0] == "error" {
			t.Fatalf("helper: %s", sc.Text())
		}
	}
	if len(acked) < killAfter {
		t.Fatalf("helper acknowledged only %d registrations: %v", len(acked), sc.Err())
	}
	// SIGKILL by PID, mid-stream: registrations are still being committed.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Acks printed before the kill arrived are acknowledged too.
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "ack" {
			acked[f[1]] = f[2]
		}
	}
	cmd.Wait() //nolint:errcheck // killed on purpose

	s = openTest(t, path)
	for key, ip := range acked {
		k, err := crypto.ParsePublicKey(key)
		if err != nil {
			t.Fatal(err)
		}
		n, err := s.Node(t.Context(), k)
		if err != nil {
			t.Fatalf("acknowledged node %s lost after kill -9: %v", key, err)
		}
		if n.IPv4.String() != ip {
			t.Fatalf("node %s: address %v after reopen, acknowledged %s", key, n.IPv4, ip)
		}
	}
	t.Logf("%d acknowledged registrations survived SIGKILL", len(acked))
}
