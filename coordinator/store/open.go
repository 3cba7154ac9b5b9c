package store

import "context"

// Open opens the coordinator's database: a postgres:// or postgresql://
// URL is a PostgreSQL database (OpenPostgres), anything else the path of a
// SQLite file (OpenSQLite).
func Open(ctx context.Context, database string) (Store, error) {
	if IsPostgresURL(database) {
		s, err := OpenPostgres(ctx, database)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	s, err := OpenSQLite(ctx, database)
	if err != nil {
		return nil, err
	}
	return s, nil
}
