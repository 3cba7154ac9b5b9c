package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshnode/meshnode/crypto"
)

// notifyChannel is the PostgreSQL channel (LISTEN/NOTIFY) on which every
// committed change is announced to the coordinators sharing the database.
const notifyChannel = "meshnode_changes"

// notice is a Change as a NOTIFY payload (at most 8000 bytes, PostgreSQL's
// limit; this is under 100). Origin tells a store its own changes.
type notice struct {
	Kind   ChangeKind       `json:"kind"`
	Key    crypto.PublicKey `json:"key,omitzero"`
	Origin string           `json:"origin"`
}

// listenerName is the application_name of the connection that listens,
// telling it apart in pg_stat_activity.
const listenerName = "meshnode-coordinator-listen"

// listener holds one connection that LISTENs on notifyChannel and
// publishes what it hears to the store's watchers.
type listener struct {
	cfg    *pgx.ConnConfig
	origin string
	watch  *watchers
	stop   context.CancelFunc
	done   chan struct{}
}

// newOrigin names one store instance in its notices.
func newOrigin() string { return rand.Text() }

// announce is Postgres's notify: pg_notify inside the transaction, which
// PostgreSQL delivers only if the transaction commits, once, in commit
// order, to every listener.
func (l *listener) announce(ctx context.Context, tx *sql.Tx, c Change) error {
	payload, err := json.Marshal(notice{Kind: c.Kind, Key: c.Key, Origin: l.origin})
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, string(payload))
	return err
}

// start listens before it returns, so that every change committed after
// the store opened is heard; then it keeps listening in the background.
func (l *listener) start(ctx context.Context, name string) error {
	conn, err := l.connect(ctx)
	if err != nil {
		return fmt.Errorf("database %s: listen for changes: %w", name, err)
	}
	bg, stop := context.WithCancel(context.Background())
	l.stop, l.done = stop, make(chan struct{})
	go l.run(bg, conn)
	return nil
}

func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg := l.cfg.Copy()
	cfg.RuntimeParams["application_name"] = listenerName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// run publishes notifications until ctx ends. When the connection is lost
// it reconnects, and publishes a ChangeResync once it listens again: what
// was committed meanwhile was not heard.
func (l *listener) run(ctx context.Context, conn *pgx.Conn) {
	defer close(l.done)
	for conn != nil {
		l.hear(ctx, conn)
		conn.Close(context.Background())
		if conn = l.reconnect(ctx); conn != nil {
			l.watch.publish(Change{Kind: ChangeResync})
		}
	}
}

// reconnect listens again, with pauses from firstRetry doubling up to
// maxRetry (postgres.go), for as long as the store is open; nil once it
// closes.
func (l *listener) reconnect(ctx context.Context) *pgx.Conn {
	for wait := firstRetry; ; wait = min(2*wait, maxRetry) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if conn, err := l.connect(ctx); err == nil {
			return conn
		}
	}
}

// hear publishes conn's notifications until it fails or ctx ends.
func (l *listener) hear(ctx context.Context, conn *pgx.Conn) {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return
		}
		var msg notice
		if err := json.Unmarshal([]byte(n.Payload), &msg); err != nil || n.Channel != notifyChannel || !known(msg.Kind) {
			// Not a notice this build can read (a newer coordinator's
			// kind, say): something changed, read everything again.
			l.watch.publish(Change{Kind: ChangeResync})
			continue
		}
		l.watch.publish(Change{Kind: msg.Kind, Key: msg.Key, Own: msg.Origin == l.origin})
	}
}

func known(k ChangeKind) bool {
	switch k {
	case ChangeNode, ChangeEndpoints, ChangePresence, ChangeToken, ChangeBan, ChangePolicy, ChangeSetting:
		return true
	}
	return false
}

// close stops listening and waits for the listener to end.
func (l *listener) close() {
	if l.stop != nil {
		l.stop()
		<-l.done
	}
}
