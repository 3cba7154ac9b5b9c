package perf

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/e2e/netlab"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{2, 2, 9}, 2},
	} {
		if got := median(tc.xs); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.xs, got, tc.want)
		}
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median of nothing = %v, want NaN", got)
	}
	xs := []float64{3, 1, 2}
	median(xs)
	if xs[0] != 3 || xs[1] != 1 {
		t.Errorf("median sorted its argument: %v", xs)
	}
}

func TestThousands(t *testing.T) {
	for x, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 14076.2: "14,076", 1234567: "1,234,567", math.NaN(): "failed"} {
		if got := thousands(x); got != want {
			t.Errorf("thousands(%v) = %q, want %q", x, got, want)
		}
	}
}

// samples makes a row's samples on one wire from rates, with CPU figures
// when cpu is set.
func samples(cpu bool, rates ...float64) []Sample {
	s := make([]Sample, len(rates))
	for i, r := range rates {
		s[i] = Sample{Round: i, Mbps: r, CPU: r / 20, HasCPU: cpu}
	}
	return s
}

func TestThroughputTable(t *testing.T) {
	r := &Report{Rows: []*Row{
		{Kind: kindRaw, Name: "raw path, no tunnel", Samples: [2][]Sample{samples(false, 14000, 15000, 13000), samples(false, 16000)}},
		{Kind: kindWireguardGo, Name: "stock wireguard-go (MTU 1420)", Samples: [2][]Sample{samples(true, 3000, 3100, 2900), samples(true, 1100)}},
		{Kind: kindMeshnode, Name: "meshnode (MTU 1420)", Samples: [2][]Sample{samples(true, 2000, 3200, 2880), samples(true)}, Errs: []string{"round 1, packet wire: iperf3: boom"}},
		{Kind: kindNebula, Name: "Nebula (MTU 1300)", Samples: [2][]Sample{samples(true, 4000), samples(true, 1000)}},
	}}
	table := r.ThroughputTable()
	for _, want := range []string{
		"| contender | offload wire, Mbit/s | × Nebula | × wireguard-go | CPU | packet wire, Mbit/s | × Nebula | × wireguard-go | CPU |",
		"| raw path, no tunnel | 14,000 | 3.50× | 4.67× | – | 16,000 | 16.00× | 14.55× | – |",
		"| stock wireguard-go (MTU 1420) | 3,000 | 0.75× | 1.00× | 150 % | 1,100 | 1.10× | 1.00× | 55 % |",
		"| meshnode (MTU 1420) | 2,880 | 0.72× | 0.96× | 144 % | failed | – | – | – |",
		"| Nebula (MTU 1300) | 4,000 | 1.00× | 1.33× | 200 % | 1,000 | 1.00× | 0.91× | 50 % |",
	} {
		if !strings.Contains(table, want+"\n") {
			t.Errorf("table lacks\n%s\n%s", want, table)
		}
	}
	if got := r.Failures(); len(got) != 1 || !strings.HasPrefix(got[0], "meshnode (MTU 1420): round 1") {
		t.Errorf("failures %q, want meshnode's one", got)
	}
}

func TestThroughputTableWithoutPeers(t *testing.T) {
	r := &Report{Rows: []*Row{
		{Kind: kindRaw, Name: "raw", Samples: [2][]Sample{samples(false, 100), samples(false, 90)}},
		{Kind: kindMeshnode, Name: "meshnode", Samples: [2][]Sample{samples(true, 50), samples(true, 40)}},
	}}
	want := "| meshnode | 50 | – | – | 2 % | 40 | – | – | 2 % |\n"
	if table := r.ThroughputTable(); !strings.Contains(table, want) {
		t.Errorf("table lacks %q (no Nebula, no wireguard-go: no ratios):\n%s", want, table)
	}
}

