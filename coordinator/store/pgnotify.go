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

// cueChannel carries punch cues between coordinators (Store.Cue). They
// are not changes, so they have a channel of their own: a coordinator of
// an older meshnode, which listens only on notifyChannel, never hears
// them (it would read an unknown kind as a resync).
const cueChannel = "meshnode_cues"

// cueNotice is a Cue as a NOTIFY payload (under 200 bytes).
type cueNotice struct {
	Coordinator string           `json:"coordinator"`
	To          crypto.PublicKey `json:"to"`
	About       crypto.PublicKey `json:"about"`
}

// maxCoordinatorID bounds the coordinator ID a cue notice may carry.
const maxCoordinatorID = 64

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
	return pgNotify(ctx, tx, notifyChannel, notice{Kind: c.Kind, Key: c.Key, Origin: l.origin})
}

// execer is what *sql.DB and *sql.Tx share for statements.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// pgNotify notifies channel with v in JSON, through ex: inside a
// transaction, or at once.
func pgNotify(ctx context.Context, ex execer, channel string, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = ex.ExecContext(ctx, `SELECT pg_notify($1, $2)`, channel, string(payload))
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
	for _, ch := range []string{notifyChannel, cueChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			conn.Close(context.Background())
			return nil, err
		}
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

// listenMaxRetry caps the listener's pauses between attempts to listen
// again: until it listens, changes through other coordinators go
// unheard, and one connection attempt a second is cheap.
const listenMaxRetry = time.Second

// reconnect listens again, with pauses from firstRetry (postgres.go)
// doubling up to listenMaxRetry, ±50 % (jittered), for as long as the
// store is open; nil once it closes.
func (l *listener) reconnect(ctx context.Context) *pgx.Conn {
	for wait := firstRetry; ; wait = min(2*wait, listenMaxRetry) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(jittered(wait)):
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
		if n.Channel == cueChannel {
			l.hearCue(n.Payload)
			continue
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

// hearCue publishes a cue another coordinator sent. One this build can't
// read is dropped: a cue is not state, and the node asks again.
func (l *listener) hearCue(payload string) {
	var c cueNotice
	if json.Unmarshal([]byte(payload), &c) != nil || c.Coordinator == "" || len(c.Coordinator) > maxCoordinatorID {
		return
	}
	l.watch.publish(Change{Kind: ChangeCue, Key: c.To, Peer: c.About, Coordinator: c.Coordinator})
}

// sendCue notifies cueChannel at once, outside any transaction.
func (l *listener) sendCue(ctx context.Context, db *sql.DB, c Change) error {
	return pgNotify(ctx, db, cueChannel, cueNotice{Coordinator: c.Coordinator, To: c.Key, About: c.Peer})
}

func known(k ChangeKind) bool {
	switch k {
	case ChangeNode, ChangeEndpoints, ChangePresence, ChangeToken, ChangeBan, ChangePolicy, ChangeSetting, ChangeRelaySuspension:
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
