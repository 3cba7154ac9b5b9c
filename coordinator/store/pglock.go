package store

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshnode/meshnode/crypto"
)

// Lease locks: each coordinator on PostgreSQL holds a session-level
// advisory lock, keyed by its ID for this run, on a connection of its own
// for as long as it runs. When its process dies, PostgreSQL ends that
// backend and frees the lock at once, so the others can take its nodes
// offline at their next renewal rather than when its lease ends.

// leaseLockClass is the first key of every lease lock
// (pg_try_advisory_lock(int, int)), the second hashtext of the
// coordinator's ID. The two-key form never meets writeLockKey (one bigint
// key: objsubid 1 in pg_locks, 2 here). "mesh" in ASCII.
const leaseLockClass = 0x6d657368

// lockName is the application_name of the connection holding the lease
// lock, telling it apart in pg_stat_activity.
const lockName = "meshnode-coordinator-lock"

// lockKeepalive is what PostgreSQL sets for the lock connection's
// backend (server-side GUCs, sent at connect): when a coordinator's host
// is lost rather than its process killed, no FIN or RST ever comes, and
// the backend would hold the lock for as long as the server's TCP takes
// to give up (system default keepalive: two hours). With these it
// probes a lock connection idle 2 s every second and ends it after three
// probes unanswered (tcp_user_timeout bounds unacknowledged data the
// same): about 5 s after the host went, its lock is free. The connection
// is never that idle while its coordinator lives, since each renewal
// (every 2 s) pings it first; 5 s of silence between a live coordinator
// and its database is an outage of its own, after which the coordinator
// takes its lock again at its next renewal.
var lockKeepalive = map[string]string{
	"tcp_keepalives_idle":     "2",
	"tcp_keepalives_interval": "1",
	"tcp_keepalives_count":    "3",
	"tcp_user_timeout":        "5000",
}

// leaseLock is the connection holding this coordinator's lease lock.
type leaseLock struct {
	cfg *pgx.ConnConfig

	mu    sync.Mutex
	conn  *pgx.Conn
	id    string    // whose lock conn holds; "" while not held
	since time.Time // when conn connected
	// seen lists the coordinators whose lock this store saw held: only
	// their free locks say they died (one of an older meshnode holds
	// none).
	seen map[string]bool
}

// hold takes id's lock if this store does not hold it yet, on a new
// connection if the last one was lost (the database restarted, or
// someone ended the backend). RenewLease calls it first, so a lease
// renewed since the database started is a lease whose lock was taken. A
// lock another session holds (a hash collision, or this coordinator's
// lost backend not yet ended) is tried again at the next renewal; until
// then the lock looks held and the lease alone counts.
func (l *leaseLock) hold(ctx context.Context, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil && l.conn.Ping(ctx) != nil {
		l.conn.Close(context.Background())
		l.conn, l.id = nil, ""
	}
	if l.conn == nil {
		cfg := l.cfg.Copy()
		cfg.RuntimeParams["application_name"] = lockName
		maps.Copy(cfg.RuntimeParams, lockKeepalive)
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return fmt.Errorf("connect to hold the lease lock: %w", err)
		}
		l.conn, l.since = conn, time.Now()
	}
	if l.id == id {
		return nil
	}
	var got bool
	if err := l.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, leaseLockClass, id).Scan(&got); err != nil {
		return fmt.Errorf("take the lease lock: %w", err)
	}
	if got {
		l.id = id
	}
	return nil
}

// heldSince is when this store's own lock session began; ok is false
// while it holds none. A database restart (or failover) since would have
// ended that session.
func (l *leaseLock) heldSince() (since time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.since, l.id != ""
}

func (l *leaseLock) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Close(context.Background())
		l.conn, l.id = nil, ""
	}
}

// RenewLease takes l's lease lock if it is not held, then renews the
// lease. A lock it can't take fails the renewal: a lease without its lock
// is never fresh. After the write it checks the lock again, in case the
// database restarted in between; what fails there is retried first thing
// at the next renewal, before the others count this lease a renewal old.
func (s *Postgres) RenewLease(ctx context.Context, l Lease, until time.Time) (renewed bool, err error) {
	if err := s.lock.hold(ctx, l.Coordinator); err != nil {
		return false, fmt.Errorf("database %s: coordinator %s: %w", s.name, l.Coordinator, err)
	}
	renewed, err = s.sqlDB.RenewLease(ctx, l, until)
	if err == nil {
		s.lock.hold(ctx, l.Coordinator) //nolint:errcheck // retried at the next renewal, as above
	}
	return renewed, err
}

// ExpireUnlocked ends, as ExpireLeases does, the leases that run no
// later than until (renewed long enough ago that a live coordinator would
// have renewed since) whose coordinator's lock this store saw held and
// is now free: its process died. Only leases that run at least steady
// past the start of this store's own lock session count: renewed since
// the database last started, so their coordinator took its lock on it
// first (after a restart every lock is free until its coordinator
// renews).
func (s *Postgres) ExpireUnlocked(ctx context.Context, until time.Time, steady time.Duration) ([]crypto.PublicKey, error) {
	since, ok := s.lock.heldSince()
	if !ok {
		return nil, nil
	}
	from, to := since.Add(steady).UnixMilli(), until.UnixMilli()
	dead, err := s.unlocked(ctx, from, to)
	if err != nil || len(dead) == 0 {
		return nil, err
	}
	return s.dropPresence(ctx, `coordinator IN (SELECT id FROM coordinators WHERE id = ANY($1) AND lease_until BETWEEN $2 AND $3)`,
		`id = ANY($1) AND lease_until BETWEEN $2 AND $3`, dead, from, to)
}

// unlocked lists the coordinators, with a lease that runs from from to
// to (Unix milliseconds), whose lock this store saw held and is now free,
// and records those whose lock it sees held.
func (s *Postgres) unlocked(ctx context.Context, from, to int64) ([]string, error) {
	// Advisory locks are each database's own, but pg_locks shows the
	// whole server's: only this database's say who is alive here.
	rows, err := s.r.QueryContext(ctx, `SELECT c.id, c.lease_until BETWEEN $2 AND $3, EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted
			AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND l.classid = $1 AND l.objid = hashtext(c.id)::oid AND l.objsubid = 2) FROM coordinators c`, leaseLockClass, from, to)
	if err != nil {
		return nil, fmt.Errorf("database %s: read lease locks: %w", s.name, err)
	}
	defer rows.Close()
	type lease struct {
		id        string
		old, held bool
	}
	var leases []lease
	for rows.Next() {
		var l lease
		if err := rows.Scan(&l.id, &l.old, &l.held); err != nil {
			return nil, fmt.Errorf("database %s: read lease locks: %w", s.name, err)
		}
		leases = append(leases, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("database %s: read lease locks: %w", s.name, err)
	}
	s.lock.mu.Lock()
	defer s.lock.mu.Unlock()
	var dead []string
	seen := make(map[string]bool, len(leases))
	for _, l := range leases {
		switch {
		case l.held:
			seen[l.id] = true
		case s.lock.seen[l.id] && l.old:
			dead = append(dead, l.id)
		case s.lock.seen[l.id]:
			seen[l.id] = true
		}
	}
	s.lock.seen = seen
	return dead, nil
}
