package osdns

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/miekg/dns"

	"github.com/meshnode/meshnode/internal/atomicfile"
)

// backupFile, in the state directory, holds /etc/resolv.conf as it was
// before meshnode wrote it, for as long as meshnode's version is there.
const backupFile = "resolv.conf.backup.json"

// backupMode: the backup is root's business.
const backupMode = 0o600

// resolvConfMode is the usual mode of /etc/resolv.conf: readable by every
// program that resolves names.
const resolvConfMode = 0o644

// backup is /etc/resolv.conf as it was, all that is needed to put it back
// exactly: a symlink as a symlink, a file with its bytes, mode and owner,
// or no file at all; and what meshnode wrote, so that a file another
// program wrote since is left alone.
type backup struct {
	Path    string      `json:"path"`
	Absent  bool        `json:"absent,omitempty"`
	Symlink string      `json:"symlink,omitempty"` // the link's target
	Content []byte      `json:"content,omitempty"` // what the system read through it
	Mode    fs.FileMode `json:"mode,omitempty"`
	UID     int         `json:"uid"`
	GID     int         `json:"gid"`
	Written []byte      `json:"written"`
}

func (m *Manager) backupPath() string { return filepath.Join(m.opts.StateDir, backupFile) }

// readBackup returns the backup, or nil when there is none.
func (m *Manager) readBackup() (*backup, error) {
	b, err := os.ReadFile(m.backupPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("resolv.conf backup: %w", err)
	}
	var bk backup
	if err := json.Unmarshal(b, &bk); err != nil || bk.Path == "" {
		return nil, fmt.Errorf("resolv.conf backup %s is damaged (%v): check %s by hand, then remove the backup", m.backupPath(), err, m.opts.Paths.ResolvConf)
	}
	return &bk, nil
}

// saveOriginal reads /etc/resolv.conf as it is.
func (m *Manager) saveOriginal() (*backup, error) {
	path := m.opts.Paths.ResolvConf
	bk := &backup{Path: path}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		bk.Absent = true
		return bk, nil
	case err != nil:
		return nil, err
	case fi.Mode().Type() == fs.ModeSymlink:
		if bk.Symlink, err = os.Readlink(path); err != nil {
			return nil, err
		}
	default:
		bk.Mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			bk.UID, bk.GID = int(st.Uid), int(st.Gid)
		}
	}
	// Through a symlink: what the system resolved with (a dangling link
	// reads as nothing).
	if bk.Content, err = os.ReadFile(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return bk, nil
}

// originalResolvConf is what the system's resolv.conf said before
// meshnode: the backup's while it manages the file, else the file's.
func (m *Manager) originalResolvConf() ([]byte, error) {
	bk, err := m.readBackup()
	if err != nil {
		return nil, err
	}
	if bk != nil {
		return bk.Content, nil
	}
	return readFile(m.opts.Paths.ResolvConf)
}

// writeResolvConf points /etc/resolv.conf at the resolver. The original
// is backed up first (durably: a crash at any moment leaves the original
// in place, or the backup beside meshnode's file); names it searched and
// its options stay.
func (m *Manager) writeResolvConf(cfg Config) error {
	bk, err := m.readBackup()
	if err != nil {
		return err
	}
	if bk == nil {
		if bk, err = m.saveOriginal(); err != nil {
			return fmt.Errorf("back up %s: %w", m.opts.Paths.ResolvConf, err)
		}
	}
	bk.Written = m.resolvConf(cfg, bk.Content)
	b, err := json.Marshal(bk)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(m.backupPath(), b, backupMode); err != nil {
		return fmt.Errorf("back up %s: %w", bk.Path, err)
	}
	return replace(bk.Path, bk.Written, resolvConfMode)
}

// resolvConf is meshnode's resolv.conf: the resolver first, the mesh's
// domain searched first, the original's search list and options after.
func (m *Manager) resolvConf(cfg Config, original []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s (dns: manage-resolv-conf) while it runs. The original is kept in\n# %s and put back when meshnode stops.\n", resolverMarker, m.backupPath())
	for _, a := range cfg.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	search := []string{cfg.Domain}
	if orig, err := dns.ClientConfigFromReader(bytes.NewReader(original)); err == nil {
		for _, s := range orig.Search {
			if s != cfg.Domain {
				search = append(search, s)
			}
		}
	}
	fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	sc := bufio.NewScanner(bytes.NewReader(original))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && f[0] == "options" {
			b.WriteString(strings.Join(f, " ") + "\n")
		}
	}
	return b.Bytes()
}

// restoreResolvConf puts the original back, if meshnode's version is
// still there (a missing file gets it back too); a file another program
// wrote since stays. Either way the backup goes.
func (m *Manager) restoreResolvConf() error {
	bk, err := m.readBackup()
	if err != nil || bk == nil {
		return err
	}
	cur, err := os.ReadFile(bk.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist) || err == nil && bytes.Equal(cur, bk.Written):
		if err := bk.restore(); err != nil {
			return fmt.Errorf("restore %s (the original stays in %s): %w", bk.Path, m.backupPath(), err)
		}
		m.opts.Log.Info("restored the original", "file", bk.Path)
	case err != nil:
		return fmt.Errorf("restore %s: %w", bk.Path, err)
	default:
		m.opts.Log.Warn("left as it is: another program wrote it since meshnode did", "file", bk.Path)
	}
	if err := os.Remove(m.backupPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// restore puts the original back as it was.
func (bk *backup) restore() error {
	switch {
	case bk.Absent:
		if err := os.Remove(bk.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	case bk.Symlink != "":
		tmp := bk.Path + ".meshnode-link"
		os.Remove(tmp) //nolint:errcheck // a leftover of a crash here, if any
		if err := os.Symlink(bk.Symlink, tmp); err != nil {
			return err
		}
		return os.Rename(tmp, bk.Path)
	}
	if err := replace(bk.Path, bk.Content, bk.Mode); err != nil {
		return err
	}
	return os.Lchown(bk.Path, bk.UID, bk.GID)
}

// replace writes path whole: atomically, or, where path is a mount point
// (a container's or `ip netns exec`'s bind-mounted resolv.conf, which
// can't be renamed over), in place.
func replace(path string, data []byte, mode fs.FileMode) error {
	err := atomicfile.Write(path, data, mode)
	if !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.EXDEV) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
