package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

const nodeColumns = `public_key, name, ipv4, ipv6, tags, endpoints, nat, token_id, created_at, last_seen, removed_at, advertised_routes, approved_routes`

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Register checks the token and registers the node in one transaction.
func (s *sqlDB) Register(ctx context.Context, r Registration) (Node, error) {
	n, err := retry(ctx, s, func() (Node, error) { return s.register(ctx, r) })
	if err != nil {
		return Node{}, fmt.Errorf("register %s: %w", r.Key.Short(), err)
	}
	return n, nil
}

// CheckRegistration applies Register's checks on the read pool.
func (s *sqlDB) CheckRegistration(ctx context.Context, r Registration) error {
	if err := retryErr(ctx, s, func() error { _, err := s.admit(ctx, s.r, r); return err }); err != nil {
		return fmt.Errorf("register %s: %w", r.Key.Short(), err)
	}
	return nil
}

// admission is what a registration's checks found.
type admission struct {
	tok    Token
	old    Node // the key's record, if it has one
	found  bool // the key has a record: active, or a removed node's
	active bool
	retry  bool // the key's active record used this token last
}

// admit applies a registration's checks on q: the key's ban first
// (however valid its token, a removed key stays out), then the token's
// rules (CheckToken).
func (s *sqlDB) admit(ctx context.Context, q querier, r Registration) (admission, error) {
	if err := s.checkBan(ctx, q, r.Key); err != nil {
		return admission{}, err
	}
	tok, err := scanToken(q.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = $1`, r.TokenID))
	if errors.Is(err, sql.ErrNoRows) {
		return admission{}, ErrTokenUnknown
	}
	if err != nil {
		return admission{}, fmt.Errorf("database %s: read token: %w", s.name, err)
	}
	old, removed, err := s.node(ctx, q, r.Key)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return admission{}, err
	}
	a := admission{tok: tok, old: old, found: err == nil}
	a.active = a.found && !removed
	a.retry = a.active && old.TokenID == tok.ID
	if err := CheckToken(tok, r.Secret, r.Now, a.retry); err != nil {
		return admission{}, err
	}
	return a, nil
}

func (s *sqlDB) register(ctx context.Context, r Registration) (Node, error) {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return Node{}, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	// Checked again under the write lock: CheckRegistration's pass was
	// read beside other writers.
	a, err := s.admit(ctx, tx, r)
	if err != nil {
		return Node{}, err
	}
	var n Node
	if a.active {
		// The same key keeps its name and addresses; the token's tags are added.
		n = a.old
		n.Tags = union(a.old.Tags, a.tok.Tags)
		n.TokenID = a.tok.ID
		tags, _ := json.Marshal(nonNil(n.Tags))
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET tags = $1, token_id = $2 WHERE public_key = $3`,
			string(tags), a.tok.ID, r.Key.String()); err != nil {
			return Node{}, fmt.Errorf("database %s: update node: %w", s.name, err)
		}
	} else {
		if n, err = s.insertNode(ctx, tx, r, a.tok, a.found); err != nil {
			return Node{}, err
		}
	}
	if !a.retry {
		// The condition makes the consumption atomic on its own, even in a
		// database that doesn't serialise the read above (PostgreSQL's READ
		// COMMITTED).
		res, err := tx.ExecContext(ctx, `UPDATE tokens SET uses = uses + 1 WHERE id = $1 AND (reusable = 1 OR uses = 0)`, a.tok.ID)
		if err != nil {
			return Node{}, fmt.Errorf("database %s: consume token: %w", s.name, err)
		}
		if k, err := res.RowsAffected(); err != nil || k != 1 {
			return Node{}, ErrTokenUsed
		}
	}
	if err := s.commit(ctx, tx, Change{Kind: ChangeNode, Key: r.Key}); err != nil {
		return Node{}, err
	}
	return n, nil
}

