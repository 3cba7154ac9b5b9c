package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// SetSoftware records what an active node reports running; ErrNotFound if
// it isn't active.
func (s *sqlDB) SetSoftware(ctx context.Context, key crypto.PublicKey, sw wire.Software) error {
	b, err := json.Marshal(sw)
	if err != nil {
		return fmt.Errorf("encode software: %w", err)
	}
	res, err := s.execWrite(ctx, Change{}, `UPDATE nodes SET software = $1 WHERE public_key = $2 AND removed_at IS NULL`, string(b), key.String())
	if err != nil {
		return fmt.Errorf("database %s: store the software of %s: %w", s.name, key.Short(), err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("node %s: %w", key.Short(), ErrNotFound)
	}
	return nil
}

// Software lists what every active node that reported its software last
// reported.
func (s *sqlDB) Software(ctx context.Context) (map[crypto.PublicKey]wire.Software, error) {
	return retry(ctx, s, func() (map[crypto.PublicKey]wire.Software, error) { return s.software(ctx) })
}

func (s *sqlDB) software(ctx context.Context) (map[crypto.PublicKey]wire.Software, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT public_key, software FROM nodes WHERE removed_at IS NULL AND software <> ''`)
	if err != nil {
		return nil, fmt.Errorf("database %s: list software: %w", s.name, err)
	}
	defer rows.Close()
	out := make(map[crypto.PublicKey]wire.Software)
	for rows.Next() {
		var key, sw string
		if err := rows.Scan(&key, &sw); err != nil {
			return nil, fmt.Errorf("database %s: list software: %w", s.name, err)
		}
		k, err := crypto.ParsePublicKey(key)
		if err != nil {
			return nil, fmt.Errorf("database %s: software of %q: %w", s.name, key, err)
		}
		var v wire.Software
		if err := json.Unmarshal([]byte(sw), &v); err != nil {
			return nil, fmt.Errorf("database %s: software of %s: %w", s.name, k.Short(), err)
		}
		out[k] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("database %s: list software: %w", s.name, err)
	}
	return out, nil
}