func TestPingTable(t *testing.T) {
	ms := func(xs ...int) []time.Duration { return durations(time.Millisecond, xs...) }
	r := &Report{Pings: []*PingRow{
		{Pair: Pair{"cone-cone", netlab.PortRestricted, netlab.PortRestricted, true}, Meshnode: FirstPings{Times: ms(400, 300, 310)}, Nebula: &FirstPings{Times: ms(1100, 2400, 1500)}},
		{Pair: Pair{"UDP-blocked-cone", netlab.PortRestricted, netlab.UDPBlocked, false}, Meshnode: FirstPings{Times: ms(5000), Errs: []string{"run 2: no reply", "run 3: no reply"}}},
		{Pair: Pair{"symmetric-cone", netlab.PortRestricted, netlab.Symmetric, true}, Meshnode: FirstPings{Errs: []string{"site: boom"}}, Nebula: &FirstPings{Errs: []string{"run 1: no reply"}}},
	}}
	table := r.PingTable()
	for _, want := range []string{
		"| pair | first node (pings) | second node (starts the clock) | meshnode, median | runs | Nebula, median | runs |",
		"| cone-cone | portrestricted | portrestricted | 0.31 s | 0.40, 0.30, 0.31 s | 1.50 s | 1.10, 2.40, 1.50 s |",
		"| UDP-blocked-cone | portrestricted | udpblocked | 5.00 s | 5.00 s (2 failed) | – | – |",
		"| symmetric-cone | portrestricted | symmetric | failed | – (1 failed) | failed | – (1 failed) |",
	} {
		if !strings.Contains(table, want+"\n") {
			t.Errorf("table lacks\n%s\n%s", want, table)
		}
	}
	want := []string{
		"time to first ping, UDP-blocked-cone: run 2: no reply",
		"time to first ping, UDP-blocked-cone: run 3: no reply",
		"time to first ping, symmetric-cone: site: boom",
		"time to first ping (Nebula), symmetric-cone: run 1: no reply",
	}
	if got := r.Failures(); !slices.Equal(got, want) {
		t.Errorf("failures\n%q\nwant\n%q", got, want)
	}
}

// durations makes times from whole units.
func durations(unit time.Duration, xs ...int) []time.Duration {
	out := make([]time.Duration, len(xs))
	for i, x := range xs {
		out[i] = time.Duration(x) * unit
	}
	return out
}

// rtts makes a row's idle RTTs on one wire from microseconds.
func rtts(us ...int) []time.Duration { return durations(time.Microsecond, us...) }

func TestLatencyTable(t *testing.T) {
	for _, tc := range []struct {
		name string
		rows []*Row
		want []string
	}{
		{"all contenders", []*Row{
			{Kind: kindRaw, Name: "raw path, no tunnel", RTTs: [2][]time.Duration{rtts(50, 40, 60), rtts(45)}},
			{Kind: kindWireguardGo, Name: "stock wireguard-go (MTU 1420)", RTTs: [2][]time.Duration{rtts(150, 130, 140), rtts(125)}},
			{Kind: kindMeshnode, Name: "meshnode (MTU 1420)", RTTs: [2][]time.Duration{rtts(190, 180), rtts()}},
			{Kind: kindNebula, Name: "Nebula (MTU 1300)", RTTs: [2][]time.Duration{rtts(45), rtts(85)}},
		}, []string{
			"| contender | offload wire, RTT µs | over raw, µs | × wireguard-go's overhead | packet wire, RTT µs | over raw, µs | × wireguard-go's overhead |",
			"| raw path, no tunnel | 50 | – | – | 45 | – | – |",
			"| stock wireguard-go (MTU 1420) | 140 | +90 | 1.00× | 125 | +80 | 1.00× |",
			"| meshnode (MTU 1420) | 185 | +135 | 1.50× | failed | failed | – |",
			"| Nebula (MTU 1300) | 45 | -5 | -0.06× | 85 | +40 | 0.50× |",
		}},
		{"no wireguard-go", []*Row{
			{Kind: kindRaw, Name: "raw", RTTs: [2][]time.Duration{rtts(50), rtts(50)}},
			{Kind: kindMeshnode, Name: "meshnode", RTTs: [2][]time.Duration{rtts(80), rtts(90)}},
		}, []string{"| meshnode | 80 | +30 | – | 90 | +40 | – |"}},
		{"no raw path", []*Row{
			{Kind: kindWireguardGo, Name: "wireguard-go", RTTs: [2][]time.Duration{rtts(80), rtts(90)}},
		}, []string{"| wireguard-go | 80 | failed | – | 90 | failed | – |"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := (&Report{Rows: tc.rows}).LatencyTable()
			for _, want := range tc.want {
				if !strings.Contains(table, want+"\n") {
					t.Errorf("table lacks\n%s\n%s", want, table)
				}
			}
		})
	}
}

