package store

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/pgtest"
)

// BenchmarkRegister measures one registration, a write transaction under
// the write lock, on each engine, from GOMAXPROCS goroutines; and with two
// stores on one PostgreSQL database (two coordinators) registering at
// once. SQLite's commit waits for fsync; pgtest's cluster runs with fsync
// off, so its figures leave out the flush a real server makes.
func BenchmarkRegister(b *testing.B) {
	for _, bc := range []struct {
		name   string
		db     func(b *testing.B) string
		stores int
	}{
		{"sqlite", func(b *testing.B) string { return filepath.Join(b.TempDir(), "c.db") }, 1},
		{"postgres", func(b *testing.B) string { return pgtest.DB(b) }, 1},
		{"postgres-2-stores", func(b *testing.B) string { return pgtest.DB(b) }, 2},
	} {
		b.Run(bc.name, func(b *testing.B) {
			db := bc.db(b)
			var stores []Store
			for range bc.stores {
				s, err := Open(b.Context(), db)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				stores = append(stores, s)
			}
			secret := addToken(b, stores[0], "fleet", true, time.Now().Add(time.Hour))
			var names, workers atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				// Each goroutine is one coordinator's, round robin.
				s := stores[int(workers.Add(1))%len(stores)]
				for pb.Next() {
					if _, err := register(s, "fleet", secret, newKey(b), fmt.Sprintf("n%d", names.Add(1))); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
