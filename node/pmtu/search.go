// Package pmtu finds and enforces each peer's path MTU: how large a tunnel
// packet the direct path to a peer carries in one piece.
//
// Search is the discovery, a datagram packetization-layer PMTU search
// (DPLPMTUD, RFC 8899) run over the path manager's sealed discovery pings,
// padded to the size under test and sent with don't-fragment: it finds
// black holes, paths that drop big packets and send no ICMP, as well as
// paths that do. Guard is the enforcement on the TUN device: packets to a
// peer whose path is smaller than the TUN MTU get what a router would give
// them (a clamped TCP MSS, ICMP "too big"). KernelPathMTU reads what the
// host's kernel has learned from ICMP.
package pmtu

import (
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/meshnode/meshnode/internal/wire"
)

// Sizes. Everything here is an overlay MTU: the largest inner packet one
// tunnel packet carries. The underlay packet is that plus Overhead.
const (
	// Step is the search's resolution: WireGuard pads every inner packet
	// to a multiple of 16 bytes (device.PaddingMultiple), so a path that
	// carries m bytes carries no more inner bytes than m rounded down to 16.
	Step = device.PaddingMultiple
	// WireGuardOverhead is a transport message's framing: 16-byte header
	// and 16-byte Poly1305 tag (device.MessageTransportSize).
	WireGuardOverhead = device.MessageTransportSize
	udpHeaderLen      = 8  // RFC 768
	ipv4HeaderLen     = 20 // RFC 791
	ipv6HeaderLen     = 40 // RFC 8200
	// minPath is the smallest underlay path searched: the IPv6 minimum
	// link MTU (RFC 8200 §5), which nearly every IPv4 path carries too.
	// Below it a path is taken as carrying the floor, the best it can do.
	minPath = 1280
)

// RelayMTU is the overlay MTU of a path through a UDP relay: what a
// 1500-byte link (Ethernet's, the internet's usual) carries in one piece
// when the tunnel packet also carries the relay frame's header
// (wire.RelayHeaderLen), over IPv6, rounded down to Step (1376). IPv6
// because the relay forwards to the peer over the family the peer bound
// with, which the sender can't know; over IPv4 both legs carry 20 bytes
// more. At the default TUN MTU of 1420 a full-size packet's frame is 1489
// bytes, 17 over what IPv4 carries unfragmented and 37 over IPv6.
const RelayMTU = (ethernetMTU - ipv6HeaderLen - udpHeaderLen - WireGuardOverhead - wire.RelayHeaderLen) / Step * Step

// ethernetMTU is the link MTU a relayed path is taken to have (RFC 894).
const ethernetMTU = 1500

// Overhead is what the underlay adds to an inner packet over IPv4 or IPv6:
// IP, UDP and WireGuard headers (60 or 80 bytes).
func Overhead(ipv6 bool) int {
	if ipv6 {
		return ipv6HeaderLen + udpHeaderLen + WireGuardOverhead
	}
	return ipv4HeaderLen + udpHeaderLen + WireGuardOverhead
}

// Floor is the smallest overlay MTU searched over IPv4 or IPv6: what a
// minPath underlay carries, rounded down to Step (1216 and 1200).
func Floor(ipv6 bool) int { return (minPath - Overhead(ipv6)) / Step * Step }

// Probe is the UDP payload of a probe for overlay MTU m: the size of the
// tunnel packet that carries an m-byte inner packet.
func Probe(m int) int { return m + WireGuardOverhead }

// Defaults, after RFC 8899 §5.1 with timers for a tunnel whose peers answer
// within a round trip.
const (
	// DefaultMaxProbes is the most probes one round sends: the sizes from
	// the floor to a 1420-byte TUN MTU fit in one round.
	DefaultMaxProbes = 16
	// DefaultWait is how long a round waits for its answers: several
	// round trips on any path worth using directly.
	DefaultWait = time.Second
	// DefaultFails is how many rounds a size must go unanswered before it
	// counts as too big, so one lost probe doesn't lower the MTU (RFC
	// 8899's MAX_PROBES is 3; a round is itself a retry of every size).
	DefaultFails = 2
	// DefaultRaise re-searches above a settled MTU (RFC 8899 §5.1.1
	// PMTU_RAISE_TIMER): a path that grew is noticed within it.
	DefaultRaise = 10 * time.Minute
	// DefaultConfirm probes the settled MTU this often while traffic flows:
	// a path that shrank (a black hole appearing mid-session) misses
	// DefaultFails of these and is searched again.
	DefaultConfirm = 15 * time.Second
)

