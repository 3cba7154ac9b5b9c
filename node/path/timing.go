package path

import (
	"time"

	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/pmtu"
)

// Timing constants, each with its reason. The defaults follow the field's
// best practice (see docs: shared nat-traversal notes): Tailscale's disco
// heartbeat and trust window, Nebula's short punch bursts.
const (
	// DefaultPunchInterval spaces pings to each candidate while punching.
	// The first packets are expected to die at the far NAT until its own
	// side has sent; a short interval makes the first crossing quick.
	DefaultPunchInterval = 250 * time.Millisecond
	// DefaultPunchDuration is one punch round: long enough for both sides to
	// hear the coordinator's cue and for several packets to cross.
	DefaultPunchDuration = 6 * time.Second
	// DefaultSettle lets a better candidate (a LAN address, a lower RTT)
	// answer after the first pong before the round ends.
	DefaultSettle = time.Second
	// DefaultActiveHeartbeat probes a path that carries traffic, so a dead
	// path is noticed in seconds (Tailscale: 3 s).
	DefaultActiveHeartbeat = 2 * time.Second
	// DefaultActiveWindow: a peer sent to within this window is active.
	DefaultActiveWindow = 10 * time.Second
	// DefaultMissedPongs heartbeats without a pong mark a path dead: three
	// lets one lost packet pass without a false alarm. While active that is
	// 6 s (Tailscale trusts a path 6.5 s).
	DefaultMissedPongs = 3
	// DefaultRetryMin and DefaultRetryMax bound the backoff between punch
	// rounds for a peer that doesn't answer: quick for a transient loss,
	// never a busy loop for a peer behind a hopeless NAT.
	DefaultRetryMin = 2 * time.Second
	DefaultRetryMax = 60 * time.Second
	// DefaultPingTimeout forgets an unanswered ping.
	DefaultPingTimeout = 5 * time.Second
	// DefaultRendezvousGap rate-limits cues requested from the coordinator.
	DefaultRendezvousGap = 2 * time.Second
	// tick is the manager's clock: fine enough for DefaultPunchInterval.
	defaultTick = 50 * time.Millisecond
	// DefaultTCPRetry spaces TCP hole-punching attempts for a peer: each
	// holds sockets and SYN state on both NATs for up to half a minute.
	DefaultTCPRetry = time.Minute
	// DefaultBirthdayRate paces the easy side's probes (per second): 2048
	// in ~20 s, gentle on both NATs' state tables.
	DefaultBirthdayRate = 100
	// DefaultBirthdayDuration bounds one birthday attempt, probes included.
	DefaultBirthdayDuration = 25 * time.Second
	// DefaultBirthdayRefresh re-sends from each hard-side socket, keeping
	// its mapping open while the easy side probes.
	DefaultBirthdayRefresh = time.Second
	// DefaultBirthdayRetry spaces attempts for one peer: each costs
	// hundreds of sockets and thousands of packets, so it runs rarely.
	DefaultBirthdayRetry = 2 * time.Minute
	// DefaultPunchRate bounds the punch packets a second to one peer:
	// maxCandidates plus predicted ports, every DefaultPunchInterval, fit.
	DefaultPunchRate = (maxCandidates + maxPredicted*predictCount) * int(time.Second/DefaultPunchInterval)
	// DefaultPunchRateTotal bounds punch packets a second to all peers: a
	// node joining a large mesh punches at most this hard, and a hostile
	// peer can't raise it.
	DefaultPunchRateTotal = 1000
	// DefaultMaxRound bounds how long news can stretch one punch round.
	DefaultMaxRound = 2 * DefaultPunchDuration
	// DefaultCallMeMaybeGap is the least time between a peer's
	// call-me-maybe messages that are acted on.
	DefaultCallMeMaybeGap = time.Second
	// DefaultRelayCheck spaces the relayed pings that check a relay node
	// carries its peers (relaycheck.go).
	DefaultRelayCheck = wire.RelayCheck
	// DefaultHoldTimeout bounds how long a round holds its pings to the
	// peer's public mappings for the peer's ready (order.go): the relay
	// carries a ready in a round trip or two; past half a round, ping
	// anyway (a relay that drops it, a peer that can't prime).
	DefaultHoldTimeout = DefaultPunchDuration / 2
	// DefaultReadyInterval spaces the readies a round sends until a path
	// is up: one is enough unless the relay loses it or the peer's pings
	// can't arrive yet (behind a CGN only this side's full pings open it),
	// when the next one releases the peer.
	DefaultReadyInterval = 2 * DefaultPunchInterval
	// DefaultQuietPeriod is the least wait after an ordered round failed:
	// Linux conntrack forgets an unanswered UDP flow 30 s after its last
	// packet (nf_conntrack_udp_timeout), so a tracked early packet is gone
	// once nobody has sent to it for this long.
	DefaultQuietPeriod = 35 * time.Second
)

// addrTTLKeepalives: a confirmed source address is forgotten after this
// many keepalive intervals without a pong from it, one more than a dead
// path takes to be noticed.
const addrTTLKeepalives = DefaultMissedPongs + 1

// betterRTTRatio is the hysteresis for switching paths on latency alone: a
// new path must be 20% faster, so two similar paths don't flap.
const betterRTTRatio = 0.8

