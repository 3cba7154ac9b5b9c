package mapcache

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
)

const waitFor = 10 * time.Second

// peerList stands in for the registry.
type peerList struct {
	mu    sync.Mutex
	peers []wire.Node
}

func (p *peerList) set(ns []wire.Node) {
	p.mu.Lock()
	p.peers = ns
	p.mu.Unlock()
}

func (p *peerList) all() []wire.Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]wire.Node(nil), p.peers...)
}

func startWriter(t *testing.T, o Owner, peers *peerList, timing Timing) (w *Writer, path string, stop func()) {
	t.Helper()
	path = filepath.Join(t.TempDir(), FileName)
	w = NewWriter(path, o, peers.all, timing, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(done)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return w, path, stop
}

// A welcome is written at once; the flood of changes after it (candidates
// flapping, peers joining) is coalesced into writes at least MinGap apart,
// and a stop writes what is pending: the file then holds the latest map.
func TestWriterCoalesces(t *testing.T) {
	o := owner(t)
	m := sample(t, o)
	peers := &peerList{}
	peers.set(m.Peers)
	w, path, stop := startWriter(t, o, peers, Timing{Settle: 0, Later: time.Hour, MinGap: time.Hour})
	w.Welcome(m.Welcome())
	wait.For(t, waitFor, "the welcome written", func() bool { return w.Writes.Load() == 1 })
	got, _, err := Load(path, o)
	if err != nil || len(got.Peers) != 1 {
		t.Fatalf("after the welcome: %d peers, %v", len(got.Peers), err)
	}

	last := m.Peers[0]
	for i := range 1000 {
		last.Endpoints = []wire.Endpoint{{Addr: netip.AddrPortFrom(netip.MustParseAddr("203.0.113.9"), uint16(1000+i)), Kind: wire.EndpointSTUN}}
		peers.set([]wire.Node{last})
		w.Delta(wire.StreamMsg{Type: wire.MsgPeers, Upsert: []wire.Node{last}}, false)
	}
	newcomer := last
	newcomer.Name, newcomer.PublicKey, newcomer.Addresses = "phone", key(), []netip.Addr{netip.MustParseAddr("100.88.0.9")}
	peers.set([]wire.Node{last, newcomer})
	w.Delta(wire.StreamMsg{Type: wire.MsgPeers, Upsert: []wire.Node{newcomer}}, true)
	if n := w.Writes.Load(); n != 1 {
		t.Errorf("%d writes within MinGap of the first", n)
	}
	stop()
	if n := w.Writes.Load(); n != 2 {
		t.Errorf("%d writes after the stop, want 2 (the welcome, then what was pending)", n)
	}
	got, _, err = Load(path, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Peers) != 2 || got.Peers[0].Endpoints[0] != last.Endpoints[0] {
		t.Errorf("file after the stop holds %+v, want the latest peers", got.Peers)
	}
}

// Significant changes are written after Settle; candidate changes only
// after Later, so a candidate change alone is not written soon.
func TestWriterDelays(t *testing.T) {
	o := owner(t)
	m := sample(t, o)
	tests := []struct {
		name        string
		msg         wire.StreamMsg
		significant bool
		soon        bool
	}{
		{"candidates", wire.StreamMsg{Upsert: m.Peers}, false, false},
		{"a new peer", wire.StreamMsg{Upsert: m.Peers}, true, true},
		{"a removal", wire.StreamMsg{Remove: []crypto.PublicKey{m.Peers[0].PublicKey}}, false, true},
		{"a new policy", wire.StreamMsg{Filter: &wire.Filter{Version: 9, AllowAll: true}}, false, true},
		{"this node's record", wire.StreamMsg{Self: &m.Self}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peers := &peerList{}
			peers.set(m.Peers)
			w, _, stop := startWriter(t, o, peers, Timing{Settle: 0, Later: time.Hour, MinGap: 0})
			w.mu.Lock()
			w.m = m
			w.m.Peers = nil
			w.mu.Unlock()
			tt.msg.Type = wire.MsgPeers
			w.Delta(tt.msg, tt.significant)
			if tt.soon {
				wait.For(t, waitFor, "the change written", func() bool { return w.Writes.Load() == 1 })
				return
			}
			w.mu.Lock()
			due := w.due
			w.mu.Unlock()
			if time.Until(due) < 59*time.Minute {
				t.Errorf("a candidate change is due in %v, want Later (1h)", time.Until(due))
			}
			stop()
			if n := w.Writes.Load(); n != 1 {
				t.Errorf("%d writes after the stop, want 1", n)
			}
		})
	}
}

