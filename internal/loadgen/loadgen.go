// Package loadgen loads one coordinator with simulated nodes that speak
// the real protocol (node/control: registration with proof of key, the
// stream with its challenge, pings and reconnects) on loopback, and
// measures what issue 14 asks of it: how long until every node has its
// map, how long one change takes to reach every peer, the coordinator's
// RSS and CPU time, registrations per second and the bytes it sends.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/control"
)

// Config is one run.
type Config struct {
	Nodes int
	// Group scopes the peer maps: an access policy lets the nodes of each
	// group of this many (by tag) see each other only. 0: no policy, every
	// node sees every other.
	Group int
	// PolicyFirst sets the policy before the nodes register, so that
	// each registration joins a mesh under a policy (what
	// registrations per second then measure); otherwise it is set once
	// all are registered.
	PolicyFirst bool
	// Herd, after the changes and churn, drops every stream at once and
	// opens them all again (a coordinator's restart as its nodes see
	// it, or a network blip): nodes that hold a map say which, and a
	// coordinator that can resume sends only what changed.
	Herd bool
	// Rounds is how many changes (a node's new candidates) and how many
	// churns (a node going offline, then online) are measured.
	Rounds int
	// PerSource is how many nodes dial from each loopback source address
	// (127.10.x.y): real nodes come from many addresses, and the
	// coordinator's pre-authentication gate counts per source. 0: all
	// from the kernel's choice.
	PerSource int
	// Workers register nodes concurrently.
	Workers int
	// Timeout bounds each phase.
	Timeout time.Duration
	// Progress, if set, gets a line per phase.
	Progress func(format string, args ...any)
}

func (c *Config) defaults() {
	if c.Rounds <= 0 {
		c.Rounds = 5
	}
	if c.Workers <= 0 {
		c.Workers = 16
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Minute
	}
	if c.Progress == nil {
		c.Progress = func(string, ...any) {}
	}
}

// Report is what a run measured.
type Report struct {
	Nodes, Group int
	// Registration: how long the nodes took to register, one worker
	// each of Workers at a time.
	Register time.Duration
	// Converge is the time from opening every stream at once until every
	// node had its map with every peer online; Converged says whether it
	// happened within the timeout, and how many had.
	Converge  time.Duration
	Converged int
	// Welcomes counts the maps sent until then (more than Nodes: streams
	// that dropped and came back), Drops the streams that dropped.
	Welcomes, Drops int
	// ConvergeBytes is what the coordinator sent until then (TLS records
	// on the wire, registration answers excluded).
	ConvergeBytes int64
	// Change is how long a node's new candidates took to reach each peer,
	// over all rounds, sorted; ChangeMissed counts peers that never got
	// them within the timeout.
	Change       []time.Duration
	ChangeMissed int
	// Offline and Online are how long a node's disconnect and reconnect
	// took to reach each peer, over all rounds, sorted.
	Offline, Online []time.Duration
	ChurnMissed     int
	// ChurnWelcomeBytes is the size of the welcomes' JSON a node that
	// went offline got when it came back, over all rounds: its full
	// map, or what changed since the one it held.
	ChurnWelcomeBytes int64
	// Usage is the coordinator's after convergence; CPU counts from its
	// start (registrations included), ConvergeCPU the convergence alone.
	Usage       Usage
	ConvergeCPU float64
	// End is the coordinator's at the end, after the changes and churn
	// (and the herd).
	End Usage
	// HerdTime is how long the herd took until every node had its map
	// with every peer online again, HerdConverged how many had by then,
	// HerdBytes what the coordinator sent meanwhile (HerdWelcomeBytes of
	// it the welcomes' JSON), HerdResumed how many welcomes resumed a
	// map rather than sent it whole.
	HerdTime                   time.Duration
	HerdConverged, HerdResumed int
	HerdBytes                  int64
	HerdWelcomeBytes           int64
}

