package perf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

// Env is what the comparison runs in: a lab with a running coordinator
// and a reusable join token for meshnode's nodes.
type Env struct {
	Lab   *netlab.Lab
	Coord *netlab.Coordinator
	Token string
	// Version is the meshnode binary's, as the report shows it.
	Version string
	// Logf reports progress and clean-up errors.
	Logf func(format string, args ...any)
}

// leave takes a node down and off the coordinator, so later nodes don't
// see it.
func (e Env) leave(n *netlab.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := errors.Join(n.Down(ctx), e.Coord.RemoveNode(ctx, n.Name)); err != nil {
		e.Logf("node %s leaving: %v", n.Name, err)
	}
}

// closeSite removes a site and its processes.
func (e Env) closeSite(s *netlab.Site) {
	if err := s.Close(); err != nil {
		e.Logf("remove site %d: %v", s.Index, err)
	}
}

// kind says which contender a row is; the ratios look up Nebula and
// stock wireguard-go by it.
type kind int

const (
	kindRaw kind = iota
	kindWireguardGo
	kindMeshnode
	kindMeshnodeBefore
	kindNebula
)

// contender is one data path, set up and ready to carry iperf3.
type contender struct {
	row *Row
	// client runs iperf3 towards target, where its host B's server is.
	client *netlab.Host
	target netip.Addr
	// procs are the contender's processes at both ends, whose CPU time
	// is measured; none for the raw path.
	procs []*netlab.Proc
	// nodes are meshnode's nodes, which Plan.ProfileDir profiles.
	nodes []*netlab.Node
}

// tools are the programs the comparison runs besides the lab's own.
type tools struct{ iperf3, ethtool string }

// lookTools finds iperf3 and ethtool, or says which packages are missing.
func lookTools() (tools, error) {
	ip, err1 := iperf3()
	et, err2 := ethtool()
	return tools{iperf3: ip, ethtool: et}, errors.Join(err1, err2)
}

