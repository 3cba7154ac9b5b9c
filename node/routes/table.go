// Package routes is everything a node routes beyond the overlay's own
// addresses. As a client it sends peers' subnet routes through the peer
// that is primary for each, and, when its user chose an exit node, its
// internet traffic through that node (Table: WireGuard's allowed IPs and
// the OS routes). As a router it forwards traffic from the overlay to the
// routes the administrator approved for it, masqueraded (Gateway).
package routes

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/tun"
)

// Prefs are the user's choices: the exit node (a peer's name; "" for
// none) and whether this host's LANs stay reachable while it is used.
type Prefs struct {
	ExitNode string
	AllowLAN bool
}

// alwaysLocal are the ranges that never go to an exit node: link-local
// (DHCP, neighbour discovery, RFC 3927, RFC 4291) and multicast (mDNS,
// RFC 5771), which only mean something on the link they are sent on.
var alwaysLocal = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("255.255.255.255/32"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// Table holds every peer's routes and the user's prefs, and decides from
// them what goes through whom. It is a registry consumer (its Upsert and
// Remove take the peer map); WireGuard's consumer asks it for each peer's
// allowed IPs beyond its addresses. Its lock is a leaf.
type Table struct {
	own     []netip.Prefix // the routes this node advertises: reached directly
	overlay []netip.Prefix
	changed func() // after a change that may move an OS route; no lock held

	mu    sync.Mutex
	prefs Prefs
	peers map[crypto.PublicKey]wire.Node
	local []netip.Prefix // this host's LAN prefixes
}

// NewTable returns a table for a node that advertises own in the overlay
// networks overlay; changed, when set, hears every change that may move an
// OS route.
func NewTable(own, overlay []netip.Prefix, prefs Prefs, changed func()) *Table {
	return &Table{own: own, overlay: overlay, prefs: prefs, changed: changed, peers: make(map[crypto.PublicKey]wire.Node)}
}

func (t *Table) notify() {
	if t.changed != nil {
		t.changed()
	}
}

// Upsert implements registry.Consumer.
func (t *Table) Upsert(n wire.Node, _ *wire.Node) error {
	t.mu.Lock()
	t.peers[n.PublicKey] = n
	t.mu.Unlock()
	t.notify()
	return nil
}

// Remove implements registry.Consumer.
func (t *Table) Remove(n wire.Node) error {
	t.mu.Lock()
	delete(t.peers, n.PublicKey)
	t.mu.Unlock()
	t.notify()
	return nil
}

// SetLocal records this host's interface prefixes (the discoverer's link
// poll); the overlay's, loopback and link-local ones are not LANs.
func (t *Table) SetLocal(prefixes []netip.Prefix) {
	var lans []netip.Prefix
	for _, p := range prefixes {
		p = p.Masked()
		a := p.Addr()
		if !p.IsValid() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() || overlaps(t.overlay, p) || slices.Contains(lans, p) {
			continue
		}
		lans = append(lans, p)
	}
	wire.SortRoutes(lans)
	t.mu.Lock()
	same := slices.Equal(lans, t.local)
	t.local = lans
	t.mu.Unlock()
	if !same {
		t.notify()
	}
}

// Prefs are the user's current choices.
func (t *Table) Prefs() Prefs {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.prefs
}

// ErrNotExitNode refuses an exit node that is no peer or serves no exit
// routes.
var ErrNotExitNode = errors.New("not an exit node")

// SetPrefs changes the user's choices and returns the previous ones. A new
// exit node must be a peer that serves the exit routes.
func (t *Table) SetPrefs(p Prefs) (old Prefs, err error) {
	t.mu.Lock()
	if p.ExitNode != "" && p.ExitNode != t.prefs.ExitNode {
		if err := t.checkExit(p.ExitNode); err != nil {
			t.mu.Unlock()
			return t.prefs, err
		}
	}
	old, t.prefs = t.prefs, p
	t.mu.Unlock()
	t.notify()
	return old, nil
}

// checkExit says why name can't be the exit node. Caller holds mu.
func (t *Table) checkExit(name string) error {
	var offers []string
	for _, n := range t.peers {
		if wire.OffersExit(n.Routes) {
			offers = append(offers, n.Name)
		}
		if n.Name == name && wire.OffersExit(n.Routes) {
			return nil
		}
	}
	slices.Sort(offers)
	list := strings.Join(offers, ", ")
	if list == "" {
		list = "none: a node offers itself with --advertise-exit-node, and the administrator approves it with 'meshnode routes approve NAME exit'"
	}
	if t.peerNamed(name) == nil {
		return fmt.Errorf("%w: no peer is named %q (exit nodes: %s)", ErrNotExitNode, name, list)
	}
	return fmt.Errorf("%w: %s serves no approved exit routes (exit nodes: %s)", ErrNotExitNode, name, list)
}

// peerNamed is the peer named name, or nil. Caller holds mu.
func (t *Table) peerNamed(name string) *wire.Node {
	for _, n := range t.peers {
		if n.Name == name {
			return &n
		}
	}
	return nil
}

// AllowedIPs are the prefixes WireGuard sends to n beyond its overlay
// addresses: the subnet routes it is primary for and, when it is the
// chosen exit node, the exit routes it serves. What the coordinator sent
// is checked again: no route into the overlay, nothing reserved.
func (t *Table) AllowedIPs(n wire.Node) []netip.Prefix {
	t.mu.Lock()
	exit := t.prefs.ExitNode != "" && n.Name == t.prefs.ExitNode
	t.mu.Unlock()
	out := t.subnets(n)
	if exit {
		for _, p := range n.Routes {
			if wire.IsExitRoute(p) && !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// subnets are the subnet routes n is primary for, as far as they are
// routes a peer may have: at most wire.MaxRoutes, none reserved, none in
// the overlay, never an exit route.
func (t *Table) subnets(n wire.Node) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range n.PrimaryRoutes {
		if len(out) == wire.MaxRoutes {
			break
		}
		if wire.IsExitRoute(p) || wire.CheckRoute(p) != nil || overlaps(t.overlay, p) || slices.Contains(out, p) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// Route is one subnet route as this node uses it.
type Route struct {
	Prefix netip.Prefix
	Peer   string // the peer it goes through
	// Shadow is this host's LAN that holds the route, when the route is
	// not installed because it would take that LAN's traffic.
	Shadow netip.Prefix
	// Own: this node advertises the route itself and reaches it directly.
	Own bool
}

// Used lists every peer's subnet routes as this node uses them, by
// prefix.
func (t *Table) Used() []Route {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.used()
}

// used is Used; caller holds mu.
func (t *Table) used() []Route {
	var out []Route
	for _, n := range t.peers {
		for _, p := range t.subnets(n) {
			r := Route{Prefix: p, Peer: n.Name, Own: slices.Contains(t.own, p)}
			if i := slices.IndexFunc(t.local, func(l netip.Prefix) bool { return within(p, l) }); i >= 0 {
				r.Shadow = t.local[i]
			}
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Route) int {
		if c := wire.ComparePrefix(a.Prefix, b.Prefix); c != 0 {
			return c
		}
		return strings.Compare(a.Peer, b.Peer)
	})
	return out
}

// OSRoutes is what the OS must route through the TUN. Peers' subnet
// routes go there, except those inside one of this host's LANs (they
// would take its traffic) and those it advertises itself; a LAN that a
// subnet route covers stays local. With an exit node, the default routes
// go there too, even while the exit node is unknown or unreachable (its
// traffic is blocked, never sent in the clear), and only link-local and
// multicast stay local, besides this host's LANs when AllowLAN and the
// routes it serves (it forwards to them).
func (t *Table) OSRoutes() tun.RouteSet {
	t.mu.Lock()
	defer t.mu.Unlock()
	var rs tun.RouteSet
	add := func(list *[]netip.Prefix, p netip.Prefix) {
		if !slices.Contains(*list, p) {
			*list = append(*list, p)
		}
	}
	for _, r := range t.used() {
		if r.Own || r.Shadow.IsValid() {
			continue
		}
		add(&rs.Via, r.Prefix)
		if t.prefs.ExitNode != "" && !t.prefs.AllowLAN {
			continue
		}
		for _, l := range t.local {
			if within(l, r.Prefix) {
				add(&rs.Bypass, l)
			}
		}
	}
	if t.prefs.ExitNode != "" {
		add(&rs.Via, wire.ExitRouteV4)
		add(&rs.Via, wire.ExitRouteV6)
		for _, p := range alwaysLocal {
			add(&rs.Bypass, p)
		}
		if t.prefs.AllowLAN {
			for _, l := range t.local {
				add(&rs.Bypass, l)
			}
		}
	}
	if len(rs.Via) > 0 {
		for _, p := range t.own {
			if !wire.IsExitRoute(p) {
				add(&rs.Bypass, p)
			}
		}
	}
	wire.SortRoutes(rs.Via)
	wire.SortRoutes(rs.Bypass)
	return rs
}

// ExitState is the chosen exit node as the peer map shows it.
type ExitState struct {
	Name string
	// Peer is its key; zero when no peer has the name.
	Peer crypto.PublicKey
	// Known: a peer has the name; Serves: it serves the exit routes;
	// Online: the coordinator sees it.
	Known, Serves, Online bool
}

// Exit is the chosen exit node's state; ok is false when there is none.
func (t *Table) Exit() (st ExitState, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.prefs.ExitNode == "" {
		return ExitState{}, false
	}
	st.Name = t.prefs.ExitNode
	if n := t.peerNamed(st.Name); n != nil {
		st.Peer, st.Known, st.Serves, st.Online = n.PublicKey, true, wire.OffersExit(n.Routes), n.Online
	}
	return st, true
}

// within reports whether p lies inside l (or is l).
func within(p, l netip.Prefix) bool {
	return l.Bits() <= p.Bits() && l.Contains(p.Addr())
}

func overlaps(list []netip.Prefix, p netip.Prefix) bool {
	return slices.ContainsFunc(list, p.Overlaps)
}