// RegistrationsPerSecond is the registration rate.
func (r Report) RegistrationsPerSecond() float64 {
	return float64(r.Nodes) / r.Register.Seconds()
}

// Quantile is the q-quantile (nearest rank) of sorted durations; 0 when
// there are none.
func Quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(q*float64(len(d))+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// raiseFileLimit lifts the soft limit on open files to the hard one:
// every node holds a connection, and a coordinator started from here
// inherits the limit.
func raiseFileLimit(need int) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur < uint64(need) {
		return fmt.Errorf("%d nodes need about %d open files; the hard limit is %d (raise it with ulimit -Hn as root)", need/2, need, l.Cur)
	}
	return nil
}

// RaiseFileLimit raises the open-files limit for n nodes whose
// coordinator runs in another process (in this process, twice that).
func RaiseFileLimit(n int) error { return raiseFileLimit(n + 256) }

// sourceAddr is the loopback address the i-th group of nodes dials from.
func sourceAddr(i int) net.IP {
	return net.IPv4(127, 10, byte(i/250), byte(i%250+1))
}

// policyText is a policy whose rules let each group's tag reach itself.
func policyText(groups int) string {
	var b strings.Builder
	b.WriteString("rules:\n")
	for g := range groups {
		fmt.Fprintf(&b, "  - name: g%d\n    from: tag:g%d\n    to: tag:g%d\n", g, g, g)
	}
	return b.String()
}

// run is one run's state.
type run struct {
	cfg     Config
	t       Target
	mesh    *mesh
	clients []*client
	url     string
	key     crypto.PublicKey
}

// Run registers cfg.Nodes nodes at t, opens all their streams at once,
// waits until every node has its map, then measures changes and churn.
func Run(ctx context.Context, t Target, cfg Config) (Report, error) {
	cfg.defaults()
	r := &run{cfg: cfg, t: t, mesh: &mesh{index: make(map[crypto.PublicKey]int, cfg.Nodes), reasons: map[string]int{}}}
	rep := Report{Nodes: cfg.Nodes, Group: cfg.Group}
	defer r.stopAll()
	if err := r.register(ctx, &rep); err != nil {
		return rep, err
	}
	if err := r.converge(ctx, &rep); err != nil {
		return rep, err
	}
	if err := r.changes(ctx, &rep); err != nil {
		return rep, err
	}
	if err := r.churn(ctx, &rep); err != nil {
		return rep, err
	}
	if cfg.Herd {
		if err := r.herd(ctx, &rep); err != nil {
			return rep, err
		}
	}
	var err error
	rep.End, err = usage(t.PID())
	return rep, err
}

// groupOf is node i's group; 0 for all without groups.
func (r *run) groupOf(i int) int {
	if r.cfg.Group <= 0 {
		return 0
	}
	return i / r.cfg.Group
}

