package coordinator

import (
	"testing"
	"time"
)

func TestChallengeLifetime(t *testing.T) {
	t.Parallel()
	c := newChallenger()
	now := time.Now()
	ch := c.issue(now)
	for _, tt := range []struct {
		name string
		at   time.Time
		ok   bool
	}{
		{"at once", now, true},
		{"within the TTL", now.Add(registerChallengeTTL - time.Second), true},
		{"after the TTL", now.Add(registerChallengeTTL + time.Second), false},
		{"clock stepped back a little", now.Add(-time.Second), true},
		{"clock stepped back far", now.Add(-2 * registerChallengeTTL), false},
	} {
		if err := c.check(ch, tt.at); (err == nil) != tt.ok {
			t.Errorf("%s: check = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
	if err := newChallenger().check(ch, now); err == nil {
		t.Error("another run's challenge accepted")
	}
	if err := c.check(ch[:len(ch)-1], now); err == nil {
		t.Error("a truncated challenge accepted")
	}
}
