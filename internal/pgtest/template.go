package pgtest

import (
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// template is the data directory initdb makes, once per test binary, for
// the tests' own clusters (New): each then starts from a copy of it (a
// fraction of a second) instead of running initdb (seconds, and a core's
// worth of them). Only while Main runs, which removes it afterwards.
var template struct {
	enabled bool // set by Main before the tests run
	once    sync.Once
	dir     string // holds data; "" until made
	err     error
}

// templateData makes the template on first use and returns the path of
// its data directory.
func templateData(bin string, cred *syscall.Credential) (string, error) {
	template.once.Do(func() {
		dir, err := os.MkdirTemp(tempRoot(), "meshnode-pg-template-")
		if err != nil {
			template.err = err
			return
		}
		template.dir = dir
		if err := own(dir, cred); err != nil {
			template.err = err
			return
		}
		template.err = initdb(bin, cred, dir)
	})
	return filepath.Join(template.dir, "data"), template.err
}

// removeTemplate removes the template, if one was made.
func removeTemplate() error {
	if template.dir == "" {
		return nil
	}
	return os.RemoveAll(template.dir)
}
