package osdns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

var (
	overlay = []netip.Prefix{netip.MustParsePrefix("100.88.0.0/16"), netip.MustParsePrefix("fd6d:6573:686e::/48")}
	meshCfg = Config{
		Domain:       "mesh.internal",
		ReverseZones: []string{"88.100.in-addr.arpa", "e.6.8.6.3.7.5.6.d.6.d.f.ip6.arpa"},
		Servers:      []netip.Addr{netip.MustParseAddr("100.88.0.1"), netip.MustParseAddr("fd6d:6573:686e::1")},
	}
)

// fakeSystem is a machine in a temporary directory: its /etc/resolv.conf,
// resolved's upstreams file, /etc/resolver, /proc, and a state directory.
type fakeSystem struct {
	dir  string
	cmds [][]string
	fail map[string]error // by resolvectl verb
}

func newFakeSystem(t *testing.T) *fakeSystem {
	s := &fakeSystem{dir: t.TempDir(), fail: map[string]error{}}
	for _, d := range []string{"etc", "run", "state", "proc/self/ns"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("net:[4026531840]", filepath.Join(s.dir, "proc/self/ns/net")); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *fakeSystem) path(p string) string { return filepath.Join(s.dir, p) }

// hostNamespace gives PID 1 the network namespace ns; this process is
// in net:[4026531840].
func (s *fakeSystem) hostNamespace(t *testing.T, ns string) {
	if err := os.MkdirAll(s.path("proc/1/ns"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ns, s.path("proc/1/ns/net")); err != nil {
		t.Fatal(err)
	}
}

func (s *fakeSystem) manager(goos string, manage, resolvectl bool) *Manager {
	return New(Options{
		Paths: Paths{
			ResolvConf:      s.path("etc/resolv.conf"),
			ResolvedUplinks: s.path("run/resolved.conf"),
			ResolverDir:     s.path("etc/resolver"),
			Proc:            s.path("proc"),
		},
		StateDir:         s.path("state"),
		ManageResolvConf: manage,
		Interface:        "mesh0",
		GOOS:             goos,
		Run: func(_ context.Context, name string, args ...string) error {
			s.cmds = append(s.cmds, append([]string{name}, args...))
			return s.fail[args[0]]
		},
		LookPath: func(cmd string) (string, error) {
			if resolvectl && cmd == "resolvectl" {
				return "/usr/bin/resolvectl", nil
			}
			return "", errors.New("not found")
		},
	})
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name       string
		goos       string
		host       string // PID 1's network namespace
		resolvectl bool
		answers    bool // resolvectl status succeeds: resolved runs
		manage     bool
		want       string
		note       string
	}{
		{name: "resolved in this namespace", goos: "linux", host: "net:[4026531840]", resolvectl: true, answers: true, want: ModeResolved},
		{name: "in another namespace than the host's", goos: "linux", host: "net:[4026532001]", resolvectl: true, answers: true, want: ModeNone, note: "no systemd-resolved in this network namespace"},
		{name: "resolved not running", goos: "linux", host: "net:[4026531840]", resolvectl: true, want: ModeNone, note: "left alone"},
		{name: "no resolvectl", goos: "linux", host: "net:[4026531840]", answers: true, want: ModeNone, note: "dns: manage-resolv-conf"},
		{name: "nothing, resolv.conf managed", goos: "linux", host: "net:[4026531840]", manage: true, want: ModeResolvConf},
		{name: "resolved wins over managing", goos: "linux", host: "net:[4026531840]", resolvectl: true, answers: true, manage: true, want: ModeResolved},
		{name: "macOS", goos: "darwin", host: "net:[4026531840]", manage: true, want: ModeResolverDir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeSystem(t)
			s.hostNamespace(t, tt.host)
			if !tt.answers {
				s.fail["status"] = errors.New("Failed to get global data: Unit dbus-org.freedesktop.resolve1.service not found.")
			}
			mode, note := s.manager(tt.goos, tt.manage, tt.resolvectl).Mode()
			if mode != tt.want || !strings.Contains(note, tt.note) {
				t.Fatalf("Mode() = %q, %q; want %q and a note containing %q", mode, note, tt.want, tt.note)
			}
		})
	}
}