// insertNode gives a new (or previously removed) key a unique name and the
// lowest free addresses, inside the registration's transaction.
func (s *sqlDB) insertNode(ctx context.Context, tx *sql.Tx, r Registration, tok Token, tombstone bool) (Node, error) {
	name, err := s.uniqueName(ctx, tx, r.Name)
	if err != nil {
		return Node{}, err
	}
	idx, err := s.allocate(ctx, tx, r.Pool)
	if err != nil {
		return Node{}, err
	}
	v4, v6 := r.Pool.Addrs(idx)
	n := Node{Key: r.Key, Name: name, IPv4: v4, IPv6: v6, Tags: nonNil(tok.Tags), TokenID: tok.ID, Created: r.Now}
	tags, _ := json.Marshal(n.Tags)
	q := `INSERT INTO nodes (name, host_index, ipv4, ipv6, tags, endpoints, nat, token_id, created_at, last_seen, removed_at, public_key)
		VALUES ($1, $2, $3, $4, $5, '[]', NULL, $6, $7, NULL, NULL, $8)`
	if tombstone {
		q = `UPDATE nodes SET name = $1, host_index = $2, ipv4 = $3, ipv6 = $4, tags = $5, endpoints = '[]', nat = NULL,
			token_id = $6, created_at = $7, last_seen = NULL, removed_at = NULL, advertised_routes = '[]', approved_routes = '[]'
			WHERE public_key = $8`
	}
	if _, err := tx.ExecContext(ctx, q, name, int64(idx), v4.String(), v6.String(), string(tags), tok.ID,
		r.Now.UnixMilli(), r.Key.String()); err != nil {
		return Node{}, fmt.Errorf("database %s: insert node: %w", s.name, err)
	}
	return n, nil
}

// uniqueName returns base or the first free base-N. The loop ends: among
// k+1 candidates at most k names (one per node) can be taken. The count
// that bounds it is read only when base is taken: it reads every node.
func (s *sqlDB) uniqueName(ctx context.Context, tx *sql.Tx, base string) (string, error) {
	taken := func(name string) (bool, error) {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM nodes WHERE name = $1`, name).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("database %s: check name %s: %w", s.name, name, err)
		}
		return true, nil
	}
	switch t, err := taken(base); {
	case err != nil:
		return "", err
	case !t:
		return base, nil
	}
	var count int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM nodes WHERE name IS NOT NULL`).Scan(&count); err != nil {
		return "", fmt.Errorf("database %s: count names: %w", s.name, err)
	}
	for i := 2; i <= count+1; i++ {
		name := Suffixed(base, i)
		switch t, err := taken(name); {
		case err != nil:
			return "", err
		case !t:
			return name, nil
		}
	}
	return "", fmt.Errorf("database %s: no free name for %q", s.name, base)
}

// allocate returns the lowest free host index in p: from one aggregate
// when the used ones are dense (Pool.AfterDense), else from all of them.
func (s *sqlDB) allocate(ctx context.Context, tx *sql.Tx, p Pool) (uint64, error) {
	var count, hi int64
	if err := tx.QueryRowContext(ctx, `SELECT count(host_index), coalesce(max(host_index), 0) FROM nodes`).Scan(&count, &hi); err != nil {
		return 0, fmt.Errorf("database %s: read addresses: %w", s.name, err)
	}
	if i, ok := p.AfterDense(uint64(count), uint64(hi)); ok {
		return i, nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT host_index FROM nodes WHERE host_index IS NOT NULL ORDER BY host_index`)
	if err != nil {
		return 0, fmt.Errorf("database %s: read addresses: %w", s.name, err)
	}
	defer rows.Close()
	var used []uint64
	for rows.Next() {
		var i int64
		if err := rows.Scan(&i); err != nil {
			return 0, fmt.Errorf("database %s: read addresses: %w", s.name, err)
		}
		used = append(used, uint64(i))
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("database %s: read addresses: %w", s.name, err)
	}
	return p.LowestFree(used)
}

// Node returns an active node.
func (s *sqlDB) Node(ctx context.Context, key crypto.PublicKey) (Node, error) {
	var removed bool
	n, err := retry(ctx, s, func() (n Node, err error) {
		n, removed, err = s.node(ctx, s.r, key)
		return n, err
	})
	if err != nil {
		return Node{}, err
	}
	if removed {
		return Node{}, fmt.Errorf("node %s: %w", key.Short(), ErrRemoved)
	}
	return n, nil
}

func (s *sqlDB) node(ctx context.Context, q querier, key crypto.PublicKey) (Node, bool, error) {
	n, removed, err := scanNode(q.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE public_key = $1`, key.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, false, fmt.Errorf("node %s: %w", key.Short(), ErrNotFound)
	}
	if err != nil {
		return Node{}, false, fmt.Errorf("database %s: read node %s: %w", s.name, key.Short(), err)
	}
	return n, removed, nil
}

