package mapcache

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

var overlay = []netip.Prefix{netip.MustParsePrefix("100.88.0.0/16"), netip.MustParsePrefix("fd6d:6573:686e::/48")}

// lastKey numbers the keys key makes.
var lastKey atomic.Uint32

// key returns a key no other call returns: the map's checks need distinct
// keys, not real ones.
func key() crypto.PublicKey {
	var k crypto.PublicKey
	binary.BigEndian.PutUint32(k[:], lastKey.Add(1))
	k[crypto.KeyLen-1] = 1
	return k
}

// sample is a map with every field set, as a welcome fills it.
func sample(t testing.TB, o Owner) Map {
	t.Helper()
	return Map{
		Self: wire.Node{Name: "laptop", PublicKey: o.Node, Addresses: []netip.Addr{netip.MustParseAddr("100.88.0.2"), netip.MustParseAddr("fd6d:6573:686e::2")}, Tags: []string{"dev"}},
		Peers: []wire.Node{{
			Name: "desktop", PublicKey: key(), Online: true,
			Addresses: []netip.Addr{netip.MustParseAddr("100.88.0.3"), netip.MustParseAddr("fd6d:6573:686e::3")},
			Endpoints: []wire.Endpoint{{Addr: netip.MustParseAddrPort("192.168.1.3:41820"), Kind: wire.EndpointLAN}, {Addr: netip.MustParseAddrPort("203.0.113.7:41820"), Kind: wire.EndpointSTUN}},
			NAT:       &wire.NATInfo{Mapping: wire.NATMapping("endpoint-independent")},
			Routes:    []netip.Prefix{netip.MustParsePrefix("192.168.10.0/24")}, PrimaryRoutes: []netip.Prefix{netip.MustParsePrefix("192.168.10.0/24")},
			LastSeen: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC),
		}},
		Relay: "198.18.0.1:3478", STUN: []string{"198.18.0.1:3478", "198.18.0.2:3479"},
		Filter:    &wire.Filter{Version: 3, Rules: []wire.FilterRule{{Src: []netip.Prefix{netip.MustParsePrefix("100.88.0.3/32")}, Dst: []netip.Prefix{netip.MustParsePrefix("100.88.0.2/32")}, Proto: wire.ProtoTCP, Ports: []wire.PortRange{{First: 22, Last: 22}}}}},
		DNS:       &wire.DNSConfig{Domain: "mesh.internal", Records: []wire.DNSRecord{{Name: "nas", Addrs: []netip.Addr{netip.MustParseAddr("192.168.10.5")}}}},
		MeshRelay: &wire.MeshRelay{Key: key(), Addr: "198.18.0.21:3478", URL: "https://coord-2.example.com:8443", Pin: "sha256/AAAA"},
	}
}

func owner(t *testing.T) Owner {
	return Owner{Node: key(), Coordinator: key(), Overlay: overlay}
}

// The map comes back as it was saved, with its time, in a file only its
// owner can read, whatever was there before.
func TestSaveLoadRoundTrip(t *testing.T) {
	o := owner(t)
	m := sample(t, o)
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, []byte("an older, longer file that anyone could read"), 0o644); err != nil {
		t.Fatal(err)
	}
	updated := time.Date(2026, 11, 30, 9, 12, 3, 0, time.UTC)
	if err := Save(path, o, m, updated); err != nil {
		t.Fatal(err)
	}
	got, gotUpdated, err := Load(path, o)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("loaded %+v\nsaved  %+v", got, m)
	}
	if !gotUpdated.Equal(updated) {
		t.Errorf("updated %v, saved %v", gotUpdated, updated)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if w := m.Welcome(); w.Type != wire.MsgWelcome || len(w.Peers) != 1 || w.Self.PublicKey != o.Node || w.Filter != m.Filter || w.DNS != m.DNS || w.Relay != m.Relay || w.MeshRelay != m.MeshRelay {
		t.Errorf("Welcome() = %+v, not the map", w)
	}
}

// Save goes through a temporary file renamed over the cache: nothing else
// is left in the directory, and a map that can't be written (too large to
// be read back) leaves the previous file whole.
func TestSaveIsAtomic(t *testing.T) {
	o := owner(t)
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	m := sample(t, o)
	if err := Save(path, o, m, time.Now()); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Just enough peers that the map exceeds MaxSize: encoding a map
	// several times that size only costs CPU.
	one, err := json.Marshal(m.Peers[0])
	if err != nil {
		t.Fatal(err)
	}
	huge := m
	huge.Peers = nil
	for i := range MaxSize/len(one) + 1 {
		p := m.Peers[0]
		binary.BigEndian.PutUint32(p.PublicKey[:], uint32(i))
		huge.Peers = append(huge.Peers, p)
	}
	err = Save(path, o, huge, time.Now())
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("saving a map larger than MaxSize: %v, want an error naming the file and the limit", err)
	}
	after, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(after, before) {
		t.Errorf("the previous file changed after a failed save (err %v)", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only %s", names, FileName)
	}
}

