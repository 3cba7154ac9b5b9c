// Package store keeps the coordinator's durable state: join tokens, the
// registered nodes with their overlay addresses, the access policy's
// versions, and a few settings.
//
// Store is the interface the coordinator uses. Two engines implement it:
// SQLite (OpenSQLite), embedded, the default for one coordinator, and
// PostgreSQL (OpenPostgres, through pgx), which several coordinators may
// share. Their SQL is written once (sqlDB) in what both read alike:
// positional $N parameters, TEXT and BIGINT columns, times as Unix
// milliseconds, JSON in TEXT; the schema's migrations are one list. The
// rules that decide a registration live in plain Go here (CheckToken,
// Pool, Suffixed).
package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Store is the coordinator's durable state. Every method that returns
// without error has made its change durable: a caller may acknowledge it.
type Store interface {
	// CreateToken records a new join token.
	CreateToken(ctx context.Context, t Token) error
	// Tokens lists every token, newest first.
	Tokens(ctx context.Context) ([]Token, error)
	// RevokeToken marks a token revoked; ErrNotFound if there is none.
	RevokeToken(ctx context.Context, id string, now time.Time) error

	// Register checks the token and registers (or re-registers) the node in
	// one transaction: the token is consumed and the addresses allocated
	// atomically. Errors: ErrBanned, ErrTokenUnknown, ErrTokenExpired,
	// ErrTokenUsed, ErrTokenRevoked, ErrPoolExhausted.
	Register(ctx context.Context, r Registration) (Node, error)
	// CheckRegistration applies Register's checks, and returns the error
	// Register would, without writing: it takes no write lock, so a
	// stranger's guessed tokens cost reads beside the writer and never
	// hold up a registration. Its refusals are sound without a snapshot:
	// each rests on facts that stay true once read (tokens are never
	// deleted and their hashes never change; revocation, expiry and uses
	// only grow; a ban is read on its own). A pass proves nothing: Register
	// checks again in its transaction.
	CheckRegistration(ctx context.Context, r Registration) error
	// Node returns an active node; ErrRemoved or ErrNotFound otherwise.
	Node(ctx context.Context, key crypto.PublicKey) (Node, error)
	// Nodes lists the active nodes by name.
	Nodes(ctx context.Context) ([]Node, error)
	// RemoveNode removes the active node of that name, frees its name and
	// addresses, bans its key and returns it; ErrNotFound if there is none.
	RemoveNode(ctx context.Context, name string, now time.Time) (Node, error)
	// UpdateTags adds and then removes tags of the active node of that name
	// and returns it; ErrNotFound if there is none.
	UpdateTags(ctx context.Context, name string, add, remove []string) (Node, error)
	// RenameNode gives the active node of that name a new one and returns
	// it; ErrNotFound if there is none, ErrNameTaken if another node has
	// the new name.
	RenameNode(ctx context.Context, name, newName string) (Node, error)
	// Bans lists the banned keys, newest first.
	Bans(ctx context.Context) ([]Ban, error)
	// Allow lifts the ban of a key, named by the key or by the node name it
	// had, and returns it: ErrNotFound if no ban matches, ErrAmbiguous if a
	// name matches several.
	Allow(ctx context.Context, keyOrName string) (Ban, error)
	// SetEndpoints stores a node's candidates; ErrNotFound if it isn't active.
	SetEndpoints(ctx context.Context, key crypto.PublicKey, eps []wire.Endpoint, nat *wire.NATInfo) error
	// SetAdvertisedRoutes stores the routes an active node advertises and
	// approves at once those newly advertised that auto allows for its
	// tags (nil: none); ErrNotFound if it isn't active.
	SetAdvertisedRoutes(ctx context.Context, key crypto.PublicKey, routes []netip.Prefix, auto AutoApprover, now time.Time) (Node, error)
	// UpdateRoutes approves, then withdraws the approval of, routes of the
	// active node of that name and returns it: ErrNotFound if there is no
	// such node, ErrRouteUnknown for an approval of a route it does not
	// advertise or a withdrawal of one it neither advertises nor has
	// approved.
	UpdateRoutes(ctx context.Context, name string, approve, reject []netip.Prefix, now time.Time) (Node, error)
	// SetLastSeen records presence; a removed or unknown key is ignored.
	SetLastSeen(ctx context.Context, key crypto.PublicKey, t time.Time) error

	// WritePresence records, in one transaction, that coordinator holds
	// the streams of here, in place of where they were, and no longer
	// those of gone (presence another one recorded since stays).
	WritePresence(ctx context.Context, coordinator string, here []Presence, gone []crypto.PublicKey) error
	// Presence is where key is connected at now (ok false: nowhere, or
	// at a coordinator whose lease ended); Online lists every node's.
	Presence(ctx context.Context, key crypto.PublicKey, now time.Time) (p Presence, ok bool, err error)
	Online(ctx context.Context, now time.Time) ([]Presence, error)
	// RenewLease extends l's lease to until, with its URL and pin;
	// renewed is false when it had none (it lapsed, and its presence was
	// expired) or it had run out.
	RenewLease(ctx context.Context, l Lease, until time.Time) (renewed bool, err error)
	// LiveCoordinators lists the coordinators with a public URL whose
	// lease runs at now, by URL.
	LiveCoordinators(ctx context.Context, now time.Time) ([]Lease, error)
	// ExpireLeases ends the leases that ran out before now, with the
	// presence they held, and EndLease coordinator's (its goodbye); both
	// return the nodes that went offline.
	ExpireLeases(ctx context.Context, now time.Time) ([]crypto.PublicKey, error)
	EndLease(ctx context.Context, coordinator string) ([]crypto.PublicKey, error)
	// ExpireUnlocked ends, as ExpireLeases, the leases running no later
	// than until whose coordinator died: on PostgreSQL its lease lock is
	// free (pglock.go), of those running steady past the start of this
	// store's own lock session.
	// SQLite has one coordinator: none.
	ExpireUnlocked(ctx context.Context, until time.Time, steady time.Duration) ([]crypto.PublicKey, error)
	// AdvertiseRelay records the UDP relay r.Coordinator offers the mesh,
	// with its lease (ErrNotFound without one: it lapsed), and Relays
	// lists those of the coordinators whose lease runs at now, the one
	// up longest first (relays.go).
	AdvertiseRelay(ctx context.Context, r CoordinatorRelay) error
	Relays(ctx context.Context, now time.Time) ([]CoordinatorRelay, error)
	// SuspendRelay records a relay node's suspension, announced with
	// ChangeRelaySuspension, unless one that ends later is recorded;
	// RelaySuspensions lists those that run at now.
	SuspendRelay(ctx context.Context, r RelaySuspension) error
	RelaySuspensions(ctx context.Context, now time.Time) ([]RelaySuspension, error)
	// ReportRelay records a report naming a peer, dropping those older
	// than before; RelayReported reports whether one recorded at or
	// after since says what r says.
	ReportRelay(ctx context.Context, r RelayReport, before time.Time) error
	RelayReported(ctx context.Context, r RelayReport, since time.Time) (bool, error)

	// SetPolicy stores text as the newest version of the access policy
	// ("" removes the policy) and returns it with its version, one above
	// the newest before.
	SetPolicy(ctx context.Context, text string, now time.Time) (PolicyVersion, error)
	// Policy returns a version of the access policy, the newest for 0;
	// ErrNotFound when there is no such version (none was ever set).
	Policy(ctx context.Context, version uint64) (PolicyVersion, error)

	// SetSoftware records what an active node reports running;
	// ErrNotFound if it isn't active. Software lists it for every active
	// node that reported one.
	SetSoftware(ctx context.Context, key crypto.PublicKey, sw wire.Software) error
	Software(ctx context.Context) (map[crypto.PublicKey]wire.Software, error)

	// WritePaths records, in one transaction, coordinator's path reports
	// (each replacing the node's last), drops those of gone that it
	// recorded, and adds changes, keeping the latest MaxPathChanges.
	WritePaths(ctx context.Context, coordinator string, reports []PathReport, gone []crypto.PublicKey, changes []PathChange) error
	// Paths returns every recorded path report, and the latest path
	// changes, oldest first.
	Paths(ctx context.Context) ([]PathReport, []PathChange, error)

	// Setting reads a named value; ErrNotFound if it was never set.
	Setting(ctx context.Context, name string) (string, error)
	// SetSetting writes a named value.
	SetSetting(ctx context.Context, name, value string) error
	// InitSetting writes a named value unless it is set, and returns the
	// value it has then: of coordinators starting together on one
	// database, the first to write wins and all read the same.
	InitSetting(ctx context.Context, name, value string) (string, error)

	// WriteTransactions is how many write transactions were begun since
	// Open: single statements, and transactions that each held the
	// database's write lock from their start to their end.
	WriteTransactions() uint64

	// Cue asks coordinator to cue to, which streams to it, to punch
	// towards about now: a ChangeCue through Watch, not stored.
	Cue(ctx context.Context, coordinator string, to, about crypto.PublicKey) error

	// Watch delivers every change committed after it returns, by this
	// store and, on PostgreSQL, by every other store on the same
	// database (another coordinator's), until ctx ends or the store
	// closes; then the channel is closed. A ChangeResync stands for
	// changes that may have been missed. On SQLite only this store's own
	// changes come: one coordinator owns the file.
	Watch(ctx context.Context) <-chan Change

	// Close ends the watches and closes the database.
	Close() error
}

