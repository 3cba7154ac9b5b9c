package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ByteSize is an amount of memory, written as Go's GOMEMLIMIT takes it: a
// whole number of bytes with an optional unit B, KiB, MiB, GiB or TiB
// (powers of 1024), such as 450MiB. Zero, written empty, means unset.
type ByteSize int64

// byteUnits are the units ByteSize accepts, largest first.
var byteUnits = []struct {
	suffix string
	size   int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := string(text)
	if s == "" {
		*b = 0
		return nil
	}
	num, unit := s, int64(1)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, unit = n, u.size
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/unit {
		return fmt.Errorf("%q is not an amount of memory such as 450MiB or 2GiB (units B, KiB, MiB, GiB, TiB)", s)
	}
	*b = ByteSize(n * unit)
	return nil
}

// String writes b in the largest unit that divides it; empty when zero.
func (b ByteSize) String() string {
	if b == 0 {
		return ""
	}
	for _, u := range byteUnits {
		if int64(b)%u.size == 0 {
			return fmt.Sprintf("%d%s", int64(b)/u.size, u.suffix)
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}
