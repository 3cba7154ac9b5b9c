package netlab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/meshnode/meshnode/internal/testenv"
)

func TestOwnerPID(t *testing.T) {
	for _, tc := range []struct {
		name string
		pid  int
		ok   bool
	}{
		{"mnlab-123-ab12-s1r", 123, true},
		{"mnlab-123-ab12-inet", 123, true},
		{"mnlab-123-ab12", 0, false},     // no role
		{"mnlab-x23-ab12-s1r", 0, false}, // no PID
		{"mnlab-0-ab12-s1r", 0, false},
		{"mnlabunit-123-ab12-s1r", 0, false}, // another prefix
		{"other-123-ab12-s1r", 0, false},
		{"cni-123-ab12-s1r", 0, false},
	} {
		pid, ok := ownerPID("mnlab", tc.name)
		if pid != tc.pid || ok != tc.ok {
			t.Errorf("ownerPID(%q) = %d, %v; want %d, %v", tc.name, pid, ok, tc.pid, tc.ok)
		}
	}
}

// TestSweep leaves namespaces and lab directories "from a crashed run" (a
// PID that has exited) and of this process, and checks Sweep removes the
// crashed run's only, except a directory kept on purpose; and this
// process's too when asked.
func TestSweep(t *testing.T) {
	t.Parallel() // its namespaces have a prefix of their own: mnlabsweep
	if err := Check(); err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	const prefix = "mnlabsweep"
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	dead, own := exited.Process.Pid, os.Getpid()
	staleNS := fmt.Sprintf("%s-%d-0000-s1r", prefix, dead)
	ownNS := fmt.Sprintf("%s-%d-0000-s1r", prefix, own)
	tools, _ := LookupTools()
	for _, name := range []string{staleNS, ownNS} {
		if _, err := run(testCtx(t), "", tools.IP, "netns", "add", name); err != nil {
			testenv.Unavailable(t, "%v", err)
		}
		t.Cleanup(func() {
			if !slices.Contains(listNetns(t), name) {
				return
			}
			if err := deleteNetns(context.Background(), tools.IP, name); err != nil {
				t.Errorf("remove %s: %v", name, err)
			}
		})
	}
	staleDir := makeDir(t, fmt.Sprintf("%s-%d-0000-1", prefix, dead), false)
	keptDir := makeDir(t, fmt.Sprintf("%s-%d-0000-2", prefix, dead), true)
	ownDir := makeDir(t, fmt.Sprintf("%s-%d-0000-3", prefix, own), false)
	// A namespace's own resolv.conf (SetResolvConf), of a crashed run and
	// of this one.
	for _, ns := range []*Netns{{Name: staleNS}, {Name: ownNS}} {
		if err := ns.SetResolvConf("nameserver 198.18.0.1\n"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { removeEtc(ns.Name) })
	}
	staleEtc, ownEtc := (&Netns{Name: staleNS}).etcDir(), (&Netns{Name: ownNS}).etcDir()

	if _, err := Sweep(testCtx(t), prefix, false); err != nil {
		t.Fatal(err)
	}
	left := listNetns(t)
	for _, c := range []struct {
		what string
		gone bool
		want bool
	}{
		{"stale namespace " + staleNS, !slices.Contains(left, staleNS), true},
		{"own namespace " + ownNS, !slices.Contains(left, ownNS), false},
		{"stale directory " + staleDir, !exists(staleDir), true},
		{"kept directory " + keptDir, !exists(keptDir), false},
		{"own directory " + ownDir, !exists(ownDir), false},
		{"stale resolv.conf " + staleEtc, !exists(staleEtc), true},
		{"own resolv.conf " + ownEtc, !exists(ownEtc), false},
	} {
		if c.gone != c.want {
			t.Errorf("after Sweep: %s removed=%v, want %v", c.what, c.gone, c.want)
		}
	}
	if _, err := Sweep(testCtx(t), prefix, true); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(listNetns(t), ownNS) || exists(ownDir) || exists(ownEtc) {
		t.Errorf("Sweep with includeOwn left %s, %s or %s", ownNS, ownDir, ownEtc)
	}
}

// makeDir makes a lab-like directory in the temporary directory, removed
// when the test ends.
func makeDir(t *testing.T, name string, kept bool) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if kept {
		if err := os.WriteFile(filepath.Join(dir, keepMarker), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func listNetns(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