func TestSignificant(t *testing.T) {
	m := sample(t, owner(t))
	base := m.Peers[0]
	tests := []struct {
		name string
		edit func(n *wire.Node)
		want bool
	}{
		{"candidates gone", func(n *wire.Node) { n.Endpoints = nil }, false},
		{"candidates moved", func(n *wire.Node) { n.Endpoints = n.Endpoints[1:] }, false},
		{"presence", func(n *wire.Node) { n.Online = !n.Online; n.LastSeen = time.Now() }, false},
		{"NAT", func(n *wire.Node) { n.NAT = nil }, false},
		{"name", func(n *wire.Node) { n.Name = "other" }, true},
		{"addresses", func(n *wire.Node) { n.Addresses = n.Addresses[:1] }, true},
		{"routes", func(n *wire.Node) { n.PrimaryRoutes = nil }, true},
		{"tags", func(n *wire.Node) { n.Tags = []string{"relay"} }, true},
		{"relay", func(n *wire.Node) { n.Relay = "198.18.5.5:3479" }, true},
	}
	for _, tt := range tests {
		n := base
		tt.edit(&n)
		if got := Significant(&base, n); got != tt.want {
			t.Errorf("%s: Significant = %v, want %v", tt.name, got, tt.want)
		}
	}
	if !Significant(nil, base) {
		t.Error("a new peer is not significant")
	}
	bare := base
	bare.Endpoints = nil
	if !Significant(&bare, base) {
		t.Error("a peer's first candidates are not significant")
	}
}

// A write that fails is logged once and retried; the file appears once
// the directory is back.
func TestWriterRetriesFailedWrites(t *testing.T) {
	o := owner(t)
	m := sample(t, o)
	peers := &peerList{}
	peers.set(m.Peers)
	dir := filepath.Join(t.TempDir(), "gone")
	w := NewWriter(filepath.Join(dir, FileName), o, peers.all, Timing{MinGap: 10 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	w.Welcome(m.Welcome())
	wait.For(t, waitFor, "a failed write", func() bool { return w.Failures.Load() > 0 })
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	wait.For(t, waitFor, "the write retried", func() bool { return w.Writes.Load() > 0 })
	if _, _, err := Load(filepath.Join(dir, FileName), o); err != nil {
		t.Fatal(err)
	}
}

// Once removed (the coordinator refused the node), the file is gone and
// no change brings it back, not even the write at the stop.
func TestWriterRemove(t *testing.T) {
	o := owner(t)
	m := sample(t, o)
	peers := &peerList{}
	peers.set(m.Peers)
	w, path, stop := startWriter(t, o, peers, Timing{MinGap: time.Hour})
	w.Welcome(m.Welcome())
	wait.For(t, waitFor, "the welcome written", func() bool { return w.Writes.Load() == 1 })
	w.Delta(wire.StreamMsg{Type: wire.MsgPeers, Remove: []crypto.PublicKey{m.Peers[0].PublicKey}}, true)
	if err := w.Remove(); err != nil {
		t.Fatal(err)
	}
	w.Welcome(m.Welcome())
	stop()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the file after Remove and a stop: %v", err)
	}
	if n := w.Writes.Load(); n != 1 {
		t.Errorf("%d writes, want only the one before Remove", n)
	}
}

// A new relay of the mesh's coordinators, from a delta, is written as soon
// as the changes that matter to coming up are.
func TestWriterKeepsTheMeshRelay(t *testing.T) {
	o := owner(t)
	m := sample(t, o)
	m.MeshRelay = nil
	peers := &peerList{}
	peers.set(m.Peers)
	w, path, stop := startWriter(t, o, peers, Timing{Settle: 0, Later: time.Hour, MinGap: 0})
	defer stop()
	w.Welcome(m.Welcome())
	wait.For(t, waitFor, "the welcome written", func() bool { return w.Writes.Load() == 1 })
	r := &wire.MeshRelay{Key: key(), Addr: "198.18.0.31:3478", URL: "https://coord-3.example.com", Pin: "sha256/BBBB"}
	w.Delta(wire.StreamMsg{Type: wire.MsgPeers, MeshRelay: r}, false)
	wait.For(t, waitFor, "the mesh's relay written", func() bool {
		got, _, err := Load(path, o)
		return err == nil && got.MeshRelay != nil && *got.MeshRelay == *r
	})
}

// The file names the coordinator's version of the map it holds: a
// welcome's, advanced by each delta, significant or not, and none from a
// coordinator that gives none.
func TestWriterRecordsTheVersion(t *testing.T) {
	o := owner(t)
	m := sample(t, o)
	peers := &peerList{}
	peers.set(m.Peers)
	w, path, stop := startWriter(t, o, peers, Timing{Settle: 0, Later: 0, MinGap: 0})
	defer stop()
	held := func(want wire.MapVersion) func() bool {
		return func() bool {
			got, _, err := Load(path, o)
			return err == nil && got.Held == want
		}
	}
	m.Held = wire.MapVersion{Epoch: 7, Version: 40}
	w.Welcome(m.Welcome())
	wait.For(t, waitFor, "the welcome's version written", held(m.Held))
	w.Delta(wire.StreamMsg{Type: wire.MsgPeers, Version: 41, Upsert: m.Peers}, true)
	wait.For(t, waitFor, "the delta's version written", held(wire.MapVersion{Epoch: 7, Version: 41}))
	w.Delta(wire.StreamMsg{Type: wire.MsgPeers, Version: 42, Upsert: m.Peers}, false)
	wait.For(t, waitFor, "a candidates-only delta's version written", held(wire.MapVersion{Epoch: 7, Version: 42}))
	m.Held = wire.MapVersion{}
	w.Welcome(m.Welcome())
	wait.For(t, waitFor, "no version from a coordinator that gives none", held(wire.MapVersion{}))
}
