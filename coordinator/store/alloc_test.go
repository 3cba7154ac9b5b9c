package store

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func pool(v4, v6 string) Pool {
	return Pool{V4: netip.MustParsePrefix(v4), V6: netip.MustParsePrefix(v6)}
}

func TestPoolAddrs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pool   Pool
		index  uint64
		v4, v6 string
	}{
		{pool("100.88.0.0/16", "fd6d:6573:686e::/48"), 1, "100.88.0.1", "fd6d:6573:686e::1"},
		{pool("100.88.0.0/16", "fd6d:6573:686e::/48"), 257, "100.88.1.1", "fd6d:6573:686e::101"},
		{pool("10.9.8.252/30", "fd00::/64"), 2, "10.9.8.254", "fd00::2"},
		// A prefix given with host bits set is masked first.
		{pool("100.88.7.7/16", "fd6d:6573:686e::5/48"), 3, "100.88.0.3", "fd6d:6573:686e::3"},
	}
	for _, tt := range tests {
		v4, v6 := tt.pool.Addrs(tt.index)
		if v4.String() != tt.v4 || v6.String() != tt.v6 {
			t.Errorf("%v.Addrs(%d) = %v, %v; want %s, %s", tt.pool, tt.index, v4, v6, tt.v4, tt.v6)
		}
	}
}

func TestPoolUsable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pool  Pool
		index uint64
		want  bool
	}{
		{pool("100.88.0.0/16", "fd00::/64"), 0, false},     // network address
		{pool("100.88.0.0/16", "fd00::/64"), 1, true},      // 100.88.0.1
		{pool("100.88.0.0/16", "fd00::/64"), 255, false},   // 100.88.0.255
		{pool("100.88.0.0/16", "fd00::/64"), 256, false},   // 100.88.1.0
		{pool("100.88.0.0/16", "fd00::/64"), 65535, false}, // broadcast
		{pool("10.0.0.0/24", "fd00::/64"), 254, true},
		{pool("10.0.0.0/24", "fd00::/64"), 255, false},
		{pool("10.0.0.0/30", "fd00::/64"), 2, true},
		{pool("10.0.0.0/30", "fd00::/64"), 3, false},
	}
	for _, tt := range tests {
		if got := tt.pool.Usable(tt.index); got != tt.want {
			t.Errorf("%v.Usable(%d) = %v, want %v", tt.pool.V4, tt.index, got, tt.want)
		}
	}
}

func TestPoolLowestFree(t *testing.T) {
	t.Parallel()
	p16 := pool("100.88.0.0/16", "fd00::/64")
	p30 := pool("10.0.0.0/30", "fd00::/64")
	tests := []struct {
		name string
		pool Pool
		used []uint64
		want uint64
		full bool
	}{
		{"empty", p16, nil, 1, false},
		{"gap", p16, []uint64{1, 2, 4}, 3, false},
		{"skips .255 and .0", p16, seq(1, 254), 257, false},
		{"/30 second", p30, []uint64{1}, 2, false},
		{"/30 full", p30, []uint64{1, 2}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.pool.LowestFree(tt.used)
			if tt.full {
				if !errors.Is(err, ErrPoolExhausted) || !strings.Contains(err.Error(), tt.pool.V4.String()) {
					t.Fatalf("LowestFree = %d, %v; want ErrPoolExhausted naming %v", got, err, tt.pool.V4)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("LowestFree = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func seq(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestSuffixed(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 59) + "-bcd"
	tests := []struct {
		base string
		n    int
		want string
	}{
		{"laptop", 1, "laptop"},
		{"laptop", 2, "laptop-2"},
		{"laptop", 10, "laptop-10"},
		{strings.Repeat("x", 63), 2, strings.Repeat("x", 61) + "-2"},
		// Shortening must not leave a double hyphen.
		{long, 12, strings.Repeat("a", 59) + "-12"},
	}
	for _, tt := range tests {
		got := Suffixed(tt.base, tt.n)
		if got != tt.want || len(got) > maxLabel {
			t.Errorf("Suffixed(%q, %d) = %q, want %q", tt.base, tt.n, got, tt.want)
		}
	}
}

// AfterDense, where it answers, answers as LowestFree does, and it answers
// whenever no node left a gap.
func TestPoolAfterDense(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range []Pool{pool("100.88.0.0/16", "fd00::/64"), pool("10.1.0.0/22", "fd00::/64"), pool("10.0.0.0/24", "fd00::/64"), pool("10.0.0.0/29", "fd00::/64"), pool("10.0.0.0/31", "fd00::/64")} {
		for range 300 {
			// A dense run of n usable indexes, then maybe a node removed.
			var used []uint64
			n := rng.IntN(int(min(p.size(), 2000)))
			for i := uint64(1); i < p.size()-1 && len(used) < n; i++ {
				if p.Usable(i) {
					used = append(used, i)
				}
			}
			gap := len(used) > 1 && rng.IntN(2) == 0
			if gap {
				k := rng.IntN(len(used) - 1)
				used = append(used[:k], used[k+1:]...)
			}
			var highest uint64
			if len(used) > 0 {
				highest = used[len(used)-1]
			}
			want, werr := p.LowestFree(used)
			got, ok := p.AfterDense(uint64(len(used)), highest)
			switch {
			case ok && (werr != nil || got != want):
				t.Fatalf("%v, %d used up to %d: AfterDense %d, LowestFree %d, %v", p.V4, len(used), highest, got, want, werr)
			case !ok && !gap && werr == nil:
				t.Fatalf("%v, %d used densely up to %d: AfterDense does not answer (LowestFree %d)", p.V4, len(used), highest, want)
			case ok && gap:
				t.Fatalf("%v: AfterDense answered %d over a gap", p.V4, got)
			}
		}
	}
}
