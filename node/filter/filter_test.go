package filter

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/meshnode/meshnode/internal/packet/packettest"
	"github.com/meshnode/meshnode/internal/wire"
)

var (
	home4   = netip.MustParseAddr("100.88.1.10")
	office4 = netip.MustParseAddr("100.88.2.20")
	dns4    = netip.MustParseAddr("100.88.2.53")
	router4 = netip.MustParseAddr("100.88.2.1") // a router on the way, sending errors
	lab1    = netip.MustParseAddr("100.88.3.1")
	lab2    = netip.MustParseAddr("100.88.3.2")
	home6   = netip.MustParseAddr("fd6d:6573:686e:1::10")
	office6 = netip.MustParseAddr("fd6d:6573:686e:2::20")
)

func pfx(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

// officePolicy lets home reach the office's web servers and ping it,
// everyone ask the office's DNS server, and the lab hosts reach each other
// on anything.
func officePolicy(version uint64) *wire.Filter {
	home, office := pfx("100.88.1.0/24", "fd6d:6573:686e:1::/64"), pfx("100.88.2.0/24", "fd6d:6573:686e:2::/64")
	return &wire.Filter{Version: version, Rules: []wire.FilterRule{
		{Rule: "web", Src: home, Dst: office, Proto: wire.ProtoTCP, Ports: []wire.PortRange{{First: 443, Last: 443}, {First: 80, Last: 80}}},
		{Rule: "dns", Src: pfx("0.0.0.0/0", "::/0"), Dst: pfx("100.88.2.53/32"), Proto: wire.ProtoUDP, Ports: []wire.PortRange{{First: 53, Last: 53}}},
		{Rule: "ping", Src: home, Dst: office, Proto: wire.ProtoICMP},
		{Rule: "lab", Src: pfx("100.88.3.0/24"), Dst: pfx("100.88.3.0/24"), Proto: wire.ProtoAny},
	}}
}

// fakeClock is a clock tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newFilter(t *testing.T, wf *wire.Filter, opts Options) (*Filter, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	opts.Now = clock.Now
	f := New(opts)
	if err := f.Set(wf); err != nil {
		t.Fatal(err)
	}
	return f, clock
}

func ip(src, dst netip.Addr) packettest.IP { return packettest.IP{Src: src, Dst: dst} }

func tcp(src, dst netip.Addr, sport, dport uint16, flags header.TCPFlags) []byte {
	return packettest.TCPFlow(ip(src, dst), packettest.Ports{Src: sport, Dst: dport}, flags)
}

func udp(src, dst netip.Addr, sport, dport uint16) []byte {
	return packettest.UDP(ip(src, dst), packettest.Ports{Src: sport, Dst: dport}, 32)
}

const (
	syn    = header.TCPFlagSyn
	synAck = header.TCPFlagSyn | header.TCPFlagAck
	ack    = header.TCPFlagAck
)

// A packet that opens a flow passes only if a rule allows its source,
// destination, protocol and port.
func TestRulesDecideNewFlows(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"web from home", tcp(home4, office4, 40000, 443, syn), true},
		{"web on port 80", tcp(home4, office4, 40000, 80, syn), true},
		{"SSH from home", tcp(home4, office4, 40000, 22, syn), false},
		{"web from the office to home", tcp(office4, home4, 40000, 443, syn), false},
		{"web over IPv6", tcp(home6, office6, 40000, 443, syn), true},
		{"SSH over IPv6", tcp(home6, office6, 40000, 22, syn), false},
		{"UDP to the web port", udp(home4, office4, 40000, 443), false},
		{"DNS from anywhere", udp(lab1, dns4, 5353, 53), true},
		{"DNS to another office host", udp(lab1, office4, 5353, 53), false},
		{"DNS over TCP", tcp(home4, dns4, 40000, 53, syn), false},
		{"ping from home", packettest.Echo(ip(home4, office4), false, 7), true},
		{"ping from home over IPv6", packettest.Echo(ip(home6, office6), false, 7), true},
		{"ping from the office", packettest.Echo(ip(office4, home4), false, 7), false},
		{"an echo reply nobody asked for", packettest.Echo(ip(office4, home4), true, 7), false},
		{"any protocol inside the lab", packettest.IP{Src: lab1, Dst: lab2, Proto: 47}.Build(make([]byte, 20)), true},
		{"any protocol from home", packettest.IP{Src: home4, Dst: office4, Proto: 47}.Build(make([]byte, 20)), false},
		{"not an IP packet", []byte{0x10, 0, 0, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newFilter(t, officePolicy(1), Options{})
			for _, dir := range []Direction{Inbound, Outbound} {
				if got := f.Check(dir, tc.pkt); got != tc.want {
					t.Errorf("direction %d: passes = %v, want %v", dir, got, tc.want)
				}
			}
		})
	}
}

