package meshdns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/time/rate"
)

// clientTimeout is how long a test client waits for an answer: a resolver
// that must answer does so in milliseconds; one that must stay silent is
// given this long to break its silence.
const clientTimeout = 5 * time.Second

// silence is how long a test listens for an answer that must not come.
const silence = 300 * time.Millisecond

// fakeUpstream serves on loopback (never a real resolver): example.test
// has 192.0.2.1, big.example.test 40 addresses (truncated over UDP, as a
// real server does), fail.test gets SERVFAIL, every other name NXDOMAIN.
func fakeUpstream(t *testing.T) netip.AddrPort {
	t.Helper()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		switch q.Name {
		case "example.test.":
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)})
		case "big.example.test.":
			for i := range 40 {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, byte(i+1))})
			}
		case "fail.test.":
			m.Rcode = dns.RcodeServerFailure
		default:
			m.Rcode = dns.RcodeNameError
		}
		if w.LocalAddr().Network() == "udp" {
			m.Truncate(dns.MinMsgSize)
		}
		w.WriteMsg(m)
	})
	l := loopbackListeners()
	pc, err := l.Packet(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := l.Stream(netip.AddrPort{})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		if err := start(srv); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stop([]*dns.Server{srv}) })
	}
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// startResolver serves testTable on loopback, forwarding to upstreams.
func startResolver(t *testing.T, limits Limits, upstreams ...netip.AddrPort) (netip.AddrPort, *Handler) {
	t.Helper()
	fwd := NewForwarder()
	fwd.SetUpstreams(upstreams)
	return startResolverWith(t, limits, fwd)
}

// startResolverWith is startResolver forwarding to fwd.
func startResolverWith(t *testing.T, limits Limits, fwd *Forwarder) (netip.AddrPort, *Handler) {
	t.Helper()
	h := NewHandler(testTable(), fwd, limits)
	srv, err := Serve(h, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, loopbackListeners())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv.Addrs()[0], h
}

// loopbackListeners open UDP and TCP on one free loopback port: the TCP
// listener first on any port, then UDP on the same one, again while that
// port's UDP side is taken.
func loopbackListeners() Listeners {
	var ln net.Listener
	return Listeners{
		Packet: func(ap netip.AddrPort) (net.PacketConn, error) {
			var errs []error
			for range 20 {
				l, err := net.Listen("tcp", ap.String())
				if err != nil {
					return nil, err
				}
				pc, err := net.ListenPacket("udp", l.Addr().String())
				if err == nil {
					ln = l
					return pc, nil
				}
				l.Close()
				errs = append(errs, err)
			}
			return nil, errors.Join(errs...)
		},
		Stream: func(netip.AddrPort) (net.Listener, error) { return ln, nil },
	}
}

// question is a query of name and type, with EDNS when edns is not 0.
func question(name string, qtype uint16, edns uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns != 0 {
		m.SetEdns0(edns, false)
	}
	return m
}

func exchange(t *testing.T, network string, server netip.AddrPort, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: clientTimeout}
	resp, _, err := c.Exchange(m, server.String())
	if err != nil {
		t.Fatalf("%s query %s %s: %v", network, m.Question[0].Name, dns.TypeToString[m.Question[0].Qtype], err)
	}
	return resp
}

// rdata is each record's data, in order.
func rdata(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		case *dns.PTR:
			out = append(out, rr.Ptr)
		default:
			out = append(out, dns.TypeToString[rr.Header().Rrtype]+" "+rr.Header().Name)
		}
	}
	return out
}

