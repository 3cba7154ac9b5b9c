package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SetPolicy stores a new version of the access policy. The write lock
// (BEGIN IMMEDIATE) makes reading the newest version and inserting the
// next one atomic; in a database without it, the primary key refuses the
// second of two writers of the same version.
func (s *sqlDB) SetPolicy(ctx context.Context, text string, now time.Time) (PolicyVersion, error) {
	return retry(ctx, s, func() (PolicyVersion, error) { return s.setPolicy(ctx, text, now) })
}

func (s *sqlDB) setPolicy(ctx context.Context, text string, now time.Time) (PolicyVersion, error) {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return PolicyVersion{}, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var newest int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM policies`).Scan(&newest); err != nil {
		return PolicyVersion{}, fmt.Errorf("database %s: read policy version: %w", s.name, err)
	}
	v := PolicyVersion{Version: uint64(newest) + 1, Text: text, Created: time.UnixMilli(now.UnixMilli())}
	if _, err := tx.ExecContext(ctx, `INSERT INTO policies (version, text, created_at) VALUES ($1, $2, $3)`,
		int64(v.Version), text, now.UnixMilli()); err != nil {
		return PolicyVersion{}, fmt.Errorf("database %s: store policy version %d: %w", s.name, v.Version, err)
	}
	if err := s.commit(ctx, tx, Change{Kind: ChangePolicy}); err != nil {
		return PolicyVersion{}, err
	}
	return v, nil
}

// Policy returns a stored version of the access policy.
func (s *sqlDB) Policy(ctx context.Context, version uint64) (PolicyVersion, error) {
	q, args := `SELECT version, text, created_at FROM policies ORDER BY version DESC LIMIT 1`, []any{}
	if version != 0 {
		q, args = `SELECT version, text, created_at FROM policies WHERE version = $1`, []any{int64(version)}
	}
	var (
		v       PolicyVersion
		n       int64
		created int64
	)
	err := retryErr(ctx, s, func() error { return s.r.QueryRowContext(ctx, q, args...).Scan(&n, &v.Text, &created) })
	switch {
	case errors.Is(err, sql.ErrNoRows) && version == 0:
		return PolicyVersion{}, fmt.Errorf("no access policy was ever set: %w", ErrNotFound)
	case errors.Is(err, sql.ErrNoRows):
		return PolicyVersion{}, fmt.Errorf("no access policy version %d: %w", version, ErrNotFound)
	case err != nil:
		return PolicyVersion{}, fmt.Errorf("database %s: read policy: %w", s.name, err)
	}
	v.Version, v.Created = uint64(n), time.UnixMilli(created)
	return v, nil
}
