// Package meshdns is the node's resolver. It answers the mesh's names
// (NAME.<domain>: A and AAAA, and PTR for overlay addresses)
// authoritatively from the peer map, and forwards every other query to the
// machine's own upstream resolvers. It listens on the node's overlay
// addresses only and answers only sources on the overlay.
package meshdns

import (
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Record kinds, as status shows them.
const (
	KindSelf  = "self"  // this node
	KindPeer  = "peer"  // another member
	KindExtra = "extra" // the administrator's dns_records
)

// Record is one name the resolver answers.
type Record struct {
	Name  string       `json:"name"` // the full name, without the final dot
	Addrs []netip.Addr `json:"addresses"`
	Kind  string       `json:"kind"`
}

// member is one node's name and overlay addresses.
type member struct {
	name  string // a lower-case label
	addrs []netip.Addr
}

// Table holds the names the resolver answers: one per member (this node
// and its peers) and the administrator's extra records. The registry feeds
// it each peer change; queries read it. Its lock is a leaf: nothing else
// is taken under it.
type Table struct {
	overlay []netip.Prefix // reverse names of these are answered here

	mu      sync.RWMutex
	domain  string // canonical: lower case with the final dot
	self    crypto.PublicKey
	members map[crypto.PublicKey]member
	byName  map[string]crypto.PublicKey // label → member
	byAddr  map[netip.Addr]crypto.PublicKey
	extra   map[string][]netip.Addr // relative name → addresses
	// between are relative names with names below them and none of their
	// own ("office" for "printer.office"): they exist, with no records
	// (RFC 8020: NXDOMAIN would deny the names below).
	between map[string]bool
}

// NewTable returns a table for the node self on the overlay's prefixes,
// in the default domain until SetConfig says otherwise.
func NewTable(self crypto.PublicKey, overlay []netip.Prefix) *Table {
	return &Table{
		overlay: slices.Clone(overlay),
		domain:  dns.Fqdn(wire.DefaultDNSDomain),
		self:    self,
		members: map[crypto.PublicKey]member{},
		byName:  map[string]crypto.PublicKey{},
		byAddr:  map[netip.Addr]crypto.PublicKey{},
		extra:   map[string][]netip.Addr{},
		between: map[string]bool{},
	}
}

// SetConfig applies the coordinator's DNS configuration, which the caller
// has validated (wire.DNSConfig.Validate).
func (t *Table) SetConfig(c wire.DNSConfig) {
	extra := make(map[string][]netip.Addr, len(c.Records))
	between := map[string]bool{}
	for _, r := range c.Records {
		name := strings.ToLower(r.Name)
		extra[name] = append(extra[name], r.Addrs...)
		for i := strings.IndexByte(name, '.'); i >= 0; i = strings.IndexByte(name, '.') {
			name = name[i+1:]
			between[name] = true
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.domain = dns.CanonicalName(c.Domain)
	t.extra, t.between = extra, between
}

// Domain is the mesh's domain, without the final dot.
func (t *Table) Domain() string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return strings.TrimSuffix(t.domain, ".")
}

// Set adds or updates a member: this node's own record or a peer's. A
// name that is not a DNS label is not answered.
func (t *Table) Set(n wire.Node) {
	m := member{name: strings.ToLower(n.Name), addrs: slices.Clone(n.Addresses)}
	if wire.ValidDNSLabel(m.name) != nil {
		m.name = ""
	}
	t.mu.RLock()
	old, ok := t.members[n.PublicKey]
	t.mu.RUnlock()
	if ok && old.name == m.name && slices.Equal(old.addrs, m.addrs) {
		return // most changes are a peer's endpoints or presence
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forget(n.PublicKey)
	t.members[n.PublicKey] = m
	if m.name != "" {
		t.byName[m.name] = n.PublicKey
	}
	for _, a := range m.addrs {
		t.byAddr[a] = n.PublicKey
	}
}

// Remove forgets a member.
func (t *Table) Remove(k crypto.PublicKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forget(k)
}

// forget drops k's indexes; t.mu is held.
func (t *Table) forget(k crypto.PublicKey) {
	old, ok := t.members[k]
	if !ok {
		return
	}
	delete(t.members, k)
	if t.byName[old.name] == k {
		delete(t.byName, old.name)
	}
	for _, a := range old.addrs {
		if t.byAddr[a] == k {
			delete(t.byAddr, a)
		}
	}
}

// answer is what the table holds for one name in the domain.
type answer struct {
	zone   string       // the domain, canonical
	apex   bool         // the name is the domain itself
	exists bool         // the name exists (with records or names below)
	addrs  []netip.Addr // its addresses
}

// lookup finds a canonical name; ok is false when it is not in the domain.
func (t *Table) lookup(name string) (answer, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if !dns.IsSubDomain(t.domain, name) {
		return answer{}, false
	}
	a := answer{zone: t.domain}
	if name == t.domain {
		a.apex, a.exists = true, true
		return a, true
	}
	rel := strings.TrimSuffix(name, "."+t.domain)
	// The administrator's names first: a member can't take one of them.
	if addrs, ok := t.extra[rel]; ok {
		a.exists, a.addrs = true, addrs
		return a, true
	}
	if k, ok := t.byName[rel]; ok {
		a.exists, a.addrs = true, t.members[k].addrs
		return a, true
	}
	a.exists = t.between[rel]
	return a, true
}

// ptr is the name of the member holding an overlay address; inOverlay is
// false for addresses outside the overlay, whose reverse names are not
// this resolver's to answer.
func (t *Table) ptr(a netip.Addr) (name, zone string, inOverlay bool) {
	for _, p := range t.overlay {
		if p.Contains(a) {
			zone, inOverlay = reverseZone(p), true
			break
		}
	}
	if !inOverlay {
		return "", "", false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if k, ok := t.byAddr[a]; ok && t.members[k].name != "" {
		name = t.members[k].name + "." + t.domain
	}
	return name, zone, true
}

// Records lists every name the resolver answers, by name.
func (t *Table) Records() []Record {
	t.mu.RLock()
	defer t.mu.RUnlock()
	domain := strings.TrimSuffix(t.domain, ".")
	var out []Record
	for k, m := range t.members {
		if m.name == "" || t.extra[m.name] != nil {
			continue
		}
		kind := KindPeer
		if k == t.self {
			kind = KindSelf
		}
		out = append(out, Record{Name: m.name + "." + domain, Addrs: slices.Clone(m.addrs), Kind: kind})
	}
	for name, addrs := range t.extra {
		out = append(out, Record{Name: name + "." + domain, Addrs: slices.Clone(addrs), Kind: KindExtra})
	}
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.Name, b.Name) })
	return out
}