func TestResolver(t *testing.T) {
	server, h := startResolver(t, DefaultLimits(), fakeUpstream(t))
	tests := []struct {
		name      string
		query     *dns.Msg
		network   string
		rcode     int
		answers   []string
		authority []string
		aa        bool
		tc        bool
		forwarded bool
	}{
		{name: "A of a peer", query: question("desktop.mesh.internal.", dns.TypeA, 0), rcode: dns.RcodeSuccess, answers: []string{"100.88.0.2"}, aa: true},
		{name: "AAAA of a peer, any case", query: question("DeskTop.Mesh.Internal.", dns.TypeAAAA, 0), rcode: dns.RcodeSuccess, answers: []string{"fd6d:6573:686e::2"}, aa: true},
		{name: "A of this node", query: question("laptop.mesh.internal.", dns.TypeA, 0), rcode: dns.RcodeSuccess, answers: []string{"100.88.0.1"}, aa: true},
		{name: "AAAA of a peer without IPv6", query: question("phone.mesh.internal.", dns.TypeAAAA, 0), rcode: dns.RcodeSuccess, authority: []string{"SOA mesh.internal."}, aa: true},
		{name: "MX of a peer", query: question("desktop.mesh.internal.", dns.TypeMX, 0), rcode: dns.RcodeSuccess, authority: []string{"SOA mesh.internal."}, aa: true},
		{name: "an unknown name", query: question("tablet.mesh.internal.", dns.TypeA, 0), rcode: dns.RcodeNameError, authority: []string{"SOA mesh.internal."}, aa: true},
		{name: "the domain's SOA", query: question("mesh.internal.", dns.TypeSOA, 0), rcode: dns.RcodeSuccess, answers: []string{"SOA mesh.internal."}, aa: true},
		{name: "an extra record", query: question("nas.mesh.internal.", dns.TypeA, 0), rcode: dns.RcodeSuccess, answers: []string{"192.168.1.10"}, aa: true},
		{name: "a name above an extra record", query: question("office.mesh.internal.", dns.TypeA, 0), rcode: dns.RcodeSuccess, authority: []string{"SOA mesh.internal."}, aa: true},
		{name: "PTR of a peer", query: question("2.0.88.100.in-addr.arpa.", dns.TypePTR, 0), rcode: dns.RcodeSuccess, answers: []string{"desktop.mesh.internal."}, aa: true},
		{name: "PTR of a peer's IPv6", query: question("2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.e.6.8.6.3.7.5.6.d.6.d.f.ip6.arpa.", dns.TypePTR, 0), rcode: dns.RcodeSuccess, answers: []string{"desktop.mesh.internal."}, aa: true},
		{name: "PTR of a free overlay address", query: question("9.0.88.100.in-addr.arpa.", dns.TypePTR, 0), rcode: dns.RcodeNameError, authority: []string{"SOA 88.100.in-addr.arpa."}, aa: true},
		{name: "a name elsewhere is forwarded", query: question("example.test.", dns.TypeA, 0), rcode: dns.RcodeSuccess, answers: []string{"192.0.2.1"}, forwarded: true},
		{name: "a forwarded NXDOMAIN", query: question("nowhere.test.", dns.TypeA, 0), rcode: dns.RcodeNameError, forwarded: true},
		{name: "PTR outside the overlay is forwarded", query: question("1.2.0.192.in-addr.arpa.", dns.TypePTR, 0), rcode: dns.RcodeNameError, forwarded: true},
		{name: "an upstream's SERVFAIL", query: question("fail.test.", dns.TypeA, 0), rcode: dns.RcodeServerFailure, forwarded: true},
		{name: "EDNS is answered with EDNS", query: question("desktop.mesh.internal.", dns.TypeA, 4096), rcode: dns.RcodeSuccess, answers: []string{"100.88.0.2"}, aa: true},
	}
	for _, tt := range tests {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tt.name+" over "+network, func(t *testing.T) {
				before := h.Stats.Forwarded.Load()
				resp := exchange(t, network, server, tt.query.Copy())
				if resp.Rcode != tt.rcode || resp.Authoritative != tt.aa || resp.Truncated != tt.tc {
					t.Fatalf("rcode %s, AA %v, TC %v; want %s, %v, %v", dns.RcodeToString[resp.Rcode], resp.Authoritative, resp.Truncated,
						dns.RcodeToString[tt.rcode], tt.aa, tt.tc)
				}
				if got := rdata(resp.Answer); !reflect.DeepEqual(got, tt.answers) {
					t.Fatalf("answers %v, want %v", got, tt.answers)
				}
				if tt.authority != nil && !reflect.DeepEqual(rdata(resp.Ns), tt.authority) {
					t.Fatalf("authority %v, want %v", rdata(resp.Ns), tt.authority)
				}
				if forwarded := h.Stats.Forwarded.Load() > before; forwarded != tt.forwarded {
					t.Fatalf("forwarded %v, want %v", forwarded, tt.forwarded)
				}
				if (tt.query.IsEdns0() != nil) != (resp.IsEdns0() != nil) {
					t.Fatalf("EDNS in the answer %v, in the query %v", resp.IsEdns0() != nil, tt.query.IsEdns0() != nil)
				}
			})
		}
	}
}

