// Package mapcache keeps a node's last peer map on disk, so that a node
// restarted while no coordinator answers still comes up with its peers and
// reaches those whose endpoints hold.
//
// The file is written atomically with mode 0600 (internal/atomicfile) and
// read back as hostile input: bounded in size, versioned, every record
// checked as the coordinator's messages are; a file that fails any check is
// ignored with an error naming it, never applied in part.
package mapcache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/atomicfile"
	"github.com/meshnode/meshnode/internal/wire"
)

const (
	// FileName is the cache's name in the state directory.
	FileName = "peermap.json"
	// Version is the file format this package writes and reads. A later
	// format is refused (a downgrade leaves the file of a newer meshnode
	// behind), never guessed at.
	Version = 1
	// MaxSize bounds the file: it holds what a welcome does (the whole map
	// of the mesh) and a few fields more, and a welcome is at most
	// wire.MaxCoordinatorMessage.
	MaxSize = wire.MaxCoordinatorMessage + 64<<10
	// fileMode keeps peers' keys, addresses and endpoints to the node's
	// own user, like its registration.
	fileMode = 0o600
)

// ErrNone means there is no cache file.
var ErrNone = errors.New("no cached peer map")

// Map is what a node needs to come up and reach its peers without the
// coordinator: the last welcome with the deltas since applied.
type Map struct {
	// Self is this node's own record (tags, routes it serves).
	Self wire.Node `json:"self"`
	// Peers are the peers with their keys, overlay addresses, candidates,
	// NATs and routes.
	Peers []wire.Node `json:"peers"`
	// Relay and Relay6 are the coordinator's UDP relay addresses.
	Relay  string `json:"relay,omitempty"`
	Relay6 string `json:"relay6,omitempty"`
	// STUN and STUN6 are the coordinator's STUN servers.
	STUN  []string `json:"stun,omitempty"`
	STUN6 []string `json:"stun6,omitempty"`
	// Filter is the access policy compiled for this node; nil: none.
	Filter *wire.Filter `json:"filter,omitempty"`
	// DNS is the mesh's domain and extra records; nil: the defaults.
	DNS *wire.DNSConfig `json:"dns,omitempty"`
	// MeshRelay is the relay of the mesh's coordinators, where several
	// serve it; nil: the coordinator's own (Relay, Relay6). A node that
	// comes up while its coordinator is down binds to it, where its
	// peers of the other coordinators are.
	MeshRelay *wire.MeshRelay `json:"mesh_relay,omitempty"`
	// Held is the coordinator's epoch and version of the map when it was
	// written; the map may be newer, never older. A node restarted while
	// that coordinator runs on asks it for what changed since instead of
	// the whole map. Zero: unknown (the coordinator sends the whole map).
	Held wire.MapVersion `json:"held,omitzero"`
}

// Welcome is the map as the welcome message it stands in for.
func (m Map) Welcome() wire.StreamMsg {
	self := m.Self
	return wire.StreamMsg{
		Type: wire.MsgWelcome, Self: &self, Peers: m.Peers,
		Relay: m.Relay, Relay6: m.Relay6, STUN: m.STUN, STUN6: m.STUN6,
		Filter: m.Filter, DNS: m.DNS, MeshRelay: m.MeshRelay,
		Epoch: m.Held.Epoch, Version: m.Held.Version,
	}
}

// Owner is whose map a file holds: the node's key, its coordinator's key,
// and the overlay networks its peers' addresses are in.
type Owner struct {
	Node        crypto.PublicKey
	Coordinator crypto.PublicKey
	Overlay     []netip.Prefix
}

// file is the format on disk.
type file struct {
	Version int `json:"version"`
	// Updated is when the coordinator last changed the map the file
	// holds: how old the map is.
	Updated     time.Time        `json:"updated"`
	Node        crypto.PublicKey `json:"node"`
	Coordinator crypto.PublicKey `json:"coordinator"`
	Map         Map              `json:"map"`
}

// encode returns the file's bytes, refusing a map larger than MaxSize (it
// could not be read back).
func encode(o Owner, m Map, updated time.Time) ([]byte, error) {
	b, err := json.Marshal(file{Version: Version, Updated: updated.UTC(), Node: o.Node, Coordinator: o.Coordinator, Map: m})
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("the peer map takes %d bytes, more than the %d a cache file may hold", len(b), MaxSize)
	}
	return b, nil
}

// Save writes m to path atomically, readable by the owner only.
func Save(path string, o Owner, m Map, updated time.Time) error {
	b, err := encode(o, m, updated)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.Write(path, b, fileMode)
}

// Load reads the map cached at path for o, and when the coordinator last
// changed it. It returns ErrNone when there is no file; any other error
// names the file, says what is wrong and what to do, and nothing of the
// file is to be used.
func Load(path string, o Owner) (Map, time.Time, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Map{}, time.Time{}, ErrNone
	}
	if err != nil {
		return Map{}, time.Time{}, fmt.Errorf("peer map cache %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return Map{}, time.Time{}, fmt.Errorf("peer map cache %s: %w", path, err)
	}
	return decode(path, b, o)
}