// Errors callers tell apart with errors.Is.
var (
	ErrNotFound      = errors.New("not found")
	ErrRemoved       = errors.New("node was removed")
	ErrBanned        = errors.New("node key is banned")
	ErrAmbiguous     = errors.New("ambiguous")
	ErrNameTaken     = errors.New("name taken")
	ErrTokenUnknown  = errors.New("join token unknown")
	ErrTokenExpired  = errors.New("join token expired")
	ErrTokenUsed     = errors.New("join token already used")
	ErrTokenRevoked  = errors.New("join token revoked")
	ErrPoolExhausted = errors.New("overlay address pool exhausted")
	ErrRouteUnknown  = errors.New("route not advertised")
)

// Token is a stored join token. Only the secret's hash is kept.
type Token struct {
	ID         string
	SecretHash string
	Reusable   bool
	Tags       []string
	Uses       int
	Created    time.Time
	Expires    time.Time
	Revoked    time.Time // zero while the token is valid
}

// Node is a registered node as stored.
type Node struct {
	Key       crypto.PublicKey
	Name      string
	IPv4      netip.Addr
	IPv6      netip.Addr
	Tags      []string
	Endpoints []wire.Endpoint
	NAT       *wire.NATInfo
	TokenID   string // the token of its latest registration
	Created   time.Time
	LastSeen  time.Time // zero until its first stream
	// Advertised are the routes it advertises, as it last reported them.
	Advertised []netip.Prefix
	// Approved are the routes the administrator approved (or a tag
	// approved by the coordinator's auto_approve_routes), first approved
	// first. Approval outlives the advertisement: a node that advertises
	// an approved route again serves it at once.
	Approved []ApprovedRoute
}

