package store

import (
	"context"
	"fmt"
	"time"

	"github.com/meshnode/meshnode/crypto"
)

// CoordinatorRelay is the UDP relay a running coordinator offers every
// node of the mesh, whichever coordinator the node streams to: the key it
// proves bindings with (the coordinator's static key) and its addresses,
// host:port as a node dials them ("" for none); and the coordinator's
// HTTPS URL and certificate pin, for its TCP relay, which Relays reads
// from its lease (RenewLease records them; AdvertiseRelay does not).
type CoordinatorRelay struct {
	Coordinator string
	Key         crypto.PublicKey
	Addr        string
	Addr6       string
	URL         string
	Pin         string
}

// AdvertiseRelay records r with r.Coordinator's lease.
func (s *sqlDB) AdvertiseRelay(ctx context.Context, r CoordinatorRelay) error {
	res, err := s.execWrite(ctx, Change{}, `UPDATE coordinators SET relay_key = $1, relay = $2, relay6 = $3 WHERE id = $4`,
		r.Key.String(), r.Addr, r.Addr6, r.Coordinator)
	if err != nil {
		return fmt.Errorf("database %s: record the relay of coordinator %s: %w", s.name, r.Coordinator, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("database %s: record the relay of coordinator %s: it holds no lease: %w", s.name, r.Coordinator, ErrNotFound)
	}
	return nil
}

// Relays lists the relays of the coordinators whose lease runs at now,
// the one that took its lease first first, the key breaking ties: every
// coordinator reading the table sees the same order.
func (s *sqlDB) Relays(ctx context.Context, now time.Time) ([]CoordinatorRelay, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, relay_key, relay, relay6, url, pin FROM coordinators
		WHERE lease_until >= $1 AND relay_key <> '' AND (relay <> '' OR relay6 <> '')
		ORDER BY started, relay_key`, now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("database %s: list the coordinators' relays: %w", s.name, err)
	}
	defer rows.Close()
	var out []CoordinatorRelay
	for rows.Next() {
		var r CoordinatorRelay
		var key string
		if err := rows.Scan(&r.Coordinator, &key, &r.Addr, &r.Addr6, &r.URL, &r.Pin); err != nil {
			return nil, fmt.Errorf("database %s: list the coordinators' relays: %w", s.name, err)
		}
		if r.Key, err = crypto.ParsePublicKey(key); err != nil {
			return nil, fmt.Errorf("database %s: relay of coordinator %s: key %q: %w", s.name, r.Coordinator, key, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("database %s: list the coordinators' relays: %w", s.name, err)
	}
	return out, nil
}

// RelaySuspension is a relay node's suspension: nobody is offered it
// before Until; Strikes is the how-manieth suspension in a row it is.
type RelaySuspension struct {
	Relay   crypto.PublicKey
	Until   time.Time
	Strikes int
}

// SuspendRelay records r unless a suspension of the relay that ends
// later is recorded, and announces it.
func (s *sqlDB) SuspendRelay(ctx context.Context, r RelaySuspension) error {
	if _, err := s.execWrite(ctx, Change{Kind: ChangeRelaySuspension, Key: r.Relay}, `INSERT INTO relay_suspensions (relay, until, strikes) VALUES ($1, $2, $3)
		ON CONFLICT (relay) DO UPDATE SET until = excluded.until, strikes = excluded.strikes WHERE relay_suspensions.until < excluded.until`,
		r.Relay.String(), r.Until.UnixMilli(), r.Strikes); err != nil {
		return fmt.Errorf("database %s: record the suspension of relay %s: %w", s.name, r.Relay.Short(), err)
	}
	return nil
}

// RelaySuspensions lists the suspensions that run at now.
func (s *sqlDB) RelaySuspensions(ctx context.Context, now time.Time) ([]RelaySuspension, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT relay, until, strikes FROM relay_suspensions WHERE until > $1`, now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("database %s: list relay suspensions: %w", s.name, err)
	}
	defer rows.Close()
	var out []RelaySuspension
	for rows.Next() {
		var (
			r     RelaySuspension
			key   string
			until int64
		)
		if err := rows.Scan(&key, &until, &r.Strikes); err != nil {
			return nil, fmt.Errorf("database %s: list relay suspensions: %w", s.name, err)
		}
		if r.Relay, err = crypto.ParsePublicKey(key); err != nil {
			return nil, fmt.Errorf("database %s: suspension of relay key %q: %w", s.name, key, err)
		}
		r.Until = time.UnixMilli(until)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("database %s: list relay suspensions: %w", s.name, err)
	}
	return out, nil
}

// RelayReport is a node's report that Relay did not carry its relayed
// pings to Peer, made at At.
type RelayReport struct {
	Relay, Reporter, Peer crypto.PublicKey
	At                    time.Time
}

// ReportRelay records r, in place of the same report made earlier, and
// drops the reports made before before.
func (s *sqlDB) ReportRelay(ctx context.Context, r RelayReport, before time.Time) error {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `DELETE FROM relay_reports WHERE at < $1`, before.UnixMilli()); err != nil {
		return fmt.Errorf("database %s: drop old relay reports: %w", s.name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO relay_reports (relay, reporter, peer, at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (relay, reporter, peer) DO UPDATE SET at = excluded.at`,
		r.Relay.String(), r.Reporter.String(), r.Peer.String(), r.At.UnixMilli()); err != nil {
		return fmt.Errorf("database %s: record a report of relay %s: %w", s.name, r.Relay.Short(), err)
	}
	return s.commit(ctx, tx)
}

// RelayReported reports whether r's reporter reported r's relay naming r's
// peer at or after since.
func (s *sqlDB) RelayReported(ctx context.Context, r RelayReport, since time.Time) (bool, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM relay_reports WHERE relay = $1 AND reporter = $2 AND peer = $3 AND at >= $4`,
		r.Relay.String(), r.Reporter.String(), r.Peer.String(), since.UnixMilli()).Scan(&n); err != nil {
		return false, fmt.Errorf("database %s: read the reports of relay %s: %w", s.name, r.Relay.Short(), err)
	}
	return n > 0, nil
}
