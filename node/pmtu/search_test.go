package pmtu

import (
	"testing"
	"time"
)

// fakePath answers probes up to its capacity (an overlay MTU), losing the
// first lose[size] probes of a size.
type fakePath struct {
	capacity int
	lose     map[int]int
}

// clock drives a Search on a fake clock, one tick at a time.
type clock struct {
	now    time.Time
	tick   time.Duration
	probes int // probes sent
}

const tick = 50 * time.Millisecond

func newClock() *clock { return &clock{now: time.Unix(1_700_000_000, 0), tick: tick} }

// step advances one tick and delivers the probes it sent over p.
func (c *clock) step(s *Search, p *fakePath, active bool) {
	c.now = c.now.Add(c.tick)
	sizes, round := s.Tick(c.now, active)
	for _, size := range sizes {
		c.probes++
		if p.lose[size] > 0 {
			p.lose[size]--
			continue
		}
		if size <= p.capacity {
			s.Answered(size, round)
		}
	}
}

// until steps until cond holds, at most limit of fake time, and returns how
// long it took.
func (c *clock) until(t *testing.T, s *Search, p *fakePath, active bool, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := c.now
	for c.now.Sub(start) <= limit {
		c.step(s, p, active)
		if cond() {
			return c.now.Sub(start)
		}
	}
	t.Fatalf("not reached within %v: result %d, lo %d, hi %d, phase %d", limit, s.Result(), s.lo, s.hi, s.phase)
	return 0
}

func isSettled(s *Search) func() bool { return func() bool { return s.phase == settled } }

func TestSearchSettles(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ceil     int
		ipv6     bool
		capacity int // the overlay MTU the path carries
		lose     map[int]int
		want     int
		maxTime  time.Duration
	}{
		{"full 1500-byte path, IPv4", 1420, false, 1420, nil, 1420, 2*DefaultWait + tick},
		{"1400-byte link, IPv4", 1420, false, 1400 - 60, nil, 1328, 2*DefaultWait + tick},
		{"1280-byte link, IPv4", 1420, false, 1280 - 60, nil, 1216, 2*DefaultWait + tick},
		{"1280-byte link, IPv6", 1420, true, 1280 - 80, nil, 1200, 2*DefaultWait + tick},
		{"PPPoE 1492, IPv6", 1420, true, 1492 - 80, nil, 1408, 2*DefaultWait + tick},
		{"nothing answers: the floor", 1420, false, 0, nil, 1216, 2*DefaultWait + tick},
		{"the largest size's first probe is lost", 1420, false, 1340, map[int]int{1328: 1}, 1328, 3*DefaultWait + tick},
		{"a smaller size lost while a larger answers", 1420, false, 1420, map[int]int{1280: 2}, 1420, 2*DefaultWait + tick},
		{"TUN MTU 1280", 1280, false, 1280, nil, 1280, 2*DefaultWait + tick},
		{"jumbo TUN, 1500-byte path", 8920, false, 1440, nil, 1440, 12 * DefaultWait},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSearch(DefaultConfig(tc.ceil))
			c := newClock()
			s.Start(tc.ipv6)
			took := c.until(t, s, &fakePath{capacity: tc.capacity, lose: tc.lose}, false, time.Minute, isSettled(s))
			if s.Result() != tc.want {
				t.Errorf("settled at %d, want %d", s.Result(), tc.want)
			}
			if took > tc.maxTime {
				t.Errorf("settled after %v, want within %v", took, tc.maxTime)
			}
			if c.probes > 8*DefaultMaxProbes {
				t.Errorf("%d probes sent", c.probes)
			}
			t.Logf("settled at %d after %v and %d probes", s.Result(), took, c.probes)
		})
	}
}

func TestSearchKeepsResultUntilSettled(t *testing.T) {
	s := NewSearch(DefaultConfig(1420))
	c := newClock()
	p := &fakePath{capacity: 1340}
	if s.Result() != 0 {
		t.Fatalf("result %d before any search, want 0", s.Result())
	}
	s.Start(false)
	c.until(t, s, p, false, time.Minute, isSettled(s))
	s.Start(false) // the path changed
	c.step(s, p, false)
	if s.phase != searching || s.Result() != 1328 {
		t.Fatalf("during a new search: phase %d, result %d; want searching with the old 1328 kept", s.phase, s.Result())
	}
	s.Stop()
	if s.Result() != 0 {
		t.Fatalf("result %d after Stop, want 0", s.Result())
	}
	for range 100 {
		if sizes, _ := s.Tick(c.now.Add(time.Hour), true); len(sizes) != 0 {
			t.Fatalf("stopped search probes %v", sizes)
		}
	}
}