// Compare runs plan in env: the throughput of every contender on both
// wires, interleaved, then the time to first ping. A contender that fails
// to come up or to carry a run is reported in its row; the error is for a
// lab that could not be built.
func Compare(ctx context.Context, env Env, plan Plan) (*Report, error) {
	tl, err := lookTools()
	if err != nil {
		return nil, err
	}
	rep := newReport(env, plan)
	// Each contender gets its own host behind each NAT: a tunnel on the
	// same host would offer its interface's address as a candidate, and
	// one contender would run inside another.
	hosts := 2
	if plan.WireguardGo {
		hosts++
	}
	if plan.Nebula != nil {
		hosts++
	}
	if plan.Before != "" {
		hosts++
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	sa, err := env.Lab.AddSite(sctx, netlab.SiteConfig{Kind: netlab.PortRestricted, Hosts: hosts})
	if err != nil {
		return nil, err
	}
	defer env.closeSite(sa)
	sb, err := env.Lab.AddSite(sctx, netlab.SiteConfig{Kind: netlab.PortRestricted, Hosts: hosts})
	if err != nil {
		return nil, err
	}
	defer env.closeSite(sb)
	cs, cleanup := setUp(ctx, env, tl, plan, rep, sa, sb)
	defer cleanup()
	for r := range plan.Runs {
		for _, w := range wires {
			if err := setWire(ctx, tl.ethtool, env.Lab, w); err != nil {
				return nil, err
			}
			for _, c := range cs {
				// The idle RTT first: never while iperf3 loads the path.
				rtt, err := idleRTT(ctx, c.client.NS, env.Lab.Tools().Ping, c.target)
				if err != nil {
					c.row.Errs = append(c.row.Errs, fmt.Sprintf("round %d, %s, idle RTT: %v", r+1, w, err))
				} else {
					c.row.RTTs[w] = append(c.row.RTTs[w], rtt)
				}
				var profiled func()
				if plan.ProfileDir != "" && r == plan.Runs-1 && c.row.Kind == kindMeshnode {
					profiled = profile(ctx, env, c.nodes, plan.ProfileDir, w, plan.Seconds)
				}
				s, err := measure(ctx, tl.iperf3, c, plan.Seconds)
				if profiled != nil {
					profiled()
				}
				if err != nil {
					c.row.Errs = append(c.row.Errs, fmt.Sprintf("round %d, %s: %v", r+1, w, err))
					continue
				}
				s.Round = r
				env.Logf("round %d, %s, %s: %.0f Mbit/s, CPU %.0f%%, idle RTT %v", r+1, w, c.row.Name, s.Mbps, s.CPU, rtt)
				c.row.Samples[w] = append(c.row.Samples[w], s)
			}
		}
	}
	if err := setWire(ctx, tl.ethtool, env.Lab, offloadWire); err != nil {
		return nil, err
	}
	cleanup()
	for k, p := range plan.Pairs {
		row := &PingRow{Pair: p, Meshnode: measurePair(ctx, env, p, plan.PairRuns, fmt.Sprintf("fp%d", k), meshnodeFirst(env))}
		env.Logf("time to first ping, %s: %v %v", p.Name, row.Meshnode.Times, row.Meshnode.Errs)
		if p.Nebula && plan.Nebula != nil {
			fp := measurePair(ctx, env, p, plan.PairRuns, fmt.Sprintf("nfp%d", k), nebulaFirst(env, *plan.Nebula))
			env.Logf("time to first ping (Nebula), %s: %v %v", p.Name, fp.Times, fp.Errs)
			row.Nebula = &fp
		}
		rep.Pings = append(rep.Pings, row)
	}
	return rep, nil
}

// profile records the CPU of each of nodes for seconds, from now, into
// dir/NODE-WIRE.prof (`meshnode debug profile`); the returned func waits
// for the profiles and reports what failed.
func profile(ctx context.Context, env Env, nodes []*netlab.Node, dir string, w wire, seconds int) func() {
	var wg sync.WaitGroup
	for _, n := range nodes {
		out := filepath.Join(dir, fmt.Sprintf("%s-%s.prof", n.Name, strings.ReplaceAll(w.String(), " ", "-")))
		wg.Go(func() {
			if err := n.Profile(ctx, seconds, out); err != nil {
				env.Logf("profile of %s: %v", n.Name, err)
				return
			}
			env.Logf("CPU profile of %s on the %s: %s", n.Name, w, out)
		})
	}
	return wg.Wait
}

// setUp brings every contender of plan up between sites sa and sb, the
// i-th on the i-th host of each, with an iperf3 server on its host in sb;
// one that fails keeps its row, with the error. cleanup takes them down
// (meshnode's nodes leave the coordinator); it is safe to call twice.
func setUp(ctx context.Context, env Env, tl tools, plan Plan, rep *Report, sa, sb *netlab.Site) ([]contender, func()) {
	var cs []contender
	var downs []func()
	add := func(row *Row, setup func(i int) (contender, func(), error)) {
		i := len(rep.Rows)
		rep.Rows = append(rep.Rows, row)
		env.Logf("setting up %s", row.Name)
		c, down, err := setup(i)
		if down != nil {
			downs = append(downs, down)
		}
		if err == nil {
			c.client = sa.Hosts[i]
			err = startIperfServer(ctx, tl.iperf3, sb.Hosts[i].NS, fmt.Sprintf("iperf3-server-%d", i))
		}
		if err != nil {
			row.Errs = append(row.Errs, "setup: "+err.Error())
			return
		}
		c.row = row
		cs = append(cs, c)
	}
	add(&Row{Kind: kindRaw, Name: "raw path, no tunnel"}, func(i int) (contender, func(), error) {
		return setUpRaw(ctx, sb, i)
	})
	if plan.WireguardGo {
		add(&Row{Kind: kindWireguardGo, Name: fmt.Sprintf("stock wireguard-go (MTU %d)", wgMTU)}, func(i int) (contender, func(), error) {
			c, v, err := setUpWireguardGo(ctx, env, sa, sb, i)
			rep.WireguardGoVersion = v
			return c, nil, err
		})
	}
	add(&Row{Kind: kindMeshnode, Name: fmt.Sprintf("meshnode (MTU %d)", meshnodeMTU)}, func(i int) (contender, func(), error) {
		return setUpMeshnode(ctx, env, sa.Hosts[i], sb.Hosts[i], "", "perf")
	})
	if plan.Before != "" {
		add(&Row{Kind: kindMeshnodeBefore, Name: fmt.Sprintf("meshnode before (MTU %d)", meshnodeMTU)}, func(i int) (contender, func(), error) {
			return setUpMeshnode(ctx, env, sa.Hosts[i], sb.Hosts[i], plan.Before, "before")
		})
	}
	if plan.Nebula != nil {
		add(&Row{Kind: kindNebula, Name: fmt.Sprintf("Nebula (MTU %d)", nebulaMTU)}, func(i int) (contender, func(), error) {
			return setUpNebula(ctx, env, *plan.Nebula, sa.Hosts[i], sb.Hosts[i])
		})
	}
	done := false
	return cs, func() {
		if done {
			return
		}
		done = true
		for _, d := range slices.Backward(downs) {
			d()
		}
	}
}

// measure runs one iperf3 stream over c and the CPU time of its processes.
func measure(ctx context.Context, iperf string, c contender, seconds int) (Sample, error) {
	pids := make([]int, 0, len(c.procs))
	for _, p := range c.procs {
		if !p.Running() {
			return Sample{}, fmt.Errorf("%s exited: %v\n%s", p.Name(), p.ExitErr(), p.Tail(10))
		}
		pids = append(pids, p.PID())
	}
	before, err := cpuTicks(pids)
	if err != nil {
		return Sample{}, err
	}
	start := time.Now()
	mbps, err := runIperf(ctx, iperf, c.client.NS, c.target, seconds)
	wall := time.Since(start)
	if err != nil {
		return Sample{}, err
	}
	after, err := cpuTicks(pids)
	if err != nil {
		return Sample{}, err
	}
	s := Sample{Mbps: mbps}
	if len(pids) > 0 {
		s.CPU, s.HasCPU = cpuPercent(after-before, wall), true
	}
	return s, nil
}

// pollWhile polls cond until it holds, as long as p runs, for at most
// serverTimeout: how a contender's daemon is waited for.
func pollWhile(ctx context.Context, p *netlab.Proc, cond func(context.Context) error) error {
	return netlab.Poll(ctx, serverTimeout, netlab.PollInterval, func(ctx context.Context) error {
		if !p.Running() {
			return fmt.Errorf("%s exited: %v\n%s", p.Name(), p.ExitErr(), p.Tail(5))
		}
		return cond(ctx)
	})
}

// setUpRaw forwards iperf3's port and ICMP echo requests (the idle RTT's
// pings) on site b's router to its i-th host: the plain path through both
// NATs.
func setUpRaw(ctx context.Context, b *netlab.Site, i int) (contender, func(), error) {
	h := b.Hosts[i]
	if err := b.Router.ForwardTCP(ctx, iperfPort, netip.AddrPortFrom(h.Addr, iperfPort)); err != nil {
		return contender{}, nil, err
	}
	if err := b.Router.ForwardEcho(ctx, h.Addr); err != nil {
		return contender{}, nil, err
	}
	return contender{target: b.Router.WAN()}, nil, nil
}

// machine describes this machine for the report: kernel, CPU model and
// count, and the load average over the last minute (work of others that
// shares the cores makes the figures noisy).
func machine() (kernel, cpu string, cpus int, load string) {
	kernel = "(unknown kernel)"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	load = "(unknown)"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			load = f[0]
		}
	}
	cpu = "(unknown CPU)"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	return kernel, cpu, runtime.NumCPU(), load
}
