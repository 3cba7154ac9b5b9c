package node_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/node/path"
)

// Nodes outlive the control plane: two nodes go direct, the coordinator
// goes down, and one node restarts. It comes up from its cached peer map
// (status says so, and since when), reaches the other directly through
// the cached candidates, and carries traffic. When the coordinator is back
// both nodes reconnect and the live map replaces the cached one. How soon
// is logged against the goal of 5 s (node/control's TestReconnectWaits
// holds the waits between attempts to 3.75 s; the rest is the dial, TLS
// and the welcome, which a loaded machine stretches).
func TestRestartFromCachedMapWhileCoordinatorDown(t *testing.T) {
	t.Parallel()
	m, a, b := homeAndOffice(t)
	waitDirect(t, a, b)
	if st := b.Engine.Status(); st.Coordinator.CachedMap != nil {
		t.Fatalf("b says it runs from a cached map while connected: %+v", st.Coordinator)
	}

	m.StopCoordinator()
	down := time.Now()
	for _, n := range []*meshlab.Node{a, b} {
		wait.For(t, pathDeadline, n.Name+" sees the coordinator gone", func() bool {
			return !n.Engine.Status().Coordinator.Connected
		})
	}
	b = m.Restart(b)
	restarted := time.Now()
	st := b.Engine.Status()
	c := st.Coordinator.CachedMap
	if c == nil {
		t.Fatalf("b restarted while the coordinator is down does not say it runs from a cached map: %+v", st.Coordinator)
	}
	if st.Coordinator.Connected {
		t.Fatal("b says it is connected to a stopped coordinator")
	}
	since, err := time.Parse(time.RFC3339, c.Since)
	if err != nil || since.Before(restarted.Add(-time.Minute)) || since.After(time.Now().Add(time.Second)) {
		t.Errorf("cached map in use since %q, want about %v (%v)", c.Since, restarted.UTC(), err)
	}
	if updated, err := time.Parse(time.RFC3339, c.Updated); err != nil || updated.After(down.Add(time.Second)) {
		t.Errorf("cached map updated %q, want before the coordinator stopped at %v (%v)", c.Updated, down.UTC(), err)
	}
	if filepath.Base(c.File) != "peermap.json" {
		t.Errorf("cached map file %q", c.File)
	}
	if len(st.Peers) != 1 || st.Peers[0].Name != "a" || st.Peers[0].Addresses[0] != a.Addr4() {
		t.Fatalf("b came up with peers %+v, want a at %v", st.Peers, a.Addr4())
	}
	if len(st.Self.Addresses) == 0 || st.Self.Addresses[0] != b.Addr4() {
		t.Errorf("b came up with addresses %v, want %v first", st.Self.Addresses, b.Addr4())
	}

	waitDirect(t, a, b)
	transfer(t, b, a, 64<<10)
	transfer(t, a, b, 64<<10)
	if p := b.PathTo(a); p.Path != path.PathDirect {
		t.Errorf("b reaches a by %+v while the coordinator is down, want direct", p)
	}
	if c := b.Engine.Status().Coordinator.CachedMap; c == nil {
		t.Error("b no longer says it runs from the cached map while the coordinator is still down")
	}

	// Long enough down that the reconnect waits are at their cap: the
	// first two waits take at most 1.5 s and 3 s (node/control's
	// backoffMin and backoffMax, with jitter), every later one is at it.
	wait.For(t, pathDeadline, "the outage lasting 6 s", func() bool { return time.Since(down) > 6*time.Second })
	m.StartCoordinator()
	back := time.Now()
	for _, n := range []*meshlab.Node{a, b} {
		wait.For(t, pathDeadline, n.Name+" reconnected", func() bool {
			return n.Engine.Status().Coordinator.Connected
		})
		since := time.Since(back)
		t.Logf("%s reconnected %v after the coordinator came back (down %v)", n.Name, since.Round(time.Millisecond), back.Sub(down).Round(time.Second))
	}
	wait.For(t, pathDeadline, "b's live map replacing the cached one", func() bool {
		return b.Engine.Status().Coordinator.CachedMap == nil
	})
	transfer(t, b, a, 16<<10)
}

// A cache the node can't use never stops it: restarted during an outage
// with a damaged cache file, a node comes up without peers (and says
// nothing of a cached map), and once the coordinator answers its map
// writes a good file again. With peer_map_cache off the file is removed
// and the node comes up without peers likewise.
func TestUnusableCachedMap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		spoil   func(t *testing.T, file string)
		opts    meshlab.NodeOptions
		rewrite bool // the coordinator's map is cached again
	}{
		{"damaged", func(t *testing.T, file string) {
			if err := os.WriteFile(file, []byte(`{"version":1,"map":{"peers":[{"name":`), 0o600); err != nil {
				t.Fatal(err)
			}
		}, meshlab.NodeOptions{}, true},
		{"newer format", func(t *testing.T, file string) {
			if err := os.WriteFile(file, []byte(`{"version":99,"something":"else"}`), 0o600); err != nil {
				t.Fatal(err)
			}
		}, meshlab.NodeOptions{}, true},
		{"cache off", func(*testing.T, string) {}, meshlab.NodeOptions{NoPeerMapCache: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, a, b := homeAndOffice(t)
			waitDirect(t, a, b)
			file := filepath.Join(b.StateDir(), "peermap.json")
			wait.ForNil(t, pathDeadline, "b's map cached", func() error {
				_, err := os.Stat(file)
				return err
			})
			m.StopCoordinator()
			// Spoiled once b is down: a clean stop writes the change still
			// pending (a peer's new candidates), over the spoiled file.
			if err := b.Stop(); err != nil {
				t.Fatal(err)
			}
			tc.spoil(t, file)
			b = m.RestartWith(b, tc.opts)
			st := b.Engine.Status()
			if st.Coordinator.CachedMap != nil || len(st.Peers) != 0 {
				t.Fatalf("b came up from an unusable cache: coordinator %+v, peers %+v", st.Coordinator, st.Peers)
			}
			if len(st.Self.Addresses) == 0 || st.Self.Addresses[0] != b.Addr4() {
				t.Errorf("b came up with addresses %v, want its registration's", st.Self.Addresses)
			}
			if _, err := os.Stat(file); tc.rewrite && err != nil || !tc.rewrite && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the cache file after b's start: %v", err)
			}
			m.StartCoordinator()
			waitDirect(t, a, b)
			if !tc.rewrite {
				if _, err := os.Stat(file); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("peer_map_cache off, yet the file is there: %v", err)
				}
				return
			}
			wait.ForNil(t, pathDeadline, "b's map cached again", func() error {
				return checkCached(file, a)
			})
		})
	}
}

// checkCached reports whether file holds a map with peer in it.
func checkCached(file string, peer *meshlab.Node) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var f struct {
		Version int `json:"version"`
		Map     struct {
			Peers []struct {
				Name string `json:"name"`
			} `json:"peers"`
		} `json:"map"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	if f.Version != 1 || len(f.Map.Peers) != 1 || f.Map.Peers[0].Name != peer.Name {
		return fmt.Errorf("the file holds version %d, peers %+v", f.Version, f.Map.Peers)
	}
	return nil
}