// An answer too large for UDP comes truncated with TC set, within the
// client's buffer, and whole over TCP: the mesh's own answers and
// forwarded ones alike.
func TestTruncatedOverUDPWholeOverTCP(t *testing.T) {
	server, h := startResolver(t, DefaultLimits(), fakeUpstream(t))
	tests := []struct {
		name   string
		query  *dns.Msg
		buffer int // the client's UDP buffer
		whole  int // answers over TCP
		tc     bool
	}{
		{"many addresses, no EDNS", question("many.mesh.internal.", dns.TypeA, 0), dns.MinMsgSize, 64, true},
		{"many addresses, EDNS 4096", question("many.mesh.internal.", dns.TypeA, 4096), maxUDPSize, 64, false},
		{"many addresses, EDNS 600", question("many.mesh.internal.", dns.TypeA, 600), 600, 64, true},
		{"forwarded, no EDNS", question("big.example.test.", dns.TypeA, 0), dns.MinMsgSize, 40, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			truncated := h.Stats.Truncated.Load()
			udp := exchange(t, "udp", server, tt.query.Copy())
			udp.Compress = true // as it was sent
			packed, err := udp.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if udp.Truncated != tt.tc || len(packed) > tt.buffer {
				t.Fatalf("UDP answer: TC %v, %d bytes, %d answers; want TC %v within %d bytes", udp.Truncated, len(packed), len(udp.Answer), tt.tc, tt.buffer)
			}
			if tt.tc && len(udp.Answer) >= tt.whole {
				t.Fatalf("UDP answer has all %d answers but TC", len(udp.Answer))
			}
			if counted := h.Stats.Truncated.Load() > truncated; counted != tt.tc {
				t.Fatalf("truncation counted %v", counted)
			}
			tcp := exchange(t, "tcp", server, tt.query.Copy())
			if tcp.Truncated || len(tcp.Answer) != tt.whole {
				t.Fatalf("TCP answer: TC %v, %d answers; want %d whole", tcp.Truncated, len(tcp.Answer), tt.whole)
			}
		})
	}
}

// Without an upstream that answers, a forwarded query gets SERVFAIL, and
// before the client gives up: never silence, never a hang.
func TestServFailWithoutUpstream(t *testing.T) {
	t.Parallel() // its own resolvers and upstreams
	// The runs below shorten the forwarder's bounds; the production one
	// must end a forward before a client's resolver retries (clientTimeout,
	// glibc's RES_TIMEOUT).
	if forwardTimeout >= clientTimeout {
		t.Fatalf("forwardTimeout %v is not under a client's wait %v: clients would time out before the SERVFAIL", forwardTimeout, clientTimeout)
	}
	refusing, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := netip.MustParseAddrPort(refusing.LocalAddr().String())
	refusing.Close() // nothing listens: the kernel answers port unreachable
	blackHole, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer blackHole.Close() // reads nothing, answers nothing
	silent := netip.MustParseAddrPort(blackHole.LocalAddr().String())
	tests := []struct {
		name      string
		upstreams []netip.AddrPort
	}{
		{"no upstream at all", nil},
		{"an upstream that refuses", []netip.AddrPort{closedPort}},
		{"an upstream that never answers", []netip.AddrPort{silent}},
		{"three that fail", []netip.AddrPort{silent, closedPort, silent}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every upstream fails whatever the wait: the forwarder's
			// timeouts shortened tenfold keep their order (a silent first
			// upstream's try, then the next; the whole forward's bound
			// cutting the third short) in a tenth of the time.
			fwd := NewForwarder()
			fwd.SetUpstreams(tt.upstreams)
			fwd.timeout, fwd.try = forwardTimeout/10, tryTimeout/10
			server, h := startResolverWith(t, DefaultLimits(), fwd)
			for _, network := range []string{"udp", "tcp"} {
				resp := exchange(t, network, server, question("example.test.", dns.TypeA, 0))
				if resp.Rcode != dns.RcodeServerFailure || !resp.RecursionAvailable {
					t.Fatalf("%s: rcode %s, RA %v; want SERVFAIL", network, dns.RcodeToString[resp.Rcode], resp.RecursionAvailable)
				}
			}
			if got := h.Stats.ServFail.Load(); got != 2 {
				t.Fatalf("ServFail counted %d, want 2", got)
			}
		})
	}
}