// Config tunes a Search.
type Config struct {
	// Ceil is the largest MTU worth probing: the TUN MTU.
	Ceil      int
	MaxProbes int
	Wait      time.Duration
	Fails     int
	Raise     time.Duration
	Confirm   time.Duration
}

// DefaultConfig is the configuration for a TUN MTU.
func DefaultConfig(tunMTU int) Config {
	return Config{Ceil: tunMTU, MaxProbes: DefaultMaxProbes, Wait: DefaultWait, Fails: DefaultFails, Raise: DefaultRaise, Confirm: DefaultConfirm}
}

type phase int

const (
	idle phase = iota
	searching
	settled
)

// Search is one peer's path MTU search over its direct path. It only
// decides: Tick says which sizes to probe, Answered takes the answers, and
// Result is the MTU to use. The caller owns the clock and the locking.
//
// A round probes up to MaxProbes sizes between the largest answered (lo)
// and the smallest that failed Fails rounds (hi) at once; the round after
// narrows the range, so a 1420-byte TUN settles in two rounds (one to
// answer, one to confirm the failures). Once settled, a single probe at the
// MTU confirms it every Confirm while traffic flows, and the sizes above
// are searched again after Raise.
type Search struct {
	cfg   Config
	floor int
	phase phase

	lo, hi int         // largest size answered; smallest failed Fails rounds (0: none)
	fails  map[int]int // rounds each size went unanswered, this search

	round    uint32 // the round in flight; answers to others are stale
	probing  []int
	answered map[int]bool
	roundEnd time.Time // zero: no round in flight

	result    int
	settledAt time.Time
	confirmAt time.Time
	missed    int // confirmation probes unanswered in a row

	// limit is the largest size the host sends unfragmented (0: no
	// limit known), from SetHostLimit.
	limit int
}

// NewSearch returns an idle search.
func NewSearch(cfg Config) *Search { return &Search{cfg: cfg} }

// Start searches from scratch, for a new path (over IPv6 or not). The
// current Result stays until the search settles.
func (s *Search) Start(ipv6 bool) {
	s.floor = min(Floor(ipv6), s.cfg.Ceil)
	s.phase = searching
	s.lo, s.hi = 0, 0
	s.fails = make(map[int]int)
	s.missed, s.limit = 0, 0
	s.newRound(time.Time{}, nil) // the next Tick starts the first round
}

// SetHostLimit tells the search the largest size the host sends to the
// peer unfragmented (0: no limit known). A socket that may fragment
// (Linux's IP_PMTUDISC_WANT) splits what exceeds the path MTU its kernel
// learned from ICMP; such a probe arrives in pieces and its answer proves
// nothing, so answers above the limit count as failures. The kernel may
// learn the limit from the very probes of a round, as they cross the
// smaller link, and fragment the round's later probes: the limit must be
// fresh when the round is scored.
func (s *Search) SetHostLimit(limit int) { s.limit = limit }

// Probing reports whether a round of probes is waiting for answers.
func (s *Search) Probing() bool { return !s.roundEnd.IsZero() }

// proven reports whether an answer to a probe of size proves the path.
func (s *Search) proven(size int) bool {
	return s.answered[size] && (s.limit == 0 || size <= s.limit)
}

// Stop ends the search: the peer has no direct path. Result is 0 after.
func (s *Search) Stop() {
	s.phase = idle
	s.result = 0
	s.newRound(time.Time{}, nil)
}

// Result is the overlay MTU to use towards the peer: 0 before the first
// search settles or without a direct path.
func (s *Search) Result() int { return s.result }