func TestResolvectlCommands(t *testing.T) {
	const (
		detect  = "resolvectl status --no-pager"
		servers = "resolvectl dns mesh0 100.88.0.1 fd6d:6573:686e::1"
		domains = "resolvectl domain mesh0 mesh.internal ~88.100.in-addr.arpa ~e.6.8.6.3.7.5.6.d.6.d.f.ip6.arpa"
		noRoute = "resolvectl default-route mesh0 false"
		revert  = "resolvectl revert mesh0"
	)
	tests := []struct {
		name string
		fail map[string]error
		want []string // the commands run, joined
		err  bool
	}{
		{name: "all applied", want: []string{detect, servers, domains, noRoute, revert}},
		{
			name: "a systemd without default-route",
			fail: map[string]error{"default-route": errors.New("Unknown command verb default-route")},
			want: []string{detect, servers, domains, noRoute, revert},
		},
		{
			name: "a refused domain is taken back",
			fail: map[string]error{"domain": errors.New("Failed to set domain configuration")},
			want: []string{detect, servers, domains, revert},
			err:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeSystem(t)
			s.hostNamespace(t, "net:[4026531840]")
			s.fail = tt.fail
			m := s.manager("linux", false, true)
			err := m.Apply(context.Background(), meshCfg)
			if (err != nil) != tt.err {
				t.Fatalf("Apply = %v, want error %v", err, tt.err)
			}
			if !tt.err {
				if err := m.Apply(context.Background(), meshCfg); err != nil {
					t.Fatalf("Apply again = %v", err)
				}
				if err := m.Revert(context.Background()); err != nil {
					t.Fatalf("Revert = %v", err)
				}
			}
			var got []string
			for _, c := range s.cmds {
				got = append(got, strings.Join(c, " "))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("commands\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if _, note := m.Mode(); tt.err != strings.Contains(note, "not applied") {
				t.Fatalf("note %q after Apply error %v", note, err)
			}
		})
	}
}

