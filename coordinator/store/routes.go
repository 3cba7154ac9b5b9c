package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/crypto"
)

// storedApproval is an ApprovedRoute as the approved_routes column holds
// it: the time in Unix milliseconds, as every time in the database.
type storedApproval struct {
	Prefix     netip.Prefix `json:"prefix"`
	ApprovedAt int64        `json:"approved_at"`
}

// SetAdvertisedRoutes stores the routes a node advertises, approving the
// new ones auto allows, in one transaction. A report that changes nothing
// writes nothing.
func (s *sqlDB) SetAdvertisedRoutes(ctx context.Context, key crypto.PublicKey, routes []netip.Prefix, auto AutoApprover, now time.Time) (Node, error) {
	return s.editRoutes(ctx, func(tx *sql.Tx) (Node, error) {
		n, removed, err := s.node(ctx, tx, key)
		if err == nil && removed {
			err = fmt.Errorf("node %s: %w", key.Short(), ErrNotFound)
		}
		if err != nil {
			return Node{}, err
		}
		n.advertise(routes, auto, now)
		return n, nil
	})
}

// UpdateRoutes approves, then withdraws approvals, in one transaction.
func (s *sqlDB) UpdateRoutes(ctx context.Context, name string, approve, reject []netip.Prefix, now time.Time) (Node, error) {
	return s.editRoutes(ctx, func(tx *sql.Tx) (Node, error) {
		n, err := s.activeNode(ctx, tx, name)
		if err != nil {
			return Node{}, err
		}
		if err := n.updateRoutes(approve, reject, now); err != nil {
			return Node{}, err
		}
		return n, nil
	})
}

// editRoutes reads a node with read, inside a write transaction, and
// stores the routes read left in it, unless they are unchanged.
func (s *sqlDB) editRoutes(ctx context.Context, read func(*sql.Tx) (Node, error)) (Node, error) {
	return retry(ctx, s, func() (Node, error) { return s.editRoutesOnce(ctx, read) })
}

func (s *sqlDB) editRoutesOnce(ctx context.Context, read func(*sql.Tx) (Node, error)) (Node, error) {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return Node{}, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	n, err := read(tx)
	if err != nil {
		return Node{}, err
	}
	advertised, approved := encodeRoutes(n)
	res, err := tx.ExecContext(ctx, `UPDATE nodes SET advertised_routes = $1, approved_routes = $2
		WHERE public_key = $3 AND (advertised_routes <> $1 OR approved_routes <> $2)`, advertised, approved, n.Key.String())
	if err != nil {
		return Node{}, fmt.Errorf("database %s: store routes of %q: %w", s.name, n.Name, err)
	}
	if k, err := res.RowsAffected(); err != nil || k == 0 {
		return n, nil // unchanged: the transaction rolls back
	}
	if err := s.commit(ctx, tx, Change{Kind: ChangeNode, Key: n.Key}); err != nil {
		return Node{}, err
	}
	return n, nil
}

func encodeRoutes(n Node) (advertised, approved string) {
	a, _ := json.Marshal(nonNil(n.Advertised))
	list := make([]storedApproval, 0, len(n.Approved))
	for _, r := range n.Approved {
		list = append(list, storedApproval{Prefix: r.Prefix, ApprovedAt: r.Since.UnixMilli()})
	}
	b, _ := json.Marshal(list)
	return string(a), string(b)
}

func decodeRoutes(n *Node, advertised, approved string) error {
	if err := json.Unmarshal([]byte(advertised), &n.Advertised); err != nil {
		return fmt.Errorf("advertised routes: %w", err)
	}
	var list []storedApproval
	if err := json.Unmarshal([]byte(approved), &list); err != nil {
		return fmt.Errorf("approved routes: %w", err)
	}
	n.Approved = nil
	for _, r := range list {
		n.Approved = append(n.Approved, ApprovedRoute{Prefix: r.Prefix, Since: time.UnixMilli(r.ApprovedAt)})
	}
	return nil
}
