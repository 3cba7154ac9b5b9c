package perf

import (
	"fmt"
	"strconv"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// Plan is what one comparison measures.
type Plan struct {
	// Seconds is each iperf3 run's length (-t).
	Seconds int
	// Runs is the number of interleaved rounds; the table shows medians.
	Runs int
	// WireguardGo builds and measures stock wireguard-go.
	WireguardGo bool
	// Nebula, when set, is measured too.
	Nebula *NebulaBins
	// Before, when set, is another meshnode binary (an earlier revision)
	// measured beside this one: a change's before and after in one run.
	Before string
	// ProfileDir, when set, gets CPU profiles of both meshnode nodes
	// (not the before binary's) during the last round's run on each wire.
	ProfileDir string
	// Pairs are the NAT pairs whose time to first ping is measured, each
	// PairRuns times.
	Pairs    []Pair
	PairRuns int
}

// NebulaBins are Nebula's daemon and certificate tool.
type NebulaBins struct{ Nebula, Cert string }

// Pair is a NAT pair for the time to first ping: a node behind First is
// up, has learned its public address (so First passes UDP) and pings; the
// clock starts when a node behind Second starts.
type Pair struct {
	Name          string
	First, Second netlab.Kind
	// Nebula measures Nebula on the pair too (when the plan has it): on
	// the cone pair only, as Nebula has no relay here.
	Nebula bool
}

// Pairs are the pairs `make perf` measures: a quiet cone pair, a symmetric
// NAT (no direct path against a port-restricted cone: the relay), and a
// network that blocks UDP (the TCP relay). The harder side starts second:
// it is the newcomer's discovery that the clock measures.
func Pairs() []Pair {
	return []Pair{
		{"cone-cone", netlab.PortRestricted, netlab.PortRestricted, true},
		{"symmetric-cone", netlab.PortRestricted, netlab.Symmetric, false},
		{"UDP-blocked-cone", netlab.PortRestricted, netlab.UDPBlocked, false},
	}
}

// Bounds of the environment's knobs: an iperf3 run must end within
// netlab's 30 s command timeout, and more than 9 rounds add minutes for
// nothing a median of 9 doesn't show.
const (
	defaultSeconds = 5
	maxSeconds     = 20
	defaultRuns    = 3
	maxRuns        = 9
)

// envInt reads a positive integer knob: def when unset, an error naming
// the variable when out of 1..hi.
func envInt(name, val string, def, hi int) (int, error) {
	if val == "" {
		return def, nil
	}
	n, err := strconv.Atoi(val)
	if err != nil || n < 1 || n > hi {
		return 0, fmt.Errorf("%s=%q: want a whole number from 1 to %d", name, val, hi)
	}
	return n, nil
}