// decode checks and decodes the content b of the cache file at path.
func decode(path string, b []byte, o Owner) (Map, time.Time, error) {
	fail := func(format string, args ...any) (Map, time.Time, error) {
		return Map{}, time.Time{}, fmt.Errorf("peer map cache %s: %s; it is ignored (remove it: the node writes a new one from the coordinator's next map)", path, fmt.Sprintf(format, args...))
	}
	if len(b) > MaxSize {
		return fail("larger than %d bytes", MaxSize)
	}
	// The version first, alone: a newer format may not decode as this one.
	var v struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return fail("damaged (%v)", err)
	}
	if v.Version > Version {
		return fail("written by a newer meshnode (format %d; this one reads %d)", v.Version, Version)
	}
	if v.Version != Version {
		return fail("format %d is not one this meshnode reads (%d)", v.Version, Version)
	}
	var c file
	if err := json.Unmarshal(b, &c); err != nil {
		return fail("damaged (%v)", err)
	}
	if c.Node != o.Node {
		return fail("it is node %s's, not this node's (%s): a state directory copied from another node?", c.Node.Short(), o.Node.Short())
	}
	if c.Coordinator != o.Coordinator {
		return fail("it is from coordinator %s, not this node's (%s)", c.Coordinator.Short(), o.Coordinator.Short())
	}
	if c.Updated.IsZero() {
		return fail("it does not say when the map was received")
	}
	if err := c.Map.check(o); err != nil {
		return fail("%v", err)
	}
	return c.Map, c.Updated, nil
}

// check holds the map to what a node accepts from its coordinator.
func (m Map) check(o Owner) error {
	if m.Self.PublicKey != o.Node {
		return fmt.Errorf("its own record is of key %s", m.Self.PublicKey.Short())
	}
	if err := checkNode(m.Self, o.Overlay); err != nil {
		return fmt.Errorf("its own record: %w", err)
	}
	seen := make(map[crypto.PublicKey]bool, len(m.Peers))
	for i, n := range m.Peers {
		if n.PublicKey == o.Node {
			return fmt.Errorf("peer %d is this node itself", i)
		}
		if seen[n.PublicKey] {
			return fmt.Errorf("peer %d (%s) is listed twice", i, n.PublicKey.Short())
		}
		seen[n.PublicKey] = true
		if err := checkNode(n, o.Overlay); err != nil {
			return fmt.Errorf("peer %d (%q): %w", i, n.Name, err)
		}
	}
	if m.Filter != nil {
		if err := m.Filter.Validate(); err != nil {
			return err
		}
	}
	if m.DNS != nil {
		if err := m.DNS.Validate(); err != nil {
			return err
		}
	}
	addrs := append(append([]string{m.Relay, m.Relay6}, m.STUN...), m.STUN6...)
	if r := m.MeshRelay; r != nil {
		addrs = append(addrs, r.Addr, r.Addr6)
		if len(r.URL) > maxURL || len(r.Pin) > maxURL {
			return fmt.Errorf("the mesh's relay's URL or pin of %d and %d characters, more than %d", len(r.URL), len(r.Pin), maxURL)
		}
	}
	for _, s := range addrs {
		if len(s) > maxHostPort {
			return fmt.Errorf("a relay or STUN address of %d characters", len(s))
		}
	}
	if len(m.STUN) > maxSTUN || len(m.STUN6) > maxSTUN {
		return fmt.Errorf("%d and %d STUN servers, more than %d", len(m.STUN), len(m.STUN6), maxSTUN)
	}
	return nil
}

// Bounds of the relay and STUN addresses: a host name and port, and the
// few servers a coordinator offers (a primary and an alternate).
const (
	maxHostPort = wire.MaxDNSName + len(":65535")
	maxSTUN     = 8
	// maxURL bounds the mesh relay's coordinator URL (https://, a host
	// name, a port and a short path) and its certificate pin.
	maxURL = 2 * maxHostPort
)

// checkNode checks one record as the registry's consumers rely on it: a
// key, a name that is a DNS label, overlay addresses inside the overlay,
// candidates and routes a peer could have reported.
func checkNode(n wire.Node, overlay []netip.Prefix) error {
	if n.PublicKey.IsZero() {
		return errors.New("no key")
	}
	if err := wire.ValidDNSLabel(n.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if len(n.Addresses) == 0 || len(n.Addresses) > len(overlay) {
		return fmt.Errorf("%d overlay addresses, want 1 to %d", len(n.Addresses), len(overlay))
	}
	for _, a := range n.Addresses {
		if !inAny(a, overlay) {
			return fmt.Errorf("address %v is outside the overlay %v", a, overlay)
		}
	}
	if len(n.Endpoints) > wire.MaxEndpoints {
		return fmt.Errorf("%d candidates, more than %d", len(n.Endpoints), wire.MaxEndpoints)
	}
	for _, ep := range n.Endpoints {
		if !ep.Addr.IsValid() || ep.Addr.Port() == 0 || len(ep.Kind) > maxKind {
			return fmt.Errorf("candidate %v (%.16q): not an address and port", ep.Addr, ep.Kind)
		}
	}
	if len(n.Tags) > maxTags {
		return fmt.Errorf("%d tags, more than %d", len(n.Tags), maxTags)
	}
	for _, tag := range n.Tags {
		if tag == "" || len(tag) > wire.MaxDNSLabel {
			return fmt.Errorf("tag %.64q: want 1 to %d characters", tag, wire.MaxDNSLabel)
		}
	}
	if n.Relay != "" {
		if ap, err := netip.ParseAddrPort(n.Relay); err != nil || ap.Port() == 0 {
			return fmt.Errorf("relay %.64q: not an IP:port", n.Relay)
		}
	}
	if len(n.Routes) > wire.MaxRoutes || len(n.PrimaryRoutes) > wire.MaxRoutes {
		return fmt.Errorf("%d routes, %d primary, more than %d", len(n.Routes), len(n.PrimaryRoutes), wire.MaxRoutes)
	}
	for _, p := range append(n.Routes, n.PrimaryRoutes...) {
		if err := wire.CheckRoute(p); err != nil {
			return err
		}
	}
	return nil
}

// Bounds of a record's candidate kinds and tags.
const (
	maxKind = 16
	maxTags = 64
)

func inAny(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