// peersOf lists node i's peers: its group, or everyone.
func (r *run) peersOf(i int) []int {
	lo, hi := 0, len(r.clients)
	if r.cfg.Group > 0 {
		lo = r.groupOf(i) * r.cfg.Group
		hi = min(lo+r.cfg.Group, hi)
	}
	out := make([]int, 0, hi-lo-1)
	for j := lo; j < hi; j++ {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

// wantPeers is how many peers node i sees.
func (r *run) wantPeers(i int) int {
	if r.cfg.Group <= 0 {
		return len(r.clients) - 1
	}
	lo := r.groupOf(i) * r.cfg.Group
	return min(lo+r.cfg.Group, len(r.clients)) - lo - 1
}

// register makes the tokens, registers every node, and sets the policy
// before or after.
func (r *run) register(ctx context.Context, rep *Report) error {
	n := r.cfg.Nodes
	groups := 1
	if r.cfg.Group > 0 {
		groups = (n + r.cfg.Group - 1) / r.cfg.Group
	}
	toks := make([]string, groups)
	for g := range groups {
		var tags []string
		if r.cfg.Group > 0 {
			tags = []string{fmt.Sprintf("g%d", g)}
		}
		tok, err := r.t.Token(ctx, tags)
		if err != nil {
			return fmt.Errorf("create a token: %w", err)
		}
		toks[g] = tok
	}
	tok, err := crypto.ParseToken(toks[0])
	if err != nil {
		return err
	}
	r.url = tok.URL
	// One HTTP client per source address, shared by its nodes.
	clients := map[int]*http.Client{}
	r.clients = make([]*client, n)
	for i := range n {
		priv, err := crypto.NewPrivateKey()
		if err != nil {
			return err
		}
		src := -1
		if r.cfg.PerSource > 0 {
			src = i / r.cfg.PerSource
		}
		hc := clients[src]
		if hc == nil {
			var ip net.IP
			if src >= 0 {
				ip = sourceAddr(src)
			}
			hc = httpClient(tok.Pin, ip, &r.mesh.bytes)
			clients[src] = hc
		}
		r.clients[i] = &client{idx: i, priv: priv, name: fmt.Sprintf("n%05d", i), group: r.groupOf(i), mesh: r.mesh, hc: hc, online: make([]uint64, (n+63)/64)}
		r.mesh.index[priv.Public()] = i
	}
	if r.cfg.Group > 0 && r.cfg.PolicyFirst {
		if err := r.setPolicy(ctx, groups); err != nil {
			return err
		}
	}
	r.cfg.Progress("registering %d nodes (%d workers; successful registrations cost no per-source budget, so no limit needs relaxing)", n, r.cfg.Workers)
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, r.cfg.Workers)
	start := time.Now()
	for w := range r.cfg.Workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				c := r.clients[i]
				resp, err := registerRetry(ctx, c, toks[c.group], tok)
				if err != nil {
					errs[w] = fmt.Errorf("register node %d: %w", i, err)
					cancel()
					return
				}
				if i == 0 {
					r.key = resp.CoordinatorKey
				}
			}
		})
	}
	wg.Wait()
	rep.Register = time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.cfg.Progress("registered %d nodes in %v (%.0f/s)", n, rep.Register.Round(time.Millisecond), rep.RegistrationsPerSecond())
	if r.cfg.Group > 0 && !r.cfg.PolicyFirst {
		return r.setPolicy(ctx, groups)
	}
	return nil
}

// setPolicy sets the policy of the groups.
func (r *run) setPolicy(ctx context.Context, groups int) error {
	start := time.Now()
	if err := r.t.SetPolicy(ctx, policyText(groups)); err != nil {
		return fmt.Errorf("set the policy: %w", err)
	}
	r.cfg.Progress("policy of %d groups set in %v", groups, time.Since(start).Round(time.Millisecond))
	return nil
}

// registerAttempts bounds the retries of one registration that failed
// for a passing reason (a connection refused by a busy coordinator).
const registerAttempts = 5

func registerRetry(ctx context.Context, c *client, tokString string, tok crypto.Token) (wire.RegisterResponse, error) {
	var err error
	for a := range registerAttempts {
		var resp wire.RegisterResponse
		resp, err = control.Register(ctx, c.hc, tok.Coordinators()[0], tokString, c.priv, c.name)
		if err == nil || control.IsPermanent(err) || ctx.Err() != nil {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return wire.RegisterResponse{}, ctx.Err()
		case <-time.After(time.Duration(a+1) * 200 * time.Millisecond):
		}
	}
	return wire.RegisterResponse{}, err
}

