package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/crypto"
)

// Presence is where a node is connected: which coordinator holds its
// stream, and what that stream adds to its candidates. Coordinators
// sharing a database each hold a lease they renew; a node counts as
// connected only while its coordinator's lease runs, so the nodes of a
// coordinator that died without a goodbye go offline when it ends.
type Presence struct {
	Key         crypto.PublicKey
	Coordinator string         // the coordinator's ID for this run
	TCP         netip.AddrPort // the stream's source (a TCP punching candidate); invalid: none
	Relay       netip.AddrPort // the relay the node announces; invalid: none
	Since       time.Time
}

const presenceColumns = `p.public_key, p.coordinator, p.tcp, p.relay, p.since`

// live limits presence rows to those whose coordinator's lease runs at
// $1 (Unix milliseconds).
const live = ` JOIN coordinators c ON c.id = p.coordinator AND c.lease_until >= $1`

// WritePresence records, in one transaction, that coordinator holds the
// streams of here (each replacing where the node was) and no longer
// those of gone (presence another coordinator recorded since stays).
// Each node whose row changed is announced.
func (s *sqlDB) WritePresence(ctx context.Context, coordinator string, here []Presence, gone []crypto.PublicKey) error {
	return retryErr(ctx, s, func() error { return s.writePresence(ctx, coordinator, here, gone) })
}