// step is one packet through a filter and whether it should pass.
type step struct {
	what string
	dir  Direction
	pkt  []byte
	want bool
}

func run(t *testing.T, f *Filter, steps []step) {
	t.Helper()
	for _, s := range steps {
		if got := f.Check(s.dir, s.pkt); got != s.want {
			t.Errorf("%s: passes = %v, want %v", s.what, got, s.want)
		}
	}
}

// The office's node: replies to what the policy let in go back out, and
// nothing else does.
func TestRepliesPass(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"TCP", []step{
			{"home's SYN", Inbound, tcp(home4, office4, 40000, 443, syn), true},
			{"the SYN-ACK", Outbound, tcp(office4, home4, 443, 40000, synAck), true},
			{"home's ACK", Inbound, tcp(home4, office4, 40000, 443, ack), true},
			{"data back", Outbound, tcp(office4, home4, 443, 40000, ack), true},
			{"the same port to another of home's ports", Outbound, tcp(office4, home4, 443, 40001, ack), false},
		}},
		{"TCP over IPv6", []step{
			{"home's SYN", Inbound, tcp(home6, office6, 40000, 80, syn), true},
			{"the SYN-ACK", Outbound, tcp(office6, home6, 80, 40000, synAck), true},
		}},
		{"UDP", []step{
			{"a query", Inbound, udp(lab1, dns4, 5353, 53), true},
			{"its answer", Outbound, udp(dns4, lab1, 53, 5353), true},
			{"a datagram from the server's port to another", Outbound, udp(dns4, lab1, 53, 5354), false},
		}},
		{"ICMP echo", []step{
			{"home pings", Inbound, packettest.Echo(ip(home4, office4), false, 9), true},
			{"the reply", Outbound, packettest.Echo(ip(office4, home4), true, 9), true},
			{"a reply with another id", Outbound, packettest.Echo(ip(office4, home4), true, 10), false},
			{"a request back with the same id", Outbound, packettest.Echo(ip(office4, home4), false, 9), false},
		}},
		{"ICMPv6 echo", []step{
			{"home pings", Inbound, packettest.Echo(ip(home6, office6), false, 9), true},
			{"the reply", Outbound, packettest.Echo(ip(office6, home6), true, 9), true},
		}},
		{"a connection home opened before the policy, picked up by its next packet", []step{
			{"the office's data first", Outbound, tcp(office4, home4, 443, 40000, ack), false},
			{"home's ACK", Inbound, tcp(home4, office4, 40000, 443, ack), true},
			{"the office's data again", Outbound, tcp(office4, home4, 443, 40000, ack), true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newFilter(t, officePolicy(1), Options{})
			run(t, f, tc.steps)
		})
	}
}

