package netlab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// netnsEtc is where ip-netns(8) keeps a namespace's own configuration:
// `ip netns exec NAME` bind-mounts /etc/netns/NAME/resolv.conf over
// /etc/resolv.conf for the command it runs.
const netnsEtc = "/etc/netns"

// etcDir is n's configuration directory under netnsEtc.
func (n *Netns) etcDir() string { return filepath.Join(netnsEtc, n.Name) }

// SetResolvConf gives every process the lab starts in n (nodes, ping, the
// meshnode CLI) its own /etc/resolv.conf, so that what they resolve, and
// what a node with dns: manage-resolv-conf writes, stays in the lab and
// never touches the host's. Closing the namespace removes it.
func (n *Netns) SetResolvConf(content string) error {
	if err := os.MkdirAll(n.etcDir(), 0o755); err != nil {
		return fmt.Errorf("resolv.conf of %s: %w", n.Name, err)
	}
	if err := os.WriteFile(n.ResolvConfPath(), []byte(content), 0o644); err != nil {
		return fmt.Errorf("resolv.conf of %s: %w", n.Name, err)
	}
	return nil
}

// ResolvConfPath is the file processes in n see as /etc/resolv.conf.
func (n *Netns) ResolvConfPath() string { return filepath.Join(n.etcDir(), "resolv.conf") }

// hasResolvConf reports whether SetResolvConf gave n its own.
func (n *Netns) hasResolvConf() bool {
	_, err := os.Stat(n.ResolvConfPath())
	return err == nil
}

// removeEtc removes n's configuration directory, if it has one.
func removeEtc(name string) error {
	err := os.RemoveAll(filepath.Join(netnsEtc, name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", filepath.Join(netnsEtc, name), err)
	}
	return nil
}