// Nodes lists the active nodes by name. They are sorted here, byte by
// byte: PostgreSQL's ORDER BY follows the database's collation, which
// differs between clusters and from SQLite's.
func (s *sqlDB) Nodes(ctx context.Context) ([]Node, error) {
	return retry(ctx, s, func() ([]Node, error) { return s.nodes(ctx) })
}

func (s *sqlDB) nodes(ctx context.Context) ([]Node, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE removed_at IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("database %s: list nodes: %w", s.name, err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		n, _, err := scanNode(rows)
		if err != nil {
			return nil, fmt.Errorf("database %s: list nodes: %w", s.name, err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("database %s: list nodes: %w", s.name, err)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// RemoveNode turns the node into a tombstone: its key is remembered (so its
// stream is refused with node_removed) and banned (so it can't register
// again, whatever token it holds), while its name and addresses are freed.
func (s *sqlDB) RemoveNode(ctx context.Context, name string, now time.Time) (Node, error) {
	return s.updateActive(ctx, name, func(tx *sql.Tx, n *Node) error {
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET removed_at = $1, name = NULL, host_index = NULL, ipv4 = NULL, ipv6 = NULL,
		endpoints = '[]', nat = NULL, advertised_routes = '[]', approved_routes = '[]' WHERE public_key = $2`, now.UnixMilli(), n.Key.String()); err != nil {
			return fmt.Errorf("database %s: remove node %q: %w", s.name, name, err)
		}
		// INSERT … ON CONFLICT is the same in SQLite and PostgreSQL; a key
		// allowed back and removed again is banned anew.
		if _, err := tx.ExecContext(ctx, `INSERT INTO banned_keys (public_key, name, banned_at) VALUES ($1, $2, $3)
		ON CONFLICT (public_key) DO UPDATE SET name = excluded.name, banned_at = excluded.banned_at`,
			n.Key.String(), n.Name, now.UnixMilli()); err != nil {
			return fmt.Errorf("database %s: ban key of node %q: %w", s.name, name, err)
		}
		return nil
	})
}

// updateActive reads the active node named name and applies edit to it
// in one write transaction, which commits when edit succeeds; again, from
// the start, if the connection was lost.
func (s *sqlDB) updateActive(ctx context.Context, name string, edit func(tx *sql.Tx, n *Node) error) (Node, error) {
	return retry(ctx, s, func() (Node, error) { return s.updateActiveOnce(ctx, name, edit) })
}

func (s *sqlDB) updateActiveOnce(ctx context.Context, name string, edit func(tx *sql.Tx, n *Node) error) (Node, error) {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return Node{}, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	n, err := s.activeNode(ctx, tx, name)
	if err != nil {
		return Node{}, err
	}
	if err := edit(tx, &n); err != nil {
		return Node{}, err
	}
	if err := s.commit(ctx, tx, Change{Kind: ChangeNode, Key: n.Key}); err != nil {
		return Node{}, err
	}
	return n, nil
}

// activeNode reads the node named name, not removed, inside tx.
func (s *sqlDB) activeNode(ctx context.Context, tx *sql.Tx, name string) (Node, error) {
	n, _, err := scanNode(tx.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE name = $1 AND removed_at IS NULL`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, fmt.Errorf("node %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Node{}, fmt.Errorf("database %s: read node %q: %w", s.name, name, err)
	}
	return n, nil
}

// UpdateTags adds and then removes tags of an active node.
func (s *sqlDB) UpdateTags(ctx context.Context, name string, add, remove []string) (Node, error) {
	return s.updateActive(ctx, name, func(tx *sql.Tx, n *Node) error {
		n.Tags = slices.DeleteFunc(union(n.Tags, add), func(t string) bool { return slices.Contains(remove, t) })
		tags, _ := json.Marshal(nonNil(n.Tags))
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET tags = $1 WHERE public_key = $2`, string(tags), n.Key.String()); err != nil {
			return fmt.Errorf("database %s: tag node %q: %w", s.name, name, err)
		}
		return nil
	})
}

// RenameNode renames an active node. Names are unique among active nodes
// (removed ones hold none), so the new one must be free.
func (s *sqlDB) RenameNode(ctx context.Context, name, newName string) (Node, error) {
	return s.updateActive(ctx, name, func(tx *sql.Tx, n *Node) error {
		if newName == name {
			return nil
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM nodes WHERE name = $1`, newName).Scan(&one)
		switch {
		case err == nil:
			return fmt.Errorf("node %q: %w", newName, ErrNameTaken)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("database %s: check name %s: %w", s.name, newName, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET name = $1 WHERE public_key = $2`, newName, n.Key.String()); err != nil {
			return fmt.Errorf("database %s: rename node %q: %w", s.name, name, err)
		}
		n.Name = newName
		return nil
	})
}

// SetEndpoints stores a node's candidates.
func (s *sqlDB) SetEndpoints(ctx context.Context, key crypto.PublicKey, eps []wire.Endpoint, nat *wire.NATInfo) error {
	e, err := json.Marshal(nonNil(eps))
	if err != nil {
		return fmt.Errorf("encode endpoints: %w", err)
	}
	var natJSON sql.NullString
	if nat != nil {
		b, err := json.Marshal(nat)
		if err != nil {
			return fmt.Errorf("encode nat: %w", err)
		}
		natJSON = sql.NullString{String: string(b), Valid: true}
	}
	res, err := s.execWrite(ctx, Change{Kind: ChangeEndpoints, Key: key}, `UPDATE nodes SET endpoints = $1, nat = $2 WHERE public_key = $3 AND removed_at IS NULL`,
		string(e), natJSON, key.String())
	if err != nil {
		return fmt.Errorf("database %s: store endpoints of %s: %w", s.name, key.Short(), err)
	}
	if k, err := res.RowsAffected(); err != nil || k == 0 {
		return fmt.Errorf("node %s: %w", key.Short(), ErrNotFound)
	}
	return nil
}

// SetLastSeen records presence.
func (s *sqlDB) SetLastSeen(ctx context.Context, key crypto.PublicKey, t time.Time) error {
	if _, err := s.execWrite(ctx, Change{Kind: ChangePresence, Key: key}, `UPDATE nodes SET last_seen = $1 WHERE public_key = $2 AND removed_at IS NULL`,
		t.UnixMilli(), key.String()); err != nil {
		return fmt.Errorf("database %s: store last seen of %s: %w", s.name, key.Short(), err)
	}
	return nil
}

func scanNode(sc scanner) (Node, bool, error) {
	var (
		n                          Node
		key, tags, eps             string
		advertised, approved       string
		name, v4, v6, nat, tokenID sql.NullString
		created                    int64
		lastSeen, removed          sql.NullInt64
	)
	if err := sc.Scan(&key, &name, &v4, &v6, &tags, &eps, &nat, &tokenID, &created, &lastSeen, &removed, &advertised, &approved); err != nil {
		return n, false, err
	}
	var err error
	if n.Key, err = crypto.ParsePublicKey(key); err != nil {
		return n, false, err
	}
	n.Name, n.TokenID = name.String, tokenID.String
	if v4.Valid {
		if n.IPv4, err = netip.ParseAddr(v4.String); err != nil {
			return n, false, fmt.Errorf("node %s: ipv4: %w", n.Key.Short(), err)
		}
	}
	if v6.Valid {
		if n.IPv6, err = netip.ParseAddr(v6.String); err != nil {
			return n, false, fmt.Errorf("node %s: ipv6: %w", n.Key.Short(), err)
		}
	}
	if err := json.Unmarshal([]byte(tags), &n.Tags); err != nil {
		return n, false, fmt.Errorf("node %s: tags: %w", n.Key.Short(), err)
	}
	if err := json.Unmarshal([]byte(eps), &n.Endpoints); err != nil {
		return n, false, fmt.Errorf("node %s: endpoints: %w", n.Key.Short(), err)
	}
	if nat.Valid {
		n.NAT = new(wire.NATInfo)
		if err := json.Unmarshal([]byte(nat.String), n.NAT); err != nil {
			return n, false, fmt.Errorf("node %s: nat: %w", n.Key.Short(), err)
		}
	}
	if err := decodeRoutes(&n, advertised, approved); err != nil {
		return n, false, fmt.Errorf("node %s: %w", n.Key.Short(), err)
	}
	n.Created = time.UnixMilli(created)
	n.LastSeen = fromNull(lastSeen)
	return n, removed.Valid, nil
}

// union returns a followed by the elements of b not in a.
func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