// ICMP errors pass back to the sender of a packet of a tracked flow, from
// wherever on the way it failed; others are denied unless a rule allows
// them as ICMP.
func TestICMPErrorsOfTrackedFlows(t *testing.T) {
	quote := func(pkt []byte) []byte { return pkt[:min(len(pkt), 48)] }
	web := tcp(home4, office4, 40000, 443, syn)
	ssh := tcp(home4, office4, 40000, 22, syn)
	web6 := tcp(home6, office6, 40000, 443, syn)
	unreach := func(from, to netip.Addr, about []byte) []byte {
		return packettest.ICMP(ip(from, to), 3, 3, nil, quote(about))
	}
	f, _ := newFilter(t, officePolicy(1), Options{})
	run(t, f, []step{
		{"home's SYN", Outbound, web, true},
		{"port unreachable from the office", Inbound, unreach(office4, home4, web), true},
		{"host unreachable from a router on the way", Inbound, unreach(router4, home4, web), true},
		{"an error about a flow never opened", Inbound, unreach(office4, home4, ssh), false},
		{"an error about the flow sent to someone else", Inbound, unreach(office4, lab1, web), false},
		{"home's IPv6 SYN", Outbound, web6, true},
		{"packet too big", Inbound, packettest.ICMP(ip(office6, home6), 2, 0, []byte{0, 0, 5, 0}, web6), true},
		{"home sends an error about it itself", Outbound, unreach(home4, office4, tcp(office4, home4, 443, 40000, synAck)), true},
	})
	if got := f.Stats.DeniedIn.Load(); got != 2 {
		t.Errorf("%d inbound packets denied, want 2", got)
	}
}

// A flow idle past its state's timeout is forgotten: its replies are
// denied after, not before.
func TestIdleExpiry(t *testing.T) {
	for _, tc := range []struct {
		name        string
		open, reply []byte // a packet that opens the flow (inbound) and one back
		answered    bool   // the reply is sent once before the idle spell
		idle        time.Duration
	}{
		{"UDP unanswered", udp(lab1, dns4, 5353, 53), udp(dns4, lab1, 53, 5353), false, 30 * time.Second},
		{"UDP answered", udp(lab1, dns4, 5353, 53), udp(dns4, lab1, 53, 5353), true, 2 * time.Minute},
		{"TCP opening", tcp(home4, office4, 40000, 443, syn), tcp(office4, home4, 443, 40000, synAck), false, 4 * time.Minute},
		{"TCP established", tcp(home4, office4, 40000, 443, syn), tcp(office4, home4, 443, 40000, synAck), true, 2*time.Hour + 4*time.Minute},
		{"TCP reset", tcp(home4, office4, 40000, 443, header.TCPFlagRst|ack), nil, false, 0},
		{"ICMP echo", packettest.Echo(ip(home4, office4), false, 3), packettest.Echo(ip(office4, home4), true, 3), true, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, after := range []struct {
				idle time.Duration
				want bool
			}{{tc.idle, true}, {tc.idle + time.Second, false}} {
				f, clock := newFilter(t, officePolicy(1), Options{})
				if !f.Check(Inbound, tc.open) {
					t.Fatal("the opening packet was denied")
				}
				if tc.reply == nil {
					if n := f.Status().Flows; n != 0 {
						t.Fatalf("a reset opened %d flows", n)
					}
					return
				}
				if tc.answered && !f.Check(Outbound, tc.reply) {
					t.Fatal("the first reply was denied")
				}
				clock.Advance(after.idle)
				if n, want := f.Status().Flows, map[bool]int{true: 1, false: 0}[after.want]; n != want {
					t.Errorf("after %v idle: status counts %d flows, want %d", after.idle, n, want)
				}
				if got := f.Check(Outbound, tc.reply); got != after.want {
					t.Errorf("after %v idle: passes = %v, want %v", after.idle, got, after.want)
				}
			}
		})
	}
}

