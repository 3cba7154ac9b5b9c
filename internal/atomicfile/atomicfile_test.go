package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The cases change the process's umask and the package's rename, so none
// runs in parallel.
func TestWrite(t *testing.T) {
	errRename := errors.New("rename failed")
	tests := []struct {
		name  string
		old   []byte      // path's content before; nil: no file
		mode  os.FileMode // path's mode before
		data  string
		perm  os.FileMode
		umask int
		// failRename makes the rename fail, after the temporary file is
		// complete.
		failRename bool
		noDir      bool    // path's directory does not exist
		want       *string // path's content after; nil: no file
		wantMode   os.FileMode
		wantErr    string // in the error; "": none
	}{
		{name: "new file", data: "new", perm: 0o600, umask: 0o022, want: new("new"), wantMode: 0o600},
		{name: "replace", old: []byte("old content, longer than the new"), mode: 0o600, data: "new", perm: 0o600, umask: 0o022,
			want: new("new"), wantMode: 0o600},
		{name: "replace narrows the mode", old: []byte("old"), mode: 0o644, data: "new", perm: 0o600, umask: 0o022,
			want: new("new"), wantMode: 0o600},
		{name: "permissive umask", data: "new", perm: 0o600, umask: 0, want: new("new"), wantMode: 0o600},
		{name: "strict umask still gives perm", data: "new", perm: 0o644, umask: 0o077, want: new("new"), wantMode: 0o644},
		{name: "empty data", old: []byte("old"), mode: 0o600, perm: 0o600, umask: 0o022, want: new(""), wantMode: 0o600},
		{name: "failure before the rename keeps the old file", old: []byte("old"), mode: 0o640, data: "new", perm: 0o600, umask: 0o022,
			failRename: true, want: new("old"), wantMode: 0o640, wantErr: errRename.Error()},
		{name: "failure with no old file leaves none", data: "new", perm: 0o600, umask: 0o022, failRename: true, wantErr: errRename.Error()},
		{name: "directory missing", data: "new", perm: 0o600, umask: 0o022, noDir: true, wantErr: "does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.noDir {
				dir = filepath.Join(dir, "missing")
			}
			path := filepath.Join(dir, "state.json")
			if tc.old != nil {
				if err := os.WriteFile(path, tc.old, tc.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			defer syscall.Umask(syscall.Umask(tc.umask))
			rename = func(from, to string) error {
				// The temporary file is complete and private before it
				// takes path's place.
				st, err := os.Stat(from)
				if err != nil {
					t.Fatalf("temporary file: %v", err)
				}
				if st.Mode().Perm() != tc.perm {
					t.Errorf("temporary file mode %v, want %v", st.Mode().Perm(), tc.perm)
				}
				if tc.failRename {
					return errRename
				}
				return os.Rename(from, to)
			}
			defer func() { rename = os.Rename }()

			err := Write(path, []byte(tc.data), tc.perm)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("Write = %v, want an error naming %s and containing %q", err, path, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Write: %v", err)
			}
			if tc.noDir {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("Write = %v, want fs.ErrNotExist", err)
				}
				return
			}
			got, err := os.ReadFile(path)
			switch {
			case tc.want == nil:
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s: %q, %v; want no file", path, got, err)
				}
			case err != nil:
				t.Fatal(err)
			case string(got) != *tc.want:
				t.Errorf("content %q, want %q", got, *tc.want)
			}
			if st, err := os.Stat(path); err == nil && st.Mode().Perm() != tc.wantMode {
				t.Errorf("mode %v, want %v", st.Mode().Perm(), tc.wantMode)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.Name() != filepath.Base(path) {
					t.Errorf("left behind: %s", e.Name())
				}
			}
		})
	}
}