// ApprovedRoute is one approval of a node's route.
type ApprovedRoute struct {
	Prefix netip.Prefix
	Since  time.Time
}

// Serves is what the node serves: the routes it advertises that are
// approved, sorted (wire.SortRoutes).
func (n Node) Serves() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range n.Approved {
		if slices.Contains(n.Advertised, a.Prefix) {
			out = append(out, a.Prefix)
		}
	}
	wire.SortRoutes(out)
	return out
}

// ApprovedSince is when p was approved for n; ok is false if it is not.
func (n Node) ApprovedSince(p netip.Prefix) (since time.Time, ok bool) {
	for _, a := range n.Approved {
		if a.Prefix == p {
			return a.Since, true
		}
	}
	return time.Time{}, false
}

// AutoApprover says whether a route advertised by a node with tags is
// approved without the administrator (the coordinator's
// auto_approve_routes).
type AutoApprover func(tags []string, p netip.Prefix) bool

// advertise applies a node's newly reported routes to n: they replace
// its advertised ones, and those that are new and auto allows are
// approved at now.
func (n *Node) advertise(routes []netip.Prefix, auto AutoApprover, now time.Time) {
	for _, p := range routes {
		if slices.Contains(n.Advertised, p) || auto == nil || !auto(n.Tags, p) {
			continue
		}
		if _, ok := n.ApprovedSince(p); !ok {
			n.Approved = append(n.Approved, ApprovedRoute{Prefix: p, Since: now})
		}
	}
	n.Advertised = slices.Clone(routes)
	wire.SortRoutes(n.Advertised)
}

// updateRoutes approves, then withdraws approvals, as UpdateRoutes does.
func (n *Node) updateRoutes(approve, reject []netip.Prefix, now time.Time) error {
	var errs []error
	for _, p := range approve {
		if !slices.Contains(n.Advertised, p) {
			errs = append(errs, fmt.Errorf("node %q does not advertise %s (it advertises %s): %w", n.Name, p, routeList(n.Advertised), ErrRouteUnknown))
			continue
		}
		if _, ok := n.ApprovedSince(p); !ok {
			n.Approved = append(n.Approved, ApprovedRoute{Prefix: p, Since: now})
		}
	}
	for _, p := range reject {
		_, approved := n.ApprovedSince(p)
		if !approved && !slices.Contains(n.Advertised, p) {
			errs = append(errs, fmt.Errorf("node %q neither advertises nor has approved %s: %w", n.Name, p, ErrRouteUnknown))
		}
		n.Approved = slices.DeleteFunc(n.Approved, func(a ApprovedRoute) bool { return a.Prefix == p })
	}
	return errors.Join(errs...)
}

func routeList(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "none"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// Ban keeps a removed node's key from registering again until the
// administrator allows it.
type Ban struct {
	Key   crypto.PublicKey
	Name  string // the node's name when it was removed; "" for bans older than schema version 2
	Since time.Time
}

// PolicyVersion is one stored version of the access policy.
type PolicyVersion struct {
	Version uint64
	Text    string // the policy file as written; "" removed the policy
	Created time.Time
}

// Registration is what Register needs.
type Registration struct {
	TokenID string
	Secret  string
	Key     crypto.PublicKey
	Name    string // a DNS label; Register adds a suffix when it is taken
	Pool    Pool
	Now     time.Time
}

// CheckToken applies the token rules in the order a user can act on:
// unknown (or a wrong secret, so that IDs cannot be probed), revoked,
// expired, used. retry is true when the presenting node is the one that
// already used this token: a node whose first answer was lost may register
// again with the same single-use token and gets the same addresses.
func CheckToken(t Token, secret string, now time.Time, retry bool) error {
	switch {
	case !crypto.SecretMatches(secret, t.SecretHash):
		return ErrTokenUnknown
	case !t.Revoked.IsZero():
		return ErrTokenRevoked
	case !now.Before(t.Expires):
		return ErrTokenExpired
	case !t.Reusable && t.Uses > 0 && !retry:
		return ErrTokenUsed
	}
	return nil
}