// fragments splits a UDP datagram into an IPv4 first fragment (with the
// UDP header) and a later one, both with id.
func fragments(src, dst netip.Addr, sport, dport, id uint16) (first, later []byte) {
	first = packettest.UDP(packettest.IP{Src: src, Dst: dst, Flags: header.IPv4FlagMoreFragments}, packettest.Ports{Src: sport, Dst: dport}, 64)
	later = packettest.IP{Src: src, Dst: dst, Proto: 17, FragOff: 72}.Build(make([]byte, 64))
	binary.BigEndian.PutUint16(first[4:6], id)
	binary.BigEndian.PutUint16(later[4:6], id)
	return first, later
}

// Later fragments (no ports to decide on) pass when their datagram's first
// fragment did, and are dropped otherwise.
func TestFragments(t *testing.T) {
	f, _ := newFilter(t, officePolicy(1), Options{})
	okFirst, okLater := fragments(lab1, dns4, 5353, 53, 0x1111)
	badFirst, badLater := fragments(lab1, dns4, 5353, 54, 0x2222)
	_, strayLater := fragments(lab1, dns4, 5353, 53, 0x3333)
	run(t, f, []step{
		{"the first fragment of an allowed datagram", Inbound, okFirst, true},
		{"its later fragment", Inbound, okLater, true},
		{"the first fragment of a denied datagram", Inbound, badFirst, false},
		{"its later fragment", Inbound, badLater, false},
		{"a later fragment whose first never came", Inbound, strayLater, false},
	})
	if got := f.Stats.Fragments.Load(); got != 2 {
		t.Errorf("%d fragments dropped, want 2", got)
	}
}

// A flood of new flows fills the table up to its bound and no further,
// and evicts flows that had no reply before a connection that has.
func TestTableIsBoundedUnderAFlood(t *testing.T) {
	const max = 4 * numShards
	f, clock := newFilter(t, officePolicy(1), Options{MaxFlows: max})
	run(t, f, []step{
		{"home's SYN", Inbound, tcp(home4, office4, 40000, 443, syn), true},
		{"the SYN-ACK", Outbound, tcp(office4, home4, 443, 40000, synAck), true},
	})
	for i := range 20 * max {
		clock.Advance(time.Millisecond)
		if !f.Check(Inbound, udp(lab1, dns4, uint16(1024+i), 53)) {
			t.Fatalf("query %d denied", i)
		}
	}
	st := f.Status()
	if st.Flows > max || st.MaxFlows != max {
		t.Errorf("%d flows tracked, bound %d, want at most %d", st.Flows, st.MaxFlows, max)
	}
	if f.Stats.Evicted.Load() == 0 {
		t.Error("no flow evicted")
	}
	if !f.Check(Outbound, tcp(office4, home4, 443, 40000, ack)) {
		t.Error("the established connection was evicted by the flood")
	}
	if f.Check(Outbound, udp(dns4, lab1, 53, 1024)) {
		t.Error("the flood's oldest flow is still tracked")
	}
}

// A new policy applies at once: tracked flows it no longer allows stop
// both ways at their next packet; the others go on.
func TestPolicyChangeStopsFlows(t *testing.T) {
	f, _ := newFilter(t, officePolicy(1), Options{})
	run(t, f, []step{
		{"web SYN", Inbound, tcp(home4, office4, 40000, 443, syn), true},
		{"web SYN-ACK", Outbound, tcp(office4, home4, 443, 40000, synAck), true},
		{"DNS query", Inbound, udp(lab1, dns4, 5353, 53), true},
	})
	next := officePolicy(2)
	next.Rules = next.Rules[1:] // web no longer allowed
	if err := f.Set(next); err != nil {
		t.Fatal(err)
	}
	run(t, f, []step{
		{"web data from the office", Outbound, tcp(office4, home4, 443, 40000, ack), false},
		{"web data from home", Inbound, tcp(home4, office4, 40000, 443, ack), false},
		{"DNS answer", Outbound, udp(dns4, lab1, 53, 5353), true},
	})
	if got := f.Stats.Revoked.Load(); got != 1 {
		t.Errorf("%d flows revoked, want 1", got)
	}
	// Allowed again, the connection's next packet from home picks it up.
	if err := f.Set(officePolicy(3)); err != nil {
		t.Fatal(err)
	}
	run(t, f, []step{
		{"web data from home", Inbound, tcp(home4, office4, 40000, 443, ack), true},
		{"web data from the office", Outbound, tcp(office4, home4, 443, 40000, ack), true},
	})
}