// poll checks cond every d until it holds or the phase's timeout passes;
// it reports whether it held.
func (r *run) poll(ctx context.Context, d time.Duration, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	t := time.NewTicker(d)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// openAll opens every stream at once and waits until every node has its
// map with every peer online: how many had, how long it took, and whether
// all did within the timeout.
func (r *run) openAll(ctx context.Context) (count int, took time.Duration, ok bool) {
	start := time.Now()
	for _, c := range r.clients {
		c.start(r.url, r.key)
	}
	// Nodes already seen converged are not asked again: each check of
	// the rest is cheap, and a node that drops later shows in Drops.
	done := make([]bool, len(r.clients))
	last := time.Now()
	ok = r.poll(ctx, 20*time.Millisecond, func() bool {
		for i, c := range r.clients {
			if !done[i] && c.converged(r.wantPeers(i)) {
				done[i] = true
				count++
			}
		}
		if time.Since(last) > 5*time.Second {
			last = time.Now()
			r.cfg.Progress("  %d of %d converged after %v", count, len(r.clients), time.Since(start).Round(time.Second))
		}
		return count == len(r.clients)
	})
	return count, time.Since(start), ok
}

// converge opens every stream at once and waits until every node has its
// map with every peer online.
func (r *run) converge(ctx context.Context, rep *Report) error {
	before, err := usage(r.t.PID())
	if err != nil {
		return err
	}
	r.mesh.bytes.Store(0)
	r.cfg.Progress("opening %d streams at once", len(r.clients))
	count, took, ok := r.openAll(ctx)
	rep.Converge = took
	rep.Converged = count
	rep.ConvergeBytes = r.mesh.bytes.Load()
	for _, c := range r.clients {
		w, d, _, _ := c.counts()
		rep.Welcomes += w
		rep.Drops += d
	}
	if rep.Usage, err = usage(r.t.PID()); err != nil {
		return err
	}
	rep.ConvergeCPU = rep.Usage.CPU - before.CPU
	if rep.Drops > 0 {
		r.cfg.Progress("streams dropped: %s", strings.Join(r.mesh.topReasons(3), "; "))
	}
	if !ok {
		return fmt.Errorf("%d of %d nodes converged within %v", count, len(r.clients), r.cfg.Timeout)
	}
	r.cfg.Progress("converged in %v: %d welcomes, %d drops, %d MB sent, coordinator RSS %d MB (peak %d MB), %.1f CPU s",
		rep.Converge.Round(time.Millisecond), rep.Welcomes, rep.Drops, rep.ConvergeBytes>>20, rep.Usage.RSS>>20, rep.Usage.PeakRSS>>20, rep.ConvergeCPU)
	return nil
}

// chosen is the node changed in round k: spread over the mesh.
func (r *run) chosen(k int) int {
	return (k*len(r.clients)/r.cfg.Rounds + k) % len(r.clients)
}

// spread sets p, runs act, and collects when each of node p.peer's peers
// saw the event.
func (r *run) spread(ctx context.Context, p *probe, act func() error) (lat []time.Duration, missed int, err error) {
	peers := r.peersOf(p.peer)
	for _, j := range peers {
		r.clients[j].seen.Store(0)
	}
	r.mesh.start.Store(time.Now().UnixNano())
	r.mesh.probe.Store(p)
	defer r.mesh.probe.Store(nil)
	if err := act(); err != nil {
		return nil, 0, err
	}
	r.poll(ctx, 5*time.Millisecond, func() bool {
		for _, j := range peers {
			if r.clients[j].seen.Load() == 0 {
				return false
			}
		}
		return true
	})
	for _, j := range peers {
		if s := r.clients[j].seen.Load(); s != 0 {
			lat = append(lat, time.Duration(s))
		} else {
			missed++
		}
	}
	return lat, missed, nil
}

// changes gives a node new candidates each round and waits until every
// peer has them.
func (r *run) changes(ctx context.Context, rep *Report) error {
	for k := range r.cfg.Rounds {
		i := r.chosen(k)
		port := uint16(40000 + k)
		ep := wire.Endpoint{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 77, byte(i >> 8), byte(i)}), port), Kind: wire.EndpointLAN}
		lat, missed, err := r.spread(ctx, &probe{peer: i, port: port}, func() error {
			return r.clients[i].stream.Send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: []wire.Endpoint{ep}})
		})
		if err != nil {
			return fmt.Errorf("change round %d: %w", k, err)
		}
		rep.Change = append(rep.Change, lat...)
		rep.ChangeMissed += missed
	}
	slices.Sort(rep.Change)
	r.cfg.Progress("change to every peer: p50 %v, p99 %v, max %v (%d deliveries, %d missed)",
		Quantile(rep.Change, 0.5), Quantile(rep.Change, 0.99), Quantile(rep.Change, 1), len(rep.Change), rep.ChangeMissed)
	return nil
}

