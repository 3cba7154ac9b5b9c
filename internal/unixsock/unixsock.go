// Package unixsock creates Unix sockets that nobody but those their mode
// admits can ever reach.
//
// bind(2) creates a socket's file with the process's umask (0755 under the
// usual umask 022), and a chmod can only follow it: in between, anyone the
// umask admits may connect, and keep the connection. umask is no remedy in
// a Go program: it is process-wide, and other goroutines create files
// meanwhile. Listen therefore binds the socket inside a fresh directory that
// only its owner may enter (nobody else can reach a file through it, whatever
// the file's mode), sets the socket's mode and group there, and only then
// links it to its path: link(2) makes it appear with its final mode at once.
package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
)

// stagedName is the socket's name in the private directory: short, since a
// socket path is limited to about 100 bytes (sun_path).
const stagedName = "s"

// Listen listens on a new Unix socket at path with mode and, when gid is not
// -1, group gid. Like bind(2), it fails if path exists: a stale socket is the
// caller's to judge and remove. Closing the listener removes path.
func Listen(path string, mode os.FileMode, gid int) (net.Listener, error) {
	return listen(path, mode, gid, nil)
}

// listen is Listen; staged, when not nil, is called with the private
// directory and the socket in it just before the socket is published.
func listen(path string, mode os.FileMode, gid int, staged func(dir, sock string)) (net.Listener, error) {
	// MkdirTemp creates the directory with mode 0700, whatever the umask.
	dir, err := os.MkdirTemp(filepath.Dir(path), ".sock-")
	if err != nil {
		return nil, fmt.Errorf("private directory: %w", err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, stagedName)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// The name Go would remove on Close is the staged one, gone by then.
	ln.SetUnlinkOnClose(false)
	if err := prepare(sock, mode, gid); err != nil {
		ln.Close()
		return nil, err
	}
	if staged != nil {
		staged(dir, sock)
	}
	if err := os.Link(sock, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("publish: %w", err)
	}
	return &listener{UnixListener: ln, addr: &net.UnixAddr{Name: path, Net: "unix"}}, nil
}

// prepare gives the staged socket its group and mode.
func prepare(sock string, mode os.FileMode, gid int) error {
	if gid != -1 {
		if err := os.Chown(sock, -1, gid); err != nil {
			return fmt.Errorf("chown to group %d: %w", gid, err)
		}
	}
	if err := os.Chmod(sock, mode); err != nil {
		return fmt.Errorf("chmod %v: %w", mode, err)
	}
	return nil
}

// listener is the socket under its published name.
type listener struct {
	*net.UnixListener
	addr   *net.UnixAddr
	unlink sync.Once
}

// Addr is the published path, not the staging one.
func (l *listener) Addr() net.Addr { return l.addr }

// Close stops listening and removes the socket's path, on the first call
// only (as net.UnixListener does): by a later one the path may belong to
// someone else's socket.
func (l *listener) Close() error {
	err := l.UnixListener.Close()
	l.unlink.Do(func() {
		if rerr := os.Remove(l.addr.Name); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
			err = rerr
		}
	})
	return err
}