// What Set accepts: valid filters not older than the one in force; no
// filter, or AllowAll, removes the policy.
func TestSet(t *testing.T) {
	f, _ := newFilter(t, officePolicy(5), Options{})
	ssh := tcp(home4, office4, 40000, 22, syn)
	if err := f.Set(officePolicy(4)); !errors.Is(err, ErrStale) {
		t.Errorf("an older filter: %v, want ErrStale", err)
	}
	bad := officePolicy(6)
	bad.Rules[0].Proto = "sctp"
	if err := f.Set(bad); err == nil {
		t.Error("an invalid filter was accepted")
	}
	if st := f.Status(); !st.Active || st.Version != 5 || st.Rules != 4 {
		t.Errorf("status after refusals %+v, want version 5 with 4 rules in force", st)
	}
	if f.Check(Inbound, ssh) {
		t.Error("SSH passed under the policy")
	}
	if err := f.Set(&wire.Filter{Version: 7, AllowAll: true}); err != nil {
		t.Fatal(err)
	}
	if st := f.Status(); st.Active || st.Version != 7 || !f.Check(Inbound, ssh) {
		t.Errorf("after AllowAll: %+v, SSH denied; want everything to pass", st)
	}
	if err := f.Set(officePolicy(6)); !errors.Is(err, ErrStale) {
		t.Errorf("a filter older than the AllowAll: %v, want ErrStale", err)
	}
	if err := f.Set(officePolicy(8)); err != nil || f.Check(Inbound, ssh) {
		t.Errorf("policy 8: %v; SSH passes", err)
	}
	if err := f.Set(nil); err != nil || !f.Check(Inbound, ssh) || f.Status().Flows != 0 {
		t.Errorf("no policy: %v; want SSH to pass and nothing tracked", err)
	}
}

// Denied packets are counted per direction against the rule whose
// addresses cover them, else against no rule; a rule that stays in a new
// policy keeps its count.
func TestDeniedCountsPerRule(t *testing.T) {
	f, _ := newFilter(t, officePolicy(1), Options{})
	f.Check(Inbound, tcp(home4, office4, 40000, 22, syn))
	f.Check(Inbound, tcp(home4, office4, 40000, 23, syn))
	f.Check(Outbound, udp(home4, office4, 40000, 443))
	f.Check(Outbound, udp(office4, lab1, 40000, 53))
	f.Check(Inbound, packettest.IP{Src: home4, Dst: office4, Proto: 47}.Build(make([]byte, 20)))
	if err := f.Set(officePolicy(2)); err != nil {
		t.Fatal(err)
	}
	st := f.Status()
	// TCP to other ports against web (of TCP); UDP and GRE against the
	// first rule whose addresses cover them, web too.
	want := []RuleDenied{{Rule: "web", In: 3, Out: 1}, {Rule: "dns"}, {Rule: "ping"}, {Rule: "lab"}}
	if len(st.Denied) != len(want) {
		t.Fatalf("denied %+v, want %+v", st.Denied, want)
	}
	for i := range want {
		if st.Denied[i] != want[i] {
			t.Errorf("denied[%d] = %+v, want %+v", i, st.Denied[i], want[i])
		}
	}
	if st.NoRule != (RuleDenied{Out: 1}) {
		t.Errorf("no rule: %+v, want 1 outbound", st.NoRule)
	}
	if f.Stats.DeniedIn.Load() != 3 || f.Stats.DeniedOut.Load() != 2 {
		t.Errorf("totals %d in, %d out; want 3 and 2", f.Stats.DeniedIn.Load(), f.Stats.DeniedOut.Load())
	}
	// With the ICMP rule first, SSH still counts against the TCP rule.
	swapped := officePolicy(3)
	swapped.Rules[0], swapped.Rules[2] = swapped.Rules[2], swapped.Rules[0]
	if err := f.Set(swapped); err != nil {
		t.Fatal(err)
	}
	f.Check(Inbound, tcp(home4, office4, 40000, 22, syn))
	if st := f.Status(); st.Denied[0].Rule != "ping" || st.Denied[0].In != 0 || st.Denied[2].Rule != "web" || st.Denied[2].In != 4 {
		t.Errorf("after SSH under the swapped policy: %+v; want it counted against web", st.Denied)
	}
}

