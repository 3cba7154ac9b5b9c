// Package atomicfile writes files that must survive a crash whole: keys,
// certificates, a node's registration. A crash or power loss at any moment
// leaves either the old file or the whole new one, never a mix or a
// truncated file.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// tempTries bounds the search for an unused temporary name; each try is a
// fresh 64-bit random name, so a second one is already unlikely.
const tempTries = 10

// rename is os.Rename; tests make it fail once the temporary file is
// complete.
var rename = os.Rename

// Write replaces path with data, with permissions perm.
//
// The data goes to a temporary file in the same directory (rename is
// atomic only within a file system), created exclusively with perm from
// the start, so a secret is never readable by others, not even for a
// moment. The file is synced, renamed over path, then the directory is
// synced so the rename itself survives a power loss (fsync(2): syncing a
// file does not sync its directory entry). On an error up to the rename
// the temporary file is removed and path is left as it was; after it, the
// error is the directory's sync, and path may hold either content after a
// power loss.
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := createTemp(dir, filepath.Base(path), perm)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("write %s: directory %s does not exist: %w", path, dir, err)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	if err := writeSync(f, data, perm); err != nil {
		os.Remove(tmp) //nolint:errcheck // the write's error is the one to report
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := rename(tmp, path); err != nil {
		os.Remove(tmp) //nolint:errcheck // the rename's error is the one to report
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// createTemp creates a new file named after base in dir, with O_EXCL so
// that an existing file (or a symlink planted there) is never opened.
func createTemp(dir, base string, perm os.FileMode) (*os.File, error) {
	for range tempTries {
		name := filepath.Join(dir, "."+base+".tmp"+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("no unused temporary name in %s after %d tries", dir, tempTries)
}

// writeSync fills f, sets its mode and syncs it, then closes it. The mode
// is set again because the umask may have taken bits away from perm at
// creation; it only ever widens to perm.
func writeSync(f *os.File, data []byte, perm os.FileMode) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		if cerr := d.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