// churn takes a node offline, waits until every peer saw it go, brings
// it back and waits until every peer saw it return, each round.
func (r *run) churn(ctx context.Context, rep *Report) error {
	for k := range r.cfg.Rounds {
		i := r.chosen(k)
		c := r.clients[i]
		_, _, _, before := c.counts()
		lat, missed, err := r.spread(ctx, &probe{peer: i, online: false}, func() error { c.stop(); return nil })
		if err != nil {
			return err
		}
		rep.Offline = append(rep.Offline, lat...)
		rep.ChurnMissed += missed
		lat, missed, err = r.spread(ctx, &probe{peer: i, online: true}, func() error { c.start(r.url, r.key); return nil })
		if err != nil {
			return err
		}
		rep.Online = append(rep.Online, lat...)
		rep.ChurnMissed += missed
		if !r.poll(ctx, 10*time.Millisecond, func() bool { return c.converged(r.wantPeers(i)) }) {
			return fmt.Errorf("churn round %d: node %d did not get its map back", k, i)
		}
		_, _, _, after := c.counts()
		rep.ChurnWelcomeBytes += int64(after - before)
	}
	slices.Sort(rep.Offline)
	slices.Sort(rep.Online)
	r.cfg.Progress("churn: offline p50 %v p99 %v, online p50 %v p99 %v (%d missed); %d bytes of welcomes to the returning nodes",
		Quantile(rep.Offline, 0.5), Quantile(rep.Offline, 0.99), Quantile(rep.Online, 0.5), Quantile(rep.Online, 0.99), rep.ChurnMissed, rep.ChurnWelcomeBytes)
	return nil
}

// herd drops every stream, then opens them all at once and waits until
// every node has its map with every peer online again.
func (r *run) herd(ctx context.Context, rep *Report) error {
	r.stopAll()
	welcomed := func() (resumed int, bytes int64) {
		for _, c := range r.clients {
			_, _, n, b := c.counts()
			resumed += n
			bytes += int64(b)
		}
		return resumed, bytes
	}
	resumedBefore, bytesBefore := welcomed()
	r.mesh.bytes.Store(0)
	r.cfg.Progress("herd: %d streams dropped, opening them all at once", len(r.clients))
	var ok bool
	rep.HerdConverged, rep.HerdTime, ok = r.openAll(ctx)
	rep.HerdBytes = r.mesh.bytes.Load()
	resumed, bytes := welcomed()
	rep.HerdResumed, rep.HerdWelcomeBytes = resumed-resumedBefore, bytes-bytesBefore
	if !ok {
		return fmt.Errorf("herd: %d of %d nodes converged within %v", rep.HerdConverged, len(r.clients), r.cfg.Timeout)
	}
	r.cfg.Progress("herd converged in %v: %d KB sent, %d KB of it welcomes, %d of %d welcomes resumed",
		rep.HerdTime.Round(time.Millisecond), rep.HerdBytes>>10, rep.HerdWelcomeBytes>>10, rep.HerdResumed, len(r.clients))
	return nil
}

// stopAll ends every stream, at most Workers*8 at a time.
func (r *run) stopAll() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.cfg.Workers*8)
	for _, c := range r.clients {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c.stop()
		})
	}
	wg.Wait()
}
