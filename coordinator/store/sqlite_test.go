package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

var testPool = pool("100.88.0.0/16", "fd6d:6573:686e::/48")

func openTest(t *testing.T, path string) *SQLite {
	t.Helper()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newKey(t testing.TB) crypto.PublicKey {
	t.Helper()
	k, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// addToken stores a token and returns its secret.
func addToken(t *testing.T, s Store, id string, reusable bool, expires time.Time, tags ...string) string {
	t.Helper()
	_, secret, err := crypto.NewTokenCredentials()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(t.Context(), Token{ID: id, SecretHash: crypto.HashSecret(secret), Reusable: reusable,
		Tags: tags, Created: time.Now(), Expires: expires}); err != nil {
		t.Fatal(err)
	}
	return secret
}

func register(s Store, tokenID, secret string, key crypto.PublicKey, name string) (Node, error) {
	return s.Register(context.Background(), Registration{TokenID: tokenID, Secret: secret, Key: key, Name: name, Pool: testPool, Now: time.Now()})
}

func TestCheckToken(t *testing.T) {
	now := time.Now()
	secret := "s3cret"
	valid := Token{ID: "a", SecretHash: crypto.HashSecret(secret), Expires: now.Add(time.Hour)}
	with := func(f func(*Token)) Token { t := valid; f(&t); return t }
	tests := []struct {
		name   string
		tok    Token
		secret string
		retry  bool
		want   error
	}{
		{"valid", valid, secret, false, nil},
		{"wrong secret", valid, "guess", false, ErrTokenUnknown},
		{"revoked", with(func(t *Token) { t.Revoked = now }), secret, false, ErrTokenRevoked},
		{"expired", with(func(t *Token) { t.Expires = now }), secret, false, ErrTokenExpired},
		{"used", with(func(t *Token) { t.Uses = 1 }), secret, false, ErrTokenUsed},
		{"used, retry by its node", with(func(t *Token) { t.Uses = 1 }), secret, true, nil},
		{"reusable used", with(func(t *Token) { t.Uses = 5; t.Reusable = true }), secret, false, nil},
		{"revoked beats used", with(func(t *Token) { t.Uses = 1; t.Revoked = now }), secret, false, ErrTokenRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckToken(tt.tok, tt.secret, now, tt.retry); !errors.Is(err, tt.want) {
				t.Fatalf("CheckToken = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRegisterRules(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "c.db"))
	ctx := t.Context()
	secret := addToken(t, s, "single", false, time.Now().Add(time.Hour), "web")
	reuse := addToken(t, s, "reuse", true, time.Now().Add(time.Hour), "db")
	k1, k2, k3 := newKey(t), newKey(t), newKey(t)

	n1, err := register(s, "single", secret, k1, "laptop")
	if err != nil {
		t.Fatal(err)
	}
	if n1.Name != "laptop" || n1.IPv4.String() != "100.88.0.1" || n1.IPv6.String() != "fd6d:6573:686e::1" || n1.Tags[0] != "web" {
		t.Fatalf("first node = %+v", n1)
	}
	// The same node retrying with its single-use token gets the same answer.
	if again, err := register(s, "single", secret, k1, "other"); err != nil || again.IPv4 != n1.IPv4 || again.Name != "laptop" {
		t.Fatalf("retry = %+v, %v; want the same registration", again, err)
	}
	// Another node can't use it.
	if _, err := register(s, "single", secret, k2, "laptop"); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("second use = %v, want ErrTokenUsed", err)
	}
	n2, err := register(s, "reuse", reuse, k2, "laptop")
	if err != nil || n2.Name != "laptop-2" || n2.IPv4.String() != "100.88.0.2" {
		t.Fatalf("name collision = %+v, %v; want laptop-2 at 100.88.0.2", n2, err)
	}
	// Re-registering with another token keeps name and addresses, adds tags.
	again, err := register(s, "reuse", reuse, k1, "renamed")
	if err != nil || again.Name != "laptop" || again.IPv4 != n1.IPv4 || strings.Join(again.Tags, ",") != "web,db" {
		t.Fatalf("re-register = %+v, %v", again, err)
	}
	// Removing frees the name and the lowest address for the next node.
	if _, err := s.RemoveNode(ctx, "laptop", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Node(ctx, k1); !errors.Is(err, ErrRemoved) {
		t.Fatalf("Node(removed) = %v, want ErrRemoved", err)
	}
	n3, err := register(s, "reuse", reuse, k3, "laptop")
	if err != nil || n3.Name != "laptop" || n3.IPv4 != n1.IPv4 {
		t.Fatalf("after removal = %+v, %v; want laptop at %v", n3, err, n1.IPv4)
	}
	if _, err := s.RemoveNode(ctx, "nobody", time.Now()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RemoveNode(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := register(s, "nope", reuse, newKey(t), "x"); !errors.Is(err, ErrTokenUnknown) {
		t.Fatalf("unknown token = %v", err)
	}
}

func TestEndpointsAndPresencePersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s := openTest(t, path)
	secret := addToken(t, s, "t", true, time.Now().Add(time.Hour))
	k := newKey(t)
	if _, err := register(s, "t", secret, k, "a"); err != nil {
		t.Fatal(err)
	}
	eps := []wire.Endpoint{{Addr: netip.MustParseAddrPort("198.18.0.5:41820"), Kind: wire.EndpointSTUN}}
	nat := &wire.NATInfo{Mapping: wire.MappingEndpointIndependent, PortAlloc: wire.PortAllocPreserve}
	seen := time.UnixMilli(time.Now().UnixMilli())
	if err := s.SetEndpoints(t.Context(), k, eps, nat); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLastSeen(t.Context(), k, seen); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, path)
	n, err := s.Node(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Endpoints) != 1 || n.Endpoints[0] != eps[0] || *n.NAT != *nat || !n.LastSeen.Equal(seen) {
		t.Fatalf("after reopen: %+v", n)
	}
	if err := s.SetEndpoints(t.Context(), newKey(t), eps, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetEndpoints(unknown) = %v, want ErrNotFound", err)
	}
}

func TestMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s := openTest(t, path)
	var versions int
	if err := s.r.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&versions); err != nil || versions != len(migrations) {
		t.Fatalf("schema_migrations rows = %d, %v; want %d", versions, err, len(migrations))
	}
	s.Close()
	// Reopening applies nothing twice.
	s = openTest(t, path)
	if _, err := s.w.Exec(`INSERT INTO schema_migrations (version, description, applied_at) VALUES (999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(t.Context(), path); err == nil || !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open(newer schema) = %v; want an error naming the path and the newer version", err)
	}
}

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

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperRegister$")
	cmd.Env = append(os.Environ(), helperEnv+"="+path, helperEnv+"_SECRET="+secret)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() //nolint:errcheck // already dead in the normal path
		cmd.Wait()         //nolint:errcheck // killed on purpose
	})
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
