package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// Several coordinators on one database serve one web page: each records
// the path reports of the nodes whose streams it holds, with what they
// run, and its share of the recent path changes, and each page reads them
// all. Only coordinators on a shared database write them (one coordinator
// keeps them in memory).

// PathReport is a node's latest path report, as the coordinator holding
// its stream recorded it.
type PathReport struct {
	Key         crypto.PublicKey
	Coordinator string
	At          time.Time
	// Relay is the relay node of the entries through one; nil: none.
	Relay    *crypto.PublicKey
	Entries  []wire.PathEntry
	Software wire.Software
}

// PathChange is a node's path to a peer changing kind between two of its
// reports.
type PathChange struct {
	At         time.Time
	From, Peer crypto.PublicKey
	Was, Now   wire.PathKind
}

// MaxPathChanges is how many of the latest path changes are kept: the web
// page's history, a few per node of a mesh of a hundred.
const MaxPathChanges = 512

// pathReportRow is a report's JSON in its row: the entries packed as on
// the wire (wire.AppendPathReport).
type pathReportRow struct {
	Paths    []byte        `json:"paths"`
	Relay    string        `json:"relay,omitempty"`
	Software wire.Software `json:"software"`
}

// WritePaths records, in one transaction, coordinator's reports (each
// replacing the node's last), drops those of gone that it recorded, and
// adds changes, keeping the latest MaxPathChanges.
func (s *sqlDB) WritePaths(ctx context.Context, coordinator string, reports []PathReport, gone []crypto.PublicKey, changes []PathChange) error {
	s.writes.Add(1)
	tx, err := s.w.BeginTx(ctx, s.txOpts)
	if err != nil {
		return fmt.Errorf("database %s: begin: %w", s.name, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	for _, r := range reports {
		row := pathReportRow{Paths: wire.AppendPathReport(nil, r.Entries), Software: r.Software}
		if r.Relay != nil {
			row.Relay = r.Relay.String()
		}
		b, err := json.Marshal(row)
		if err != nil {
			return fmt.Errorf("path report of %s: %w", r.Key.Short(), err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO path_reports (public_key, coordinator, reported_at, report) VALUES ($1, $2, $3, $4)
			ON CONFLICT (public_key) DO UPDATE SET coordinator = excluded.coordinator, reported_at = excluded.reported_at, report = excluded.report`,
			r.Key.String(), coordinator, r.At.UnixMilli(), string(b)); err != nil {
			return fmt.Errorf("database %s: store the path report of %s: %w", s.name, r.Key.Short(), err)
		}
	}
	for _, key := range gone {
		if _, err := tx.ExecContext(ctx, `DELETE FROM path_reports WHERE public_key = $1 AND coordinator = $2`, key.String(), coordinator); err != nil {
			return fmt.Errorf("database %s: drop the path report of %s: %w", s.name, key.Short(), err)
		}
	}
	for _, c := range changes {
		if _, err := tx.ExecContext(ctx, `INSERT INTO path_changes (at, from_key, peer_key, was, now) VALUES ($1, $2, $3, $4, $5)`,
			c.At.UnixMilli(), c.From.String(), c.Peer.String(), int64(c.Was), int64(c.Now)); err != nil {
			return fmt.Errorf("database %s: store a path change of %s: %w", s.name, c.From.Short(), err)
		}
	}
	if len(changes) > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM path_changes WHERE at < (SELECT at FROM path_changes ORDER BY at DESC LIMIT 1 OFFSET $1)`, MaxPathChanges-1); err != nil {
			return fmt.Errorf("database %s: drop old path changes: %w", s.name, err)
		}
	}
	return s.commit(ctx, tx)
}

// Paths returns every recorded path report, and the latest path changes,
// oldest first.
func (s *sqlDB) Paths(ctx context.Context) ([]PathReport, []PathChange, error) {
	reports, err := s.pathReports(ctx)
	if err != nil {
		return nil, nil, err
	}
	changes, err := s.pathChanges(ctx)
	if err != nil {
		return nil, nil, err
	}
	return reports, changes, nil
}

func (s *sqlDB) pathReports(ctx context.Context) ([]PathReport, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT public_key, coordinator, reported_at, report FROM path_reports`)
	if err != nil {
		return nil, fmt.Errorf("database %s: list path reports: %w", s.name, err)
	}
	defer rows.Close()
	var out []PathReport
	for rows.Next() {
		var (
			r           PathReport
			key, report string
			at          int64
		)
		if err := rows.Scan(&key, &r.Coordinator, &at, &report); err != nil {
			return nil, fmt.Errorf("database %s: list path reports: %w", s.name, err)
		}
		if r.Key, err = crypto.ParsePublicKey(key); err != nil {
			return nil, fmt.Errorf("database %s: path report key %q: %w", s.name, key, err)
		}
		var row pathReportRow
		if err := json.Unmarshal([]byte(report), &row); err != nil {
			return nil, fmt.Errorf("database %s: path report of %s: %w", s.name, r.Key.Short(), err)
		}
		if r.Entries, err = wire.ParsePathReport(row.Paths); err != nil {
			return nil, fmt.Errorf("database %s: path report of %s: %w", s.name, r.Key.Short(), err)
		}
		if row.Relay != "" {
			relay, err := crypto.ParsePublicKey(row.Relay)
			if err != nil {
				return nil, fmt.Errorf("database %s: path report of %s: relay %q: %w", s.name, r.Key.Short(), row.Relay, err)
			}
			r.Relay = &relay
		}
		r.At, r.Software = time.UnixMilli(at), row.Software
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("database %s: list path reports: %w", s.name, err)
	}
	return out, nil
}

func (s *sqlDB) pathChanges(ctx context.Context) ([]PathChange, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT at, from_key, peer_key, was, now FROM path_changes ORDER BY at, from_key, peer_key`)
	if err != nil {
		return nil, fmt.Errorf("database %s: list path changes: %w", s.name, err)
	}
	defer rows.Close()
	var out []PathChange
	for rows.Next() {
		var (
			c          PathChange
			from, peer string
			at         int64
			was, now   int64
		)
		if err := rows.Scan(&at, &from, &peer, &was, &now); err != nil {
			return nil, fmt.Errorf("database %s: list path changes: %w", s.name, err)
		}
		if c.From, err = crypto.ParsePublicKey(from); err != nil {
			return nil, fmt.Errorf("database %s: path change key %q: %w", s.name, from, err)
		}
		if c.Peer, err = crypto.ParsePublicKey(peer); err != nil {
			return nil, fmt.Errorf("database %s: path change key %q: %w", s.name, peer, err)
		}
		c.At, c.Was, c.Now = time.UnixMilli(at), wire.PathKind(was), wire.PathKind(now)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("database %s: list path changes: %w", s.name, err)
	}
	return out, nil
}