func (s *sqlDB) writePresence(ctx context.Context, coordinator string, here []Presence, gone []crypto.PublicKey) error {
	s.writes.Add(1)
	tx, err := s.w.BeginTx(ctx, s.txOpts)
	if err != nil {
		return fmt.Errorf("database %s: begin: %w", s.name, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	changes := make([]Change, 0, len(here)+len(gone))
	for _, p := range here {
		if _, err := tx.ExecContext(ctx, `INSERT INTO presence (public_key, coordinator, tcp, relay, since) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (public_key) DO UPDATE SET coordinator = excluded.coordinator, tcp = excluded.tcp, relay = excluded.relay, since = excluded.since`,
			p.Key.String(), coordinator, addrText(p.TCP), addrText(p.Relay), p.Since.UnixMilli()); err != nil {
			return fmt.Errorf("database %s: store presence of %s: %w", s.name, p.Key.Short(), err)
		}
		changes = append(changes, Change{Kind: ChangePresence, Key: p.Key})
	}
	for _, key := range gone {
		res, err := tx.ExecContext(ctx, `DELETE FROM presence WHERE public_key = $1 AND coordinator = $2`, key.String(), coordinator)
		if err != nil {
			return fmt.Errorf("database %s: clear presence of %s: %w", s.name, key.Short(), err)
		}
		if n, err := res.RowsAffected(); err == nil && n > 0 {
			changes = append(changes, Change{Kind: ChangePresence, Key: key})
		}
	}
	return s.commit(ctx, tx, changes...)
}

// Lease is what a running coordinator records about itself: its ID for
// this run, and where nodes dial it (its public URL, "" for none) with
// the pin of its own certificate, so that any coordinator of the mesh can
// list them all in join tokens and welcomes (LiveCoordinators).
type Lease struct {
	Coordinator string
	URL         string
	Pin         string
}

// RenewLease extends l's lease to until, recording its URL and pin.
// renewed is false when it had none (its first, or it lapsed and its
// presence was expired) or it had run out (a database outage longer than
// the lease): others may have read its nodes as offline, so the caller
// records their presence again, which announces it.
func (s *sqlDB) RenewLease(ctx context.Context, l Lease, until time.Time) (renewed bool, err error) {
	res, err := s.execWrite(ctx, Change{}, `UPDATE coordinators SET lease_until = $1, url = $3, pin = $4 WHERE id = $2 AND lease_until >= $5`,
		until.UnixMilli(), l.Coordinator, l.URL, l.Pin, time.Now().UnixMilli())
	if err != nil {
		return false, fmt.Errorf("database %s: renew the lease of coordinator %s: %w", s.name, l.Coordinator, err)
	}
	if n, err := res.RowsAffected(); err == nil && n > 0 {
		return true, nil
	}
	if _, err := s.execWrite(ctx, Change{}, `INSERT INTO coordinators (id, lease_until, started, url, pin) VALUES ($1, $2, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until, url = excluded.url, pin = excluded.pin`, l.Coordinator, until.UnixMilli(), l.URL, l.Pin); err != nil {
		return false, fmt.Errorf("database %s: take a lease for coordinator %s: %w", s.name, l.Coordinator, err)
	}
	return false, nil
}

// LiveCoordinators lists the coordinators whose lease runs at now and
// that have a public URL, by URL; of two runs with one URL (a coordinator
// restarted before its old lease ended), the newer lease.
func (s *sqlDB) LiveCoordinators(ctx context.Context, now time.Time) ([]Lease, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, url, pin FROM coordinators WHERE lease_until >= $1 AND url <> '' ORDER BY url, lease_until DESC`, now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("database %s: list coordinators: %w", s.name, err)
	}
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		var l Lease
		if err := rows.Scan(&l.Coordinator, &l.URL, &l.Pin); err != nil {
			return nil, fmt.Errorf("database %s: list coordinators: %w", s.name, err)
		}
		if len(out) > 0 && out[len(out)-1].URL == l.URL {
			continue
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("database %s: list coordinators: %w", s.name, err)
	}
	return out, nil
}

// ExpireLeases deletes the leases that ended before now and the presence
// they held (and any presence without a lease), and returns the nodes
// that went offline; each is announced.
func (s *sqlDB) ExpireLeases(ctx context.Context, now time.Time) ([]crypto.PublicKey, error) {
	return s.dropPresence(ctx, `coordinator NOT IN (SELECT id FROM coordinators WHERE lease_until >= $1)`, `lease_until < $1`, now.UnixMilli())
}

// EndLease deletes coordinator's lease and the presence it held, as a
// coordinator stopping says goodbye, and returns the nodes that went
// offline; each is announced.
func (s *sqlDB) EndLease(ctx context.Context, coordinator string) ([]crypto.PublicKey, error) {
	return s.dropPresence(ctx, `coordinator = $1`, `id = $1`, coordinator)
}

// dropPresence deletes, in one transaction, the presence rows where
// which holds and the leases where lease holds (both of args), announcing
// each node.
func (s *sqlDB) dropPresence(ctx context.Context, which, lease string, args ...any) ([]crypto.PublicKey, error) {
	return retry(ctx, s, func() ([]crypto.PublicKey, error) { return s.dropPresenceOnce(ctx, which, lease, args) })
}

func (s *sqlDB) dropPresenceOnce(ctx context.Context, which, lease string, args []any) ([]crypto.PublicKey, error) {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	rows, err := tx.QueryContext(ctx, `DELETE FROM presence WHERE `+which+` RETURNING public_key`, args...)
	if err != nil {
		return nil, fmt.Errorf("database %s: expire presence: %w", s.name, err)
	}
	var keys []crypto.PublicKey
	var changes []Change
	for rows.Next() {
		var text string
		if err := rows.Scan(&text); err != nil {
			rows.Close()
			return nil, fmt.Errorf("database %s: expire presence: %w", s.name, err)
		}
		key, err := crypto.ParsePublicKey(text)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("database %s: presence of key %q: %w", s.name, text, err)
		}
		keys = append(keys, key)
		changes = append(changes, Change{Kind: ChangePresence, Key: key})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("database %s: expire presence: %w", s.name, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM coordinators WHERE `+lease, args...); err != nil {
		return nil, fmt.Errorf("database %s: expire leases: %w", s.name, err)
	}
	return keys, s.commit(ctx, tx, changes...)
}

// Presence is where key is connected at now; ok is false when it is not
// (or its coordinator's lease has ended).
func (s *sqlDB) Presence(ctx context.Context, key crypto.PublicKey, now time.Time) (p Presence, ok bool, err error) {
	p, err = retry(ctx, s, func() (Presence, error) {
		return scanPresence(s.r.QueryRowContext(ctx, `SELECT `+presenceColumns+` FROM presence p`+live+` WHERE p.public_key = $2`, now.UnixMilli(), key.String()))
	})
	if errors.Is(err, sql.ErrNoRows) {
		return Presence{}, false, nil
	}
	if err != nil {
		return Presence{}, false, fmt.Errorf("database %s: read presence of %s: %w", s.name, key.Short(), err)
	}
	return p, true, nil
}

// Online lists where each connected node is connected at now.
func (s *sqlDB) Online(ctx context.Context, now time.Time) ([]Presence, error) {
	return retry(ctx, s, func() ([]Presence, error) { return s.online(ctx, now) })
}

func (s *sqlDB) online(ctx context.Context, now time.Time) ([]Presence, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+presenceColumns+` FROM presence p`+live, now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("database %s: list presence: %w", s.name, err)
	}
	defer rows.Close()
	var out []Presence
	for rows.Next() {
		p, err := scanPresence(rows)
		if err != nil {
			return nil, fmt.Errorf("database %s: list presence: %w", s.name, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("database %s: list presence: %w", s.name, err)
	}
	return out, nil
}

func scanPresence(sc scanner) (Presence, error) {
	var (
		p               Presence
		key, tcp, relay string
		since           int64
	)
	if err := sc.Scan(&key, &p.Coordinator, &tcp, &relay, &since); err != nil {
		return Presence{}, err
	}
	var err error
	if p.Key, err = crypto.ParsePublicKey(key); err != nil {
		return Presence{}, fmt.Errorf("presence of key %q: %w", key, err)
	}
	if p.TCP, err = parseAddr(tcp); err != nil {
		return Presence{}, fmt.Errorf("presence of %s: tcp %q: %w", p.Key.Short(), tcp, err)
	}
	if p.Relay, err = parseAddr(relay); err != nil {
		return Presence{}, fmt.Errorf("presence of %s: relay %q: %w", p.Key.Short(), relay, err)
	}
	p.Since = time.UnixMilli(since)
	return p, nil
}

// addrText stores an address; "" for none.
func addrText(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func parseAddr(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, nil
	}
	return netip.ParseAddrPort(s)
}