// A source over its budget gets no answer until the budget refills; the
// resolver counts what it dropped.
func TestRateLimit(t *testing.T) {
	t.Parallel() // its own resolver; it waits out answers that must not come
	const burst = 3
	server, h := startResolver(t, Limits{PerSource: rate.Every(time.Hour), Burst: burst, Sources: 16, TCPConns: 4})
	for i := range burst {
		if resp := exchange(t, "udp", server, question("desktop.mesh.internal.", dns.TypeA, 0)); resp.Rcode != dns.RcodeSuccess {
			t.Fatalf("query %d within the budget: %s", i, dns.RcodeToString[resp.Rcode])
		}
	}
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: silence}
		if resp, _, err := c.Exchange(question("desktop.mesh.internal.", dns.TypeA, 0), server.String()); !isTimeout(err) {
			t.Fatalf("%s query over the budget: %v, %v; want no answer", network, resp, err)
		}
	}
	if got := h.Stats.RateLimited.Load(); got != 2 {
		t.Fatalf("RateLimited = %d, want 2", got)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Malformed messages get FORMERR or nothing, never a crash; responses and
// NOTIFY are not queries.
func TestMalformedQueries(t *testing.T) {
	t.Parallel() // its own resolver; it waits out answers that must not come
	server, h := startResolver(t, DefaultLimits())
	valid, err := question("desktop.mesh.internal.", dns.TypeA, 0).Pack()
	if err != nil {
		t.Fatal(err)
	}
	with := func(edit func([]byte)) []byte {
		b := append([]byte(nil), valid...)
		edit(b)
		return b
	}
	tests := []struct {
		name   string
		packet []byte
		rcode  int // -1: no answer
	}{
		{"shorter than a header", valid[:7], -1},
		{"two questions", with(func(b []byte) { b[5] = 2 }), dns.RcodeFormatError},
		{"a question cut short", valid[:len(valid)-3], dns.RcodeFormatError},
		{"a response", with(func(b []byte) { b[2] |= 0x80 }), -1},
		{"NOTIFY", with(func(b []byte) { b[2] = b[2]&^0x78 | dns.OpcodeNotify<<3 }), dns.RcodeNotImplemented},
		{"a valid query", valid, dns.RcodeSuccess},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("udp", server.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tt.packet); err != nil {
				t.Fatal(err)
			}
			wait := clientTimeout
			if tt.rcode < 0 {
				wait = silence
			}
			c.SetReadDeadline(time.Now().Add(wait))
			buf := make([]byte, dns.MaxMsgSize)
			n, err := c.Read(buf)
			if tt.rcode < 0 {
				if !isTimeout(err) {
					t.Fatalf("answered (%d bytes, %v); want silence", n, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var resp dns.Msg
			if err := resp.Unpack(buf[:n]); err != nil || resp.Rcode != tt.rcode {
				t.Fatalf("answer rcode %s, %v; want %s", dns.RcodeToString[resp.Rcode], err, dns.RcodeToString[tt.rcode])
			}
		})
	}
	if h.Stats.Malformed.Load() == 0 {
		t.Fatal("malformed messages not counted")
	}
}

// EDNS versions above 0 get BADVERS (RFC 6891 §6.1.3); other classes in
// the mesh's domain are refused.
func TestBadVersionAndClass(t *testing.T) {
	server, _ := startResolver(t, DefaultLimits())
	v1 := question("desktop.mesh.internal.", dns.TypeA, 1232)
	v1.IsEdns0().SetVersion(1)
	chaos := question("desktop.mesh.internal.", dns.TypeA, 0)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	for _, tc := range []struct {
		name  string
		query *dns.Msg
		rcode int
	}{
		{"EDNS version 1", v1, dns.RcodeBadVers},
		{"class CHAOS", chaos, dns.RcodeRefused},
	} {
		if resp := exchange(t, "udp", server, tc.query); resp.Rcode != tc.rcode {
			t.Errorf("%s: rcode %s, want %s", tc.name, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
		}
	}
}

// The resolver reads only from this machine and the overlay: a packet or
// connection from the LAN or the internet is dropped before it is parsed.
func TestAdmitsOnlyTheOverlay(t *testing.T) {
	h := NewHandler(testTable(), NewForwarder(), DefaultLimits())
	tests := []struct {
		from string
		want bool
	}{
		{"127.0.0.1", true},
		{"::1", true},
		{"100.88.0.2", true},
		{"fd6d:6573:686e::2", true},
		{"192.168.1.20", false},
		{"203.0.113.9", false},
		{"100.64.0.1", false},
		{"fe80::1", false},
	}
	for _, tt := range tests {
		if got := h.admit(a(tt.from), true); got != tt.want {
			t.Errorf("admit(%s) = %v, want %v", tt.from, got, tt.want)
		}
	}
	if got := h.Stats.RefusedSource.Load(); got != 4 {
		t.Errorf("RefusedSource = %d, want 4", got)
	}

	// The UDP socket as the DNS server reads it skips refused datagrams.
	conn := &scriptedConn{from: []string{"192.168.1.20:5353", "[::ffff:100.88.0.3]:5353", "203.0.113.9:53", "100.88.0.2:5353"}}
	g := guardConn{PacketConn: conn, admit: h.admit}
	var got []string
	for range 2 {
		_, from, err := g.ReadFrom(make([]byte, 16))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, from.String())
	}
	if want := []string{"100.88.0.3:5353", "100.88.0.2:5353"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("read from %v, want %v", got, want)
	}
}

// scriptedConn delivers one empty datagram from each address in turn.
type scriptedConn struct {
	net.PacketConn
	from []string
}

func (c *scriptedConn) ReadFrom([]byte) (int, net.Addr, error) {
	if len(c.from) == 0 {
		return 0, nil, net.ErrClosed
	}
	ap := netip.MustParseAddrPort(c.from[0])
	c.from = c.from[1:]
	return 0, net.UDPAddrFromAddrPort(ap), nil
}

// The table of sources stays bounded: a full table forgets idle sources
// to admit a new one, and admits none while all are busy.
func TestLimiterBounded(t *testing.T) {
	l := newLimiter(Limits{PerSource: rate.Every(time.Hour), Burst: 2, Sources: 2})
	src := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{100, 88, 1, byte(i)}) }
	if !l.allow(src(1)) || !l.allow(src(2)) {
		t.Fatal("the first two sources were refused")
	}
	if l.allow(src(3)) {
		t.Fatal("a third source was admitted while both others are busy")
	}
	if !l.allow(src(1)) || l.allow(src(1)) {
		t.Fatal("source 1's budget of 2 is wrong")
	}
	if len(l.per) > 2 {
		t.Fatalf("%d sources tracked, bound 2", len(l.per))
	}
}

// A query cancelled before any upstream answered reports why.
func TestForwardCancelled(t *testing.T) {
	f := NewForwarder()
	f.SetUpstreams([]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Forward(ctx, question("example.test.", dns.TypeA, 0), "udp"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Forward with a cancelled context = %v, want context.Canceled", err)
	}
}