// Timing holds the manager's timers; tests scale them down.
type Timing struct {
	PunchInterval   time.Duration
	PunchDuration   time.Duration
	Settle          time.Duration
	ActiveHeartbeat time.Duration
	ActiveWindow    time.Duration
	// Keepalive is the heartbeat of idle paths: below the NATs' idle
	// timeouts (config keepalive).
	Keepalive     time.Duration
	MissedPongs   int
	RetryMin      time.Duration
	RetryMax      time.Duration
	PingTimeout   time.Duration
	RendezvousGap time.Duration
	Tick          time.Duration
	TCPRetry      time.Duration
	// The birthday technique (birthday.go).
	BirthdayRate     int // probes a second
	BirthdayDuration time.Duration
	BirthdayRefresh  time.Duration
	BirthdayRetry    time.Duration
	// What a peer can make this node send (limits.go).
	PunchRate      int // punch packets a second to one peer
	PunchRateTotal int // punch packets a second to all peers
	MaxRound       time.Duration
	CallMeMaybeGap time.Duration
	// Ordered punching (order.go).
	HoldTimeout   time.Duration
	ReadyInterval time.Duration
	QuietPeriod   time.Duration
	// AddrTTL forgets a source address no pong has confirmed for so long.
	AddrTTL time.Duration
	// RelayCheck spaces relay checks with relayed peers (relaycheck.go).
	RelayCheck time.Duration
	// Path MTU search (pmtu.Config): a round's wait for its answers, the
	// re-search above a settled MTU, the confirmation of it under traffic.
	PMTUWait    time.Duration
	PMTURaise   time.Duration
	PMTUConfirm time.Duration
}

// DefaultTiming returns the defaults with the given keepalive.
func DefaultTiming(keepalive time.Duration) Timing {
	return Timing{
		PunchInterval:    DefaultPunchInterval,
		PunchDuration:    DefaultPunchDuration,
		Settle:           DefaultSettle,
		ActiveHeartbeat:  DefaultActiveHeartbeat,
		ActiveWindow:     DefaultActiveWindow,
		Keepalive:        keepalive,
		MissedPongs:      DefaultMissedPongs,
		RetryMin:         DefaultRetryMin,
		RetryMax:         DefaultRetryMax,
		PingTimeout:      DefaultPingTimeout,
		RendezvousGap:    DefaultRendezvousGap,
		Tick:             defaultTick,
		TCPRetry:         DefaultTCPRetry,
		BirthdayRate:     DefaultBirthdayRate,
		BirthdayDuration: DefaultBirthdayDuration,
		BirthdayRefresh:  DefaultBirthdayRefresh,
		BirthdayRetry:    DefaultBirthdayRetry,
		PunchRate:        DefaultPunchRate,
		PunchRateTotal:   DefaultPunchRateTotal,
		MaxRound:         DefaultMaxRound,
		CallMeMaybeGap:   DefaultCallMeMaybeGap,
		HoldTimeout:      DefaultHoldTimeout,
		ReadyInterval:    DefaultReadyInterval,
		QuietPeriod:      DefaultQuietPeriod,
		AddrTTL:          addrTTLKeepalives * keepalive,
		RelayCheck:       DefaultRelayCheck,
		PMTUWait:         pmtu.DefaultWait,
		PMTURaise:        pmtu.DefaultRaise,
		PMTUConfirm:      pmtu.DefaultConfirm,
	}
}

// Scaled divides every duration by f (and multiplies rates by it), for
// in-process labs that run production behaviour faster than real time. The
// relations between timers, and the counts (missed pongs), stay.
func (t Timing) Scaled(f float64) Timing {
	d := func(x time.Duration) time.Duration { return time.Duration(float64(x) / f) }
	return Timing{
		PunchInterval:    d(t.PunchInterval),
		PunchDuration:    d(t.PunchDuration),
		Settle:           d(t.Settle),
		ActiveHeartbeat:  d(t.ActiveHeartbeat),
		ActiveWindow:     d(t.ActiveWindow),
		Keepalive:        d(t.Keepalive),
		MissedPongs:      t.MissedPongs,
		RetryMin:         d(t.RetryMin),
		RetryMax:         d(t.RetryMax),
		PingTimeout:      d(t.PingTimeout),
		RendezvousGap:    d(t.RendezvousGap),
		Tick:             d(t.Tick),
		TCPRetry:         d(t.TCPRetry),
		BirthdayRate:     int(float64(t.BirthdayRate) * f),
		BirthdayDuration: d(t.BirthdayDuration),
		BirthdayRefresh:  d(t.BirthdayRefresh),
		BirthdayRetry:    d(t.BirthdayRetry),
		PunchRate:        int(float64(t.PunchRate) * f),
		PunchRateTotal:   int(float64(t.PunchRateTotal) * f),
		MaxRound:         d(t.MaxRound),
		CallMeMaybeGap:   d(t.CallMeMaybeGap),
		HoldTimeout:      d(t.HoldTimeout),
		ReadyInterval:    d(t.ReadyInterval),
		QuietPeriod:      d(t.QuietPeriod),
		AddrTTL:          d(t.AddrTTL),
		RelayCheck:       d(t.RelayCheck),
		PMTUWait:         d(t.PMTUWait),
		PMTURaise:        d(t.PMTURaise),
		PMTUConfirm:      d(t.PMTUConfirm),
	}
}

// pmtuConfig is the path MTU search's configuration for a TUN MTU.
func (t Timing) pmtuConfig(tunMTU int) pmtu.Config {
	c := pmtu.DefaultConfig(tunMTU)
	c.Wait, c.Raise, c.Confirm = t.PMTUWait, t.PMTURaise, t.PMTUConfirm
	return c
}
