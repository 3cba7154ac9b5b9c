package osdns

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/meshnode/meshnode/internal/atomicfile"
)

// resolverMarker starts every file meshnode writes for the OS's resolver,
// so that it removes only its own, also those a crashed run left.
const resolverMarker = "# Written by meshnode"

// resolverFileMode: resolver files are public configuration.
const resolverFileMode = 0o644

// writeResolverFiles writes /etc/resolver/<zone> for the domain and each
// reverse zone (resolver(5)): macOS sends names in a zone to its
// nameservers. Files of an earlier domain go; a file meshnode did not
// write is never replaced.
func (m *Manager) writeResolverFiles(cfg Config) error {
	dir := m.opts.Paths.ResolverDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("resolver directory: %w", err)
	}
	var body strings.Builder
	body.WriteString(resolverMarker + " while it runs: the mesh's names go to its resolver.\n")
	for _, a := range cfg.Servers {
		fmt.Fprintf(&body, "nameserver %s\n", a)
	}
	zones := append([]string{cfg.Domain}, cfg.ReverseZones...)
	for _, z := range zones {
		path := filepath.Join(dir, z)
		if mine, err := ours(path); err != nil || !mine {
			return errors.Join(err, fmt.Errorf("%s exists and was not written by meshnode: move it away, or set accept_dns: false", path))
		}
		if err := atomicfile.Write(path, []byte(body.String()), resolverFileMode); err != nil {
			return err
		}
	}
	return m.removeResolverFiles(zones)
}

// ours reports whether path is free for meshnode: absent, or its own.
func ours(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return bytes.HasPrefix(b, []byte(resolverMarker)), nil
}

// removeResolverFiles removes meshnode's resolver files but those of keep.
func (m *Manager) removeResolverFiles(keep []string) error {
	entries, err := os.ReadDir(m.opts.Paths.ResolverDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("resolver directory: %w", err)
	}
	var errs []error
	for _, e := range entries {
		path := filepath.Join(m.opts.Paths.ResolverDir, e.Name())
		if !e.Type().IsRegular() || slices.Contains(keep, e.Name()) {
			continue
		}
		if mine, err := ours(path); err == nil && mine {
			errs = append(errs, os.Remove(path))
		}
	}
	return errors.Join(errs...)
}