// Reach: may these addresses open anything to those?
func TestReach(t *testing.T) {
	f, _ := newFilter(t, officePolicy(1), Options{})
	for _, tc := range []struct {
		from, to []netip.Addr
		want     bool
	}{
		{[]netip.Addr{home4, home6}, []netip.Addr{office4, office6}, true},
		{[]netip.Addr{office4, office6}, []netip.Addr{home4, home6}, false},
		{[]netip.Addr{lab1}, []netip.Addr{dns4}, true},
		{[]netip.Addr{lab1}, []netip.Addr{office4}, false},
		{[]netip.Addr{home4}, []netip.Addr{office6}, false}, // no packet goes from one family to the other
	} {
		if got := f.Reach(tc.from, tc.to); got != tc.want {
			t.Errorf("Reach(%v, %v) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
	if err := f.Set(nil); err != nil || !f.Reach([]netip.Addr{office4}, []netip.Addr{home4}) {
		t.Error("with no policy, everyone reaches everyone")
	}
}

// ReachRoute: may these addresses open anything into a LAN (some address
// within it)?
func TestReachRoute(t *testing.T) {
	f, _ := newFilter(t, officePolicy(1), Options{})
	home := []netip.Addr{home4, home6}
	for _, tc := range []struct {
		from  []netip.Addr
		route string
		want  bool
	}{
		{home, "100.88.2.0/24", true},   // the office, whole
		{home, "100.88.2.128/25", true}, // part of it
		{home, "100.88.0.0/16", true},   // wider than it
		{home, "100.88.4.0/24", false},  // beside it
		{home, "100.88.2.53/32", true},
		{[]netip.Addr{lab1}, "100.88.2.48/28", true}, // the DNS server within it
		{[]netip.Addr{lab1}, "100.88.2.64/28", false},
		{home, "fd6d:6573:686e:2:8000::/65", true},
		{[]netip.Addr{home4}, "fd6d:6573:686e:2::/64", false}, // the other family
	} {
		if got := f.ReachRoute(tc.from, netip.MustParsePrefix(tc.route)); got != tc.want {
			t.Errorf("ReachRoute(%v, %s) = %v, want %v", tc.from, tc.route, got, tc.want)
		}
	}
	if err := f.Set(nil); err != nil || !f.ReachRoute([]netip.Addr{office4}, netip.MustParsePrefix("192.168.10.0/24")) {
		t.Error("with no policy, every route is reached")
	}
}

// Once a flow is tracked its packets cost no allocation, either way.
func TestTrackedFlowDoesNotAllocate(t *testing.T) {
	f, _ := newFilter(t, officePolicy(1), Options{})
	in, out := tcp(home4, office4, 40000, 443, syn), tcp(office4, home4, 443, 40000, ack)
	f.Check(Inbound, in)
	if n := testing.AllocsPerRun(1000, func() {
		if !f.Check(Outbound, out) || !f.Check(Inbound, in) {
			t.Fatal("denied")
		}
	}); n != 0 {
		t.Errorf("%v allocations a round trip", n)
	}
}
