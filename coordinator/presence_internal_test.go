package coordinator

import (
	"testing"
	"time"
)

// Leases are read against now, less a lease, while this coordinator
// reaches the database; against when it last reached it, less a lease,
// through a gap of half a lease or more and for a lease after it, so that
// a slow restart of the database takes no node offline before its
// coordinator could renew.
func TestLiveSinceAcrossGaps(t *testing.T) {
	t.Parallel()
	const length = 4 * time.Second
	now := time.Unix(1_800_000_000, 0)
	ago := func(d time.Duration) int64 { return now.Add(-d).UnixNano() }
	tests := []struct {
		name           string
		ok, from, back int64
		want           time.Time
	}{
		{"no renewal yet (SQLite)", 0, 0, 0, now.Add(-length)},
		{"renewed just now", ago(100 * time.Millisecond), 0, 0, now.Add(-length)},
		{"renewals late by less than half a lease", ago(length/2 - time.Millisecond), 0, 0, now.Add(-length)},
		{"in a gap", ago(9 * time.Second), 0, 0, now.Add(-9*time.Second - length)},
		{"a lease after a gap", ago(time.Second), ago(12 * time.Second), ago(time.Second), now.Add(-12*time.Second - length)},
		{"a lease and more after a gap", ago(time.Second), ago(20 * time.Second), ago(length), now.Add(-length)},
		{"a lease after a gap of half a lease", ago(time.Second), ago(3 * time.Second), ago(time.Second), now.Add(-3*time.Second - length)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{lease: leaseTiming{renew: time.Second, length: length}}
			s.reach.ok.Store(tt.ok)
			s.reach.from.Store(tt.from)
			s.reach.back.Store(tt.back)
			if got := s.liveSince(now); !got.Equal(tt.want) {
				t.Fatalf("liveSince = %v; want %v", got, tt.want)
			}
		})
	}
}
