package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meshnode/meshnode/crypto"
)

const banColumns = `public_key, name, banned_at`

// checkBan returns ErrBanned when key is banned.
func (s *sqlDB) checkBan(ctx context.Context, q querier, key crypto.PublicKey) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM banned_keys WHERE public_key = $1`, key.String()).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("database %s: read ban of %s: %w", s.name, key.Short(), err)
	}
	return ErrBanned
}

// Bans lists the banned keys, newest first.
func (s *sqlDB) Bans(ctx context.Context) ([]Ban, error) {
	return retry(ctx, s, func() ([]Ban, error) {
		return s.bans(ctx, s.r, `SELECT `+banColumns+` FROM banned_keys ORDER BY banned_at DESC, public_key`)
	})
}

func (s *sqlDB) bans(ctx context.Context, q querier, query string, args ...any) ([]Ban, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("database %s: list bans: %w", s.name, err)
	}
	defer rows.Close()
	var out []Ban
	for rows.Next() {
		var (
			b     Ban
			key   string
			since int64
		)
		if err := rows.Scan(&key, &b.Name, &since); err != nil {
			return nil, fmt.Errorf("database %s: list bans: %w", s.name, err)
		}
		if b.Key, err = crypto.ParsePublicKey(key); err != nil {
			return nil, fmt.Errorf("database %s: banned key %q: %w", s.name, key, err)
		}
		b.Since = time.UnixMilli(since)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("database %s: list bans: %w", s.name, err)
	}
	return out, nil
}

// Allow lifts a ban. A string that parses as a key names a key; anything
// else names the node the key belonged to.
func (s *sqlDB) Allow(ctx context.Context, keyOrName string) (Ban, error) {
	return retry(ctx, s, func() (Ban, error) { return s.allow(ctx, keyOrName) })
}

func (s *sqlDB) allow(ctx context.Context, keyOrName string) (Ban, error) {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return Ban{}, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var matches []Ban
	if key, kerr := crypto.ParsePublicKey(keyOrName); kerr == nil {
		matches, err = s.bans(ctx, tx, `SELECT `+banColumns+` FROM banned_keys WHERE public_key = $1`, key.String())
	} else {
		matches, err = s.bans(ctx, tx, `SELECT `+banColumns+` FROM banned_keys WHERE name = $1 AND name <> '' ORDER BY banned_at DESC`, keyOrName)
	}
	if err != nil {
		return Ban{}, err
	}
	switch len(matches) {
	case 0:
		return Ban{}, fmt.Errorf("no banned key or removed node %q: %w", keyOrName, ErrNotFound)
	case 1:
	default:
		keys := make([]string, len(matches))
		for i, b := range matches {
			keys[i] = b.Key.String()
		}
		return Ban{}, fmt.Errorf("%d removed nodes were named %q (keys %s); give the key: %w",
			len(matches), keyOrName, strings.Join(keys, ", "), ErrAmbiguous)
	}
	b := matches[0]
	if _, err := tx.ExecContext(ctx, `DELETE FROM banned_keys WHERE public_key = $1`, b.Key.String()); err != nil {
		return Ban{}, fmt.Errorf("database %s: allow %s: %w", s.name, b.Key.Short(), err)
	}
	if err := s.commit(ctx, tx, Change{Kind: ChangeBan, Key: b.Key}); err != nil {
		return Ban{}, err
	}
	return b, nil
}
