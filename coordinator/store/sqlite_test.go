package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOpenErrorsNamePath(t *testing.T) {
	t.Parallel()
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