// Answered records an answer to a probe of size sent in round.
func (s *Search) Answered(size int, round uint32) {
	if round != s.round || s.roundEnd.IsZero() {
		return
	}
	s.answered[size] = true
}

// Tick advances the search to now and returns the sizes to probe now, with
// their round, or none. active says the path carries traffic: only then is
// the settled MTU confirmed.
func (s *Search) Tick(now time.Time, active bool) ([]int, uint32) {
	if !s.roundEnd.IsZero() && now.Before(s.roundEnd) {
		return nil, 0
	}
	switch s.phase {
	case searching:
		if !s.roundEnd.IsZero() {
			s.conclude()
		}
		return s.next(now)
	case settled:
		if !s.roundEnd.IsZero() {
			s.concludeConfirm(now)
			if s.phase == searching {
				return s.next(now)
			}
		}
		if !now.Before(s.settledAt.Add(s.cfg.Raise)) {
			// Search upward again: keep what answered, forget what failed.
			s.phase, s.hi, s.fails = searching, 0, make(map[int]int)
			return s.next(now)
		}
		if active && !now.Before(s.confirmAt) {
			s.confirmAt = now.Add(s.cfg.Confirm)
			return s.newRound(now, []int{s.result}), s.round
		}
	}
	return nil, 0
}

// conclude scores a finished search round.
func (s *Search) conclude() {
	for _, c := range s.probing {
		if s.proven(c) {
			s.lo = max(s.lo, c)
			delete(s.fails, c)
			continue
		}
		s.fails[c]++
		if s.fails[c] >= s.cfg.Fails && (s.hi == 0 || c < s.hi) {
			s.hi = c
		}
	}
	if s.hi != 0 && s.hi <= s.lo {
		s.hi = 0 // an answer above a failure: the failure was loss
	}
	s.newRound(time.Time{}, nil)
}

// concludeConfirm scores a confirmation probe; a settled MTU that missed
// Fails of them in a row is searched again from the floor.
func (s *Search) concludeConfirm(now time.Time) {
	ok := s.proven(s.result)
	s.newRound(time.Time{}, nil)
	if ok {
		s.missed = 0
		return
	}
	s.missed++
	if s.missed >= s.cfg.Fails {
		s.phase, s.lo, s.hi, s.fails, s.missed = searching, 0, 0, make(map[int]int), 0
	}
}

// next starts the next search round, or settles when no size is left
// between lo and hi.
func (s *Search) next(now time.Time) ([]int, uint32) {
	sizes := s.pick(s.candidates())
	if len(sizes) == 0 {
		s.phase = settled
		s.result = max(s.lo, s.floor)
		s.settledAt, s.confirmAt = now, now.Add(s.cfg.Confirm)
		return nil, 0
	}
	return s.newRound(now.Add(s.cfg.Wait), sizes), s.round
}

// newRound begins a round of sizes ending at end (none: no round).
func (s *Search) newRound(end time.Time, sizes []int) []int {
	s.round++
	s.probing, s.roundEnd = sizes, end
	s.answered = make(map[int]bool, len(sizes))
	return sizes
}

// candidates are the sizes still open: above lo, below hi, from the floor
// in Step up to Ceil.
func (s *Search) candidates() []int {
	var out []int
	for c := s.floor; c <= s.cfg.Ceil; c = nextSize(c, s.cfg.Ceil) {
		if c > s.lo && (s.hi == 0 || c < s.hi) {
			out = append(out, c)
		}
	}
	return out
}

// nextSize is the size after c: the next multiple of Step, and Ceil last
// (a TUN MTU need not be a multiple of Step).
func nextSize(c, ceil int) int {
	n := (c/Step + 1) * Step
	if n > ceil && c < ceil {
		return ceil
	}
	if c >= ceil {
		return ceil + 1
	}
	return n
}

// pick spreads at most MaxProbes sizes evenly over cands, keeping the
// smallest and the largest.
func (s *Search) pick(cands []int) []int {
	k := s.cfg.MaxProbes
	if len(cands) <= k {
		return cands
	}
	out := make([]int, k)
	for i := range k {
		out[i] = cands[i*(len(cands)-1)/(k-1)]
	}
	return out
}
