package unixsock

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// withUmask runs f with the process umask set to mask. No test in this
// package runs in parallel, so nothing else creates files meanwhile.
func withUmask(t *testing.T, mask int, f func()) {
	t.Helper()
	old := syscall.Umask(mask)
	defer syscall.Umask(old)
	f()
}

// TestListenPrivateFromTheStart creates a socket under umask 0, where bind
// makes the socket file 0777: it must never be reachable by others. Until
// it is published it sits in a directory only its owner can enter; it
// appears at its path with its final mode.
func TestListenPrivateFromTheStart(t *testing.T) {
	parent := t.TempDir()
	path := filepath.Join(parent, "node.sock")
	var ln net.Listener
	withUmask(t, 0, func() {
		var err error
		ln, err = listen(path, 0o600, -1, func(dir, sock string) {
			fi, err := os.Lstat(dir)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Perm() != 0o700 || int(st.Uid) != os.Getuid() {
				t.Errorf("staging directory %s: mode %v, owner %d; want 0700, owned by %d", dir, fi.Mode().Perm(), st.Uid, os.Getuid())
			}
			if fi, err := os.Lstat(sock); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("staged socket: %v, %v; want mode 0600 before it is published", fi.Mode(), err)
			}
			if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s exists before the socket is ready: %v", path, err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("published socket: %v, %v; want a socket with mode 0600", fi.Mode(), err)
	}
	if ln.Addr().String() != path {
		t.Errorf("Addr = %s, want %s", ln.Addr(), path)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the published socket: %v", err)
	}
	c.Close()
	if left, _ := filepath.Glob(filepath.Join(parent, ".sock-*")); len(left) != 0 {
		t.Errorf("staging directories left behind: %v", left)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket left after Close: %v", err)
	}
}

func TestListenGroup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.sock")
	gid := os.Getgid()
	ln, err := Listen(path, 0o660, gid)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Perm() != 0o660 || int(fi.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Fatalf("socket %v, %v; want mode 0660 and group %d", fi.Mode(), err, gid)
	}
}

// TestListenLeavesExistingPath: like bind, Listen never takes over a path;
// removing a stale socket is the caller's decision.
func TestListenLeavesExistingPath(t *testing.T) {
	parent := t.TempDir()
	path := filepath.Join(parent, "node.sock")
	if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ln, err := Listen(path, 0o600, -1); err == nil {
		ln.Close()
		t.Fatal("Listen took over an existing file")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "not a socket" {
		t.Fatalf("the existing file was changed: %q, %v", b, err)
	}
	if left, _ := filepath.Glob(filepath.Join(parent, ".sock-*")); len(left) != 0 {
		t.Errorf("staging directories left behind: %v", left)
	}
}

// TestCloseRemovesOnce: a second Close must not remove a socket someone
// else has since created at the path.
func TestCloseRemovesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.sock")
	ln, err := Listen(path, 0o600, -1)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	next, err := Listen(path, 0o600, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("a second Close removed the next socket: %v", err)
	}
}