// A cache file is hostile input: each bad one is refused with an error
// naming the file and what to do, never applied in part; no file at all
// is ErrNone.
func TestLoadRefusesBadFiles(t *testing.T) {
	o := owner(t)
	good := sample(t, o)
	valid := func(edit func(f *file)) []byte {
		f := file{Version: Version, Updated: time.Now().UTC(), Node: o.Node, Coordinator: o.Coordinator, Map: good}
		f.Map.Peers = append([]wire.Node(nil), good.Peers...)
		edit(&f)
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	peer := func(edit func(n *wire.Node)) func(f *file) {
		return func(f *file) {
			n := f.Map.Peers[0]
			edit(&n)
			f.Map.Peers[0] = n
		}
	}
	tests := []struct {
		name    string
		content []byte // nil: no file
		want    string // in the error
	}{
		{"missing", nil, ErrNone.Error()},
		{"empty", []byte{}, "damaged"},
		{"truncated", valid(func(*file) {})[:100], "damaged"},
		{"garbage", []byte("\x00\x01not json"), "damaged"},
		{"oversized", append(valid(func(*file) {}), bytes.Repeat([]byte(" "), MaxSize)...), "larger than"},
		{"newer version", valid(func(f *file) { f.Version = Version + 1 }), "newer meshnode"},
		{"no version", valid(func(f *file) { f.Version = 0 }), "format 0"},
		{"another node's", valid(func(f *file) { f.Node = key() }), "not this node's"},
		{"another coordinator's", valid(func(f *file) { f.Coordinator = key() }), "from coordinator"},
		{"no time", valid(func(f *file) { f.Updated = time.Time{} }), "when the map was received"},
		{"mesh relay URL too long", valid(func(f *file) {
			f.Map.MeshRelay = &wire.MeshRelay{Key: key(), Addr: "198.18.0.21:3478", URL: "https://" + strings.Repeat("a", 2*maxHostPort)}
		}), "the mesh's relay's URL"},
		{"mesh relay address too long", valid(func(f *file) {
			f.Map.MeshRelay = &wire.MeshRelay{Key: key(), Addr: strings.Repeat("a", maxHostPort) + ":3478"}
		}), "a relay or STUN address"},
		{"self record of another key", valid(func(f *file) { f.Map.Self.PublicKey = key() }), "own record"},
		{"itself as a peer", valid(peer(func(n *wire.Node) { n.PublicKey = o.Node })), "this node itself"},
		{"a peer twice", valid(func(f *file) { f.Map.Peers = append(f.Map.Peers, f.Map.Peers[0]) }), "listed twice"},
		{"a peer without key", valid(peer(func(n *wire.Node) { n.PublicKey = crypto.PublicKey{} })), "no key"},
		{"a bad name", valid(peer(func(n *wire.Node) { n.Name = "../etc" })), "name"},
		{"an address outside the overlay", valid(peer(func(n *wire.Node) { n.Addresses = []netip.Addr{netip.MustParseAddr("10.0.0.1")} })), "outside the overlay"},
		{"too many addresses", valid(peer(func(n *wire.Node) { n.Addresses = append(n.Addresses, n.Addresses...) })), "overlay addresses"},
		{"too many candidates", valid(peer(func(n *wire.Node) {
			n.Endpoints = make([]wire.Endpoint, wire.MaxEndpoints+1)
			for i := range n.Endpoints {
				n.Endpoints[i] = wire.Endpoint{Addr: netip.AddrPortFrom(netip.MustParseAddr("203.0.113.1"), uint16(i+1)), Kind: wire.EndpointSTUN}
			}
		})), "candidates"},
		{"a candidate without port", valid(peer(func(n *wire.Node) {
			n.Endpoints = []wire.Endpoint{{Addr: netip.AddrPortFrom(n.Endpoints[0].Addr.Addr(), 0), Kind: wire.EndpointLAN}}
		})), "candidate"},
		{"a bad route", valid(peer(func(n *wire.Node) { n.Routes = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })), "route"},
		{"a bad relay", valid(peer(func(n *wire.Node) { n.Relay = "relay.example:1" })), "relay"},
		{"a bad filter", valid(func(f *file) { f.Map.Filter = &wire.Filter{AllowAll: true, Rules: good.Filter.Rules} }), "filter"},
		{"bad DNS", valid(func(f *file) { f.Map.DNS = &wire.DNSConfig{Domain: "-bad-"} }), "dns"},
		{"a huge STUN list", valid(func(f *file) { f.Map.STUN = make([]string, maxSTUN+1) }), "STUN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			if tt.content != nil {
				if err := os.WriteFile(path, tt.content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			m, updated, err := Load(path, o)
			if err == nil {
				t.Fatalf("loaded %d peers", len(m.Peers))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if tt.content == nil {
				if !errors.Is(err, ErrNone) {
					t.Errorf("missing file: %v, want ErrNone", err)
				}
				return
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "remove it") {
				t.Errorf("error %q does not name the file and what to do", err)
			}
			if len(m.Peers) != 0 || !updated.IsZero() {
				t.Errorf("a refused file gave %d peers, updated %v", len(m.Peers), updated)
			}
		})
	}
}

// A file the node can't read is an error naming it, not ErrNone.
func TestLoadUnreadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(path, owner(t))
	if err == nil || errors.Is(err, ErrNone) || !strings.Contains(err.Error(), path) || !errors.Is(err, syscall.EISDIR) {
		t.Errorf("loading a directory: %v", err)
	}
}