func TestMarkdown(t *testing.T) {
	r := &Report{
		Date: time.Date(2025, 11, 30, 6, 40, 0, 0, time.UTC), Version: "meshnode v1 (commit abc)",
		Kernel: "6.18", CPU: "Xeon", CPUs: 2, Load: "1.25", Seconds: 5, Runs: 3, PairRuns: 3,
		Rows: []*Row{{Kind: kindRaw, Name: "raw path, no tunnel", Samples: [2][]Sample{samples(false, 1, 2, 3), samples(false, 4)}, RTTs: [2][]time.Duration{rtts(41, 42, 43), nil}}},
	}
	doc := r.Markdown("make perf")
	for _, want := range []string{
		"Command: `make perf` · 2025-11-30 06:40 UTC · meshnode v1 (commit abc) · Linux 6.18 · 2 CPUs (Xeon), load average 1.25 at the start",
		"5 s a run; median of 3 runs",
		"- raw path, no tunnel, offload wire: 1, 2, 3 Mbit/s; idle RTT 41, 42, 43 µs\n",
		"- raw path, no tunnel, packet wire: 4 Mbit/s\n",
		"| raw path, no tunnel | 42 | – | – | failed | – | – |",
		"forwards ICMP echo requests to host B",
		"Nebula**: not measured",
		"tx-udp-segmentation, gso, gro off",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("report lacks %q:\n%s", want, doc)
		}
	}
	for _, unwanted := range []string{"Time to first ping", "wireguard-go**", "Failures"} {
		if strings.Contains(doc, unwanted) {
			t.Errorf("report has %q, for something not measured:\n%s", unwanted, doc)
		}
	}
}

func TestEnvInt(t *testing.T) {
	for _, tc := range []struct {
		val     string
		want    int
		wantErr bool
	}{
		{"", 5, false},
		{"1", 1, false},
		{"20", 20, false},
		{"0", 0, true},
		{"21", 0, true},
		{"-3", 0, true},
		{"5s", 0, true},
	} {
		got, err := envInt("PERF_SECONDS", tc.val, 5, 20)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("envInt(%q) = %d, %v; want %d, error %v", tc.val, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "PERF_SECONDS") {
			t.Errorf("error %q doesn't name the variable", err)
		}
	}
}

// A before binary's row is named in the report with the after ÷ before
// ratio on each wire; without one the report doesn't mention it.
func TestMarkdownBeforeAndAfter(t *testing.T) {
	r := &Report{
		Version: "meshnode v2", BeforeVersion: "abc1234-before",
		Rows: []*Row{
			{Kind: kindMeshnode, Name: "meshnode (MTU 1420)", Samples: [2][]Sample{samples(true, 1100, 1200, 1000), samples(true, 600)}},
			{Kind: kindMeshnodeBefore, Name: "meshnode before (MTU 1420)", Samples: [2][]Sample{samples(true, 1000), samples(true)}},
		},
	}
	want := "- **meshnode before**: abc1234-before (PERF_BEFORE), set up the same way beside it, so a change's before\n" +
		"  and after share the run; after ÷ before: 1.10× on the offload wire, – on the packet wire.\n"
	if doc := r.Markdown("make perf BEFORE=abc1234"); !strings.Contains(doc, want) {
		t.Errorf("report lacks %q:\n%s", want, doc)
	}
	r.BeforeVersion, r.Rows = "", r.Rows[:1]
	if doc := r.Markdown("make perf"); strings.Contains(doc, "meshnode before") {
		t.Errorf("report names a before binary that was not measured:\n%s", doc)
	}
}

// Round-by-round ratios pair each round's samples, skip a round either
// side lacks, and give the median and range.
func TestPairedRatio(t *testing.T) {
	mesh := &Row{Name: "meshnode", Samples: [2][]Sample{
		{{Round: 0, Mbps: 1100}, {Round: 1, Mbps: 2400}, {Round: 2, Mbps: 900}, {Round: 3, Mbps: 1000}},
		{{Round: 1, Mbps: 500}},
	}}
	neb := &Row{Name: "Nebula", Samples: [2][]Sample{
		{{Round: 0, Mbps: 1000}, {Round: 1, Mbps: 2000}, {Round: 3, Mbps: 1250}},
		{{Round: 0, Mbps: 400}},
	}}
	for _, tc := range []struct {
		name      string
		row, base *Row
		w         wire
		want      string
	}{
		{"rounds paired, a missing one skipped", mesh, neb, offloadWire, "1.10× (0.80–1.20× in 3 rounds)"},
		{"no round with both", mesh, neb, packetWire, "–"},
		{"no base", mesh, nil, offloadWire, "–"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pairedRatio(tc.row, tc.base, tc.w); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	r := &Report{Rows: []*Row{{Kind: kindMeshnode, Name: "meshnode", Samples: mesh.Samples}, {Kind: kindNebula, Name: "Nebula", Samples: neb.Samples}}}
	want := "- meshnode ÷ Nebula: 1.10× (0.80–1.20× in 3 rounds) on the offload wire, – on the packet wire\n"
	if doc := r.Markdown("make perf"); !strings.Contains(doc, want) {
		t.Errorf("report lacks %q:\n%s", want, doc)
	}
}