func TestSearchFindsAShrunkPath(t *testing.T) {
	for _, tc := range []struct {
		name   string
		active bool
		want   int // result a minute after the shrink
	}{
		{"with traffic: confirmation probes notice", true, 1216},
		{"idle: nothing is probed", false, 1420},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSearch(DefaultConfig(1420))
			c := newClock()
			p := &fakePath{capacity: 1420}
			s.Start(false)
			c.until(t, s, p, tc.active, time.Minute, isSettled(s))
			p.capacity = 1220 // a black hole appears
			sent := c.probes
			end := c.now.Add(time.Minute)
			for c.now.Before(end) {
				c.step(s, p, tc.active)
			}
			if s.Result() != tc.want {
				t.Errorf("result %d a minute after the path shrank, want %d", s.Result(), tc.want)
			}
			if !tc.active && c.probes != sent {
				t.Errorf("an idle path got %d probes", c.probes-sent)
			}
		})
	}
}

func TestSearchRaises(t *testing.T) {
	s := NewSearch(DefaultConfig(1420))
	c := newClock()
	p := &fakePath{capacity: 1340}
	s.Start(false)
	c.until(t, s, p, false, time.Minute, isSettled(s))
	p.capacity = 1420
	took := c.until(t, s, p, false, 2*DefaultRaise, func() bool { return s.Result() == 1420 })
	if took < DefaultRaise || took > DefaultRaise+3*DefaultWait {
		t.Errorf("raised after %v, want just after %v", took, DefaultRaise)
	}
}

func TestSearchIgnoresStaleAnswers(t *testing.T) {
	s := NewSearch(DefaultConfig(1420))
	now := time.Unix(1_700_000_000, 0)
	s.Start(false)
	sizes, round := s.Tick(now, false)
	if len(sizes) == 0 {
		t.Fatal("no first round")
	}
	// The round times out unanswered; its answers come late.
	now = now.Add(DefaultWait)
	next, _ := s.Tick(now, false)
	for _, size := range sizes {
		s.Answered(size, round)
	}
	now = now.Add(DefaultWait)
	s.Tick(now, false)
	if s.lo != 0 {
		t.Errorf("late answers counted: lo %d (second round probed %v)", s.lo, next)
	}
}

func TestCandidates(t *testing.T) {
	s := NewSearch(DefaultConfig(1420))
	s.Start(false)
	got := s.candidates()
	if got[0] != 1216 || got[len(got)-1] != 1420 || len(got) != 14 {
		t.Fatalf("IPv4 candidates %v: want 1216 to 1408 in steps of 16, then 1420", got)
	}
	if len(got) > DefaultMaxProbes {
		t.Errorf("%d candidates do not fit one round of %d", len(got), DefaultMaxProbes)
	}
	s.Start(true)
	if got := s.candidates(); got[0] != 1200 || len(got) != 15 {
		t.Fatalf("IPv6 candidates %v: want 1200 to 1408, then 1420", got)
	}
}

// TestSearchDiscountsFragmentedAnswers: the host fragments what exceeds the
// path MTU its kernel learned, so every probe is answered; answers above
// the host's limit prove nothing.
func TestSearchDiscountsFragmentedAnswers(t *testing.T) {
	s := NewSearch(DefaultConfig(1420))
	c := newClock()
	s.Start(false)
	s.SetHostLimit(1400 - Overhead(false))
	c.until(t, s, &fakePath{capacity: 1420}, false, time.Minute, isSettled(s))
	if s.Result() != 1328 {
		t.Errorf("settled at %d, want 1328: the host's 1400-byte limit rules", s.Result())
	}
	if s.Start(false); s.limit != 0 {
		t.Errorf("a new search keeps the old path's host limit %d", s.limit)
	}
}