func TestUpstreams(t *testing.T) {
	tests := []struct {
		name    string
		file    string // resolv.conf, or resolved's upstreams with resolved
		exclude []netip.Prefix
		want    []string
	}{
		{name: "IPv4 and IPv6", file: "nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch lan\n", want: []string{"192.0.2.53:53", "[2001:db8::53]:53"}},
		{name: "the overlay's resolvers left out", file: "nameserver 100.88.0.1\nnameserver fd6d:6573:686e::2\nnameserver 192.0.2.53\n", exclude: overlay, want: []string{"192.0.2.53:53"}},
		{name: "host names, 0.0.0.0 and comments skipped", file: "# nameserver 192.0.2.1\nnameserver dns.example\nnameserver 0.0.0.0\nnameserver 192.0.2.2\n", want: []string{"192.0.2.2:53"}},
		{name: "a link-local server keeps its zone", file: "nameserver fe80::1%eth0\n", exclude: overlay, want: []string{"[fe80::1%eth0]:53"}},
		{name: "no file", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeSystem(t)
			if tt.file != "" {
				if err := os.WriteFile(s.path("etc/resolv.conf"), []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.manager("linux", false, false).Upstreams(tt.exclude)
			if err != nil {
				t.Fatal(err)
			}
			var strs []string
			for _, u := range got {
				strs = append(strs, u.String())
			}
			if !reflect.DeepEqual(strs, tt.want) {
				t.Fatalf("Upstreams = %v, want %v", strs, tt.want)
			}
		})
	}
}

// With resolved, the upstreams are resolved's own, never its stub (which
// would send the mesh's reverse zones back to the resolver) and never the
// resolver itself, which resolved lists once the link is configured.
func TestUpstreamsWithResolved(t *testing.T) {
	s := newFakeSystem(t)
	s.hostNamespace(t, "net:[4026531840]")
	os.WriteFile(s.path("etc/resolv.conf"), []byte("nameserver 127.0.0.53\noptions edns0 trust-ad\n"), 0o644)
	os.WriteFile(s.path("run/resolved.conf"), []byte("nameserver 192.0.2.53\nnameserver 100.88.0.1\nnameserver 127.0.0.54\n"), 0o644)
	got, err := s.manager("linux", false, true).Upstreams(overlay)
	if err != nil || len(got) != 1 || got[0].String() != "192.0.2.53:53" {
		t.Fatalf("Upstreams = %v, %v; want only 192.0.2.53:53", got, err)
	}
}

// original is one way /etc/resolv.conf can be before meshnode.
type original struct {
	name    string
	content string // a regular file's content
	target  string // a symlink's target (a file holding content)
	absent  bool
	mode    os.FileMode
}

func (o original) create(t *testing.T, s *fakeSystem) {
	t.Helper()
	path := s.path("etc/resolv.conf")
	switch {
	case o.absent:
	case o.target != "":
		if err := os.WriteFile(s.path(o.target), []byte(o.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(s.path(o.target), path); err != nil {
			t.Fatal(err)
		}
	default:
		if err := os.WriteFile(path, []byte(o.content), o.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, o.mode); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			if err := os.Chown(path, 1234, 5678); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// check fails unless /etc/resolv.conf is exactly as o made it.
func (o original) check(t *testing.T, s *fakeSystem) {
	t.Helper()
	path := s.path("etc/resolv.conf")
	fi, err := os.Lstat(path)
	switch {
	case o.absent:
		if err == nil {
			t.Fatalf("resolv.conf exists after restore; there was none")
		}
		return
	case err != nil:
		t.Fatal(err)
	case o.target != "":
		if got, err := os.Readlink(path); err != nil || got != s.path(o.target) {
			t.Fatalf("resolv.conf is not the symlink to %s again: %q, %v", s.path(o.target), got, err)
		}
		return
	}
	got, _ := os.ReadFile(path)
	if string(got) != o.content || fi.Mode().Perm() != o.mode {
		t.Fatalf("resolv.conf after restore: %q mode %v; want %q mode %v", got, fi.Mode().Perm(), o.content, o.mode)
	}
	if st := fi.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && (st.Uid != 1234 || st.Gid != 5678) {
		t.Fatalf("resolv.conf owner %d:%d after restore; want 1234:5678", st.Uid, st.Gid)
	}
}

var originals = []original{
	{name: "a regular file", content: "# from DHCP\nnameserver 192.0.2.53\nsearch lan example.com\noptions edns0 rotate\n", mode: 0o640},
	{name: "a symlink", target: "run/resolvconf.conf", content: "nameserver 192.0.2.54\n"},
	{name: "no file", absent: true},
}

// Managing resolv.conf: meshnode's version names the resolver and keeps
// the original's search list and options; the upstreams are the
// original's; Revert puts the original back exactly.
func TestResolvConfManagedAndRestored(t *testing.T) {
	for _, o := range originals {
		t.Run(o.name, func(t *testing.T) {
			s := newFakeSystem(t)
			o.create(t, s)
			m := s.manager("linux", true, false)
			if err := m.Apply(context.Background(), meshCfg); err != nil {
				t.Fatal(err)
			}
			written, err := os.ReadFile(s.path("etc/resolv.conf"))
			if err != nil {
				t.Fatal(err)
			}
			want := []string{resolverMarker, "nameserver 100.88.0.1\nnameserver fd6d:6573:686e::1\n", "search mesh.internal"}
			if o.name == "a regular file" {
				want = append(want, "search mesh.internal lan example.com\n", "options edns0 rotate\n")
			}
			for _, w := range want {
				if !strings.Contains(string(written), w) {
					t.Fatalf("resolv.conf while managed:\n%s\nwant it to contain %q", written, w)
				}
			}
			ups, err := m.Upstreams(overlay)
			if err != nil {
				t.Fatal(err)
			}
			if wantUp := upstreamsOf(t, o.content); !reflect.DeepEqual(ups, wantUp) {
				t.Fatalf("upstreams while managed %v, want the original's %v", ups, wantUp)
			}
			// A new domain rewrites the file; the backup keeps the original.
			next := meshCfg
			next.Domain = "corp.internal"
			if err := m.Apply(context.Background(), next); err != nil {
				t.Fatal(err)
			}
			if err := m.Revert(context.Background()); err != nil {
				t.Fatal(err)
			}
			o.check(t, s)
			if _, err := os.Stat(s.path("state/" + backupFile)); err == nil {
				t.Fatal("the backup outlived the restore")
			}
		})
	}
}

func upstreamsOf(t *testing.T, content string) []netip.AddrPort {
	t.Helper()
	u, err := upstreams([]byte(content), overlay)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// After a crash, the next start (whatever its settings) puts the original
// back from the backup; a file another program wrote since stays.
func TestResolvConfRecoveredAfterCrash(t *testing.T) {
	for _, o := range originals {
		for _, rewritten := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, rewritten by another program %v", o.name, rewritten), func(t *testing.T) {
				s := newFakeSystem(t)
				o.create(t, s)
				if err := s.manager("linux", true, false).Apply(context.Background(), meshCfg); err != nil {
					t.Fatal(err)
				}
				// The node dies here. DHCP may write the file meanwhile.
				const dhcp = "nameserver 198.51.100.53\n"
				if rewritten {
					if err := os.WriteFile(s.path("etc/resolv.conf"), []byte(dhcp), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				next := s.manager("linux", false, false) // a start with dns: split
				if err := next.Recover(); err != nil {
					t.Fatal(err)
				}
				if rewritten {
					if got, _ := os.ReadFile(s.path("etc/resolv.conf")); string(got) != dhcp {
						t.Fatalf("resolv.conf another program wrote was replaced: %q", got)
					}
				} else {
					o.check(t, s)
				}
				if _, err := os.Stat(s.path("state/" + backupFile)); err == nil {
					t.Fatal("the backup outlived the recovery")
				}
				if err := next.Recover(); err != nil {
					t.Fatalf("a second Recover = %v, want nothing to do", err)
				}
			})
		}
	}
}

func TestResolvConfDamagedBackup(t *testing.T) {
	s := newFakeSystem(t)
	os.WriteFile(s.path("state/"+backupFile), []byte("{"), 0o600)
	if err := s.manager("linux", true, false).Recover(); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Recover with a damaged backup = %v, want an error saying so", err)
	}
}

// macOS: one resolver file per zone, replaced when the domain changes,
// removed on Revert and after a crash; an administrator's file stays.
func TestResolverFiles(t *testing.T) {
	s := newFakeSystem(t)
	dir := s.path("etc/resolver")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const theirs = "nameserver 192.0.2.1\n"
	os.WriteFile(filepath.Join(dir, "corp.example"), []byte(theirs), 0o644)
	m := s.manager("darwin", false, false)
	if err := m.Apply(context.Background(), meshCfg); err != nil {
		t.Fatal(err)
	}
	files := func() []string {
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	want := []string{"88.100.in-addr.arpa", "corp.example", "e.6.8.6.3.7.5.6.d.6.d.f.ip6.arpa", "mesh.internal"}
	if got := files(); !reflect.DeepEqual(got, want) {
		t.Fatalf("resolver files %v, want %v", got, want)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "mesh.internal"))
	if !strings.Contains(string(b), "nameserver 100.88.0.1\nnameserver fd6d:6573:686e::1\n") {
		t.Fatalf("resolver file:\n%s", b)
	}
	next := meshCfg
	next.Domain = "home.internal"
	if err := m.Apply(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	if got, want := files(), []string{"88.100.in-addr.arpa", "corp.example", "e.6.8.6.3.7.5.6.d.6.d.f.ip6.arpa", "home.internal"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after a new domain: %v, want %v", got, want)
	}
	// A crash: the next start removes meshnode's files, not theirs.
	if err := s.manager("darwin", false, false).Recover(); err != nil {
		t.Fatal(err)
	}
	if got := files(); !reflect.DeepEqual(got, []string{"corp.example"}) {
		t.Fatalf("after recovery: %v, want only the administrator's", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "corp.example")); string(b) != theirs {
		t.Fatalf("the administrator's file changed: %q", b)
	}
	// A file of the domain's name that meshnode did not write is refused.
	os.WriteFile(filepath.Join(dir, "mesh.internal"), []byte(theirs), 0o644)
	m = s.manager("darwin", false, false)
	if err := m.Apply(context.Background(), meshCfg); err == nil || !strings.Contains(err.Error(), "not written by meshnode") {
		t.Fatalf("Apply over a foreign file = %v", err)
	}
	if err := m.Revert(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "mesh.internal")); string(b) != theirs {
		t.Fatalf("the foreign file changed: %q", b)
	}
}
