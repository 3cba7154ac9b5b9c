package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// CreateToken records a new join token.
func (s *sqlDB) CreateToken(ctx context.Context, t Token) error {
	tags, err := json.Marshal(nonNil(t.Tags))
	if err != nil {
		return fmt.Errorf("encode token tags: %w", err)
	}
	_, err = s.execWrite(ctx, Change{Kind: ChangeToken}, `INSERT INTO tokens (id, secret_hash, reusable, tags, uses, created_at, expires_at)
		VALUES ($1, $2, $3, $4, 0, $5, $6)`,
		t.ID, t.SecretHash, boolInt(t.Reusable), string(tags), t.Created.UnixMilli(), t.Expires.UnixMilli())
	if err != nil {
		return fmt.Errorf("store token %s in %s: %w", t.ID, s.name, err)
	}
	return nil
}

const tokenColumns = `id, secret_hash, reusable, tags, uses, created_at, expires_at, revoked_at`

// Tokens lists every token, newest first.
func (s *sqlDB) Tokens(ctx context.Context) ([]Token, error) {
	return retry(ctx, s, func() ([]Token, error) { return s.tokens(ctx) })
}

func (s *sqlDB) tokens(ctx context.Context) ([]Token, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+tokenColumns+` FROM tokens ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens in %s: %w", s.name, err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens in %s: %w", s.name, err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken marks a token revoked.
func (s *sqlDB) RevokeToken(ctx context.Context, id string, now time.Time) error {
	res, err := s.execWrite(ctx, Change{Kind: ChangeToken}, `UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2`, now.UnixMilli(), id)
	if err != nil {
		return fmt.Errorf("revoke token %s in %s: %w", id, s.name, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("token %q: %w", id, ErrNotFound)
	}
	return nil
}

// scanner is what *sql.Row and *sql.Rows share.
type scanner interface{ Scan(dest ...any) error }

func scanToken(sc scanner) (Token, error) {
	var (
		t        Token
		reusable int
		tags     string
		created  int64
		expires  int64
		revoked  sql.NullInt64
	)
	if err := sc.Scan(&t.ID, &t.SecretHash, &reusable, &tags, &t.Uses, &created, &expires, &revoked); err != nil {
		return t, err
	}
	t.Reusable = reusable != 0
	t.Created = time.UnixMilli(created)
	t.Expires = time.UnixMilli(expires)
	t.Revoked = fromNull(revoked)
	if err := json.Unmarshal([]byte(tags), &t.Tags); err != nil {
		return t, fmt.Errorf("token %s: tags: %w", t.ID, err)
	}
	return t, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func fromNull(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
