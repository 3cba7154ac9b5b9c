package meshdns

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"golang.org/x/time/rate"
)

// echoUpstream answers names under .test with one address, and fails for
// every other name, without a network.
type echoUpstream struct{}

func (echoUpstream) Forward(_ context.Context, req *dns.Msg, _ string) (*dns.Msg, error) {
	if !strings.HasSuffix(dns.CanonicalName(req.Question[0].Name), ".test.") {
		return nil, errors.New("unreachable")
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
	return m, nil
}

// recorder is a dns.ResponseWriter that keeps what the handler wrote.
type recorder struct {
	network string
	msg     *dns.Msg
}

func (r *recorder) LocalAddr() net.Addr {
	if r.network == "tcp" {
		return &net.TCPAddr{IP: net.IPv4(100, 88, 0, 1), Port: Port}
	}
	return &net.UDPAddr{IP: net.IPv4(100, 88, 0, 1), Port: Port}
}

func (r *recorder) RemoteAddr() net.Addr {
	if r.network == "tcp" {
		return &net.TCPAddr{IP: net.IPv4(100, 88, 0, 2), Port: 40000}
	}
	return &net.UDPAddr{IP: net.IPv4(100, 88, 0, 2), Port: 40000}
}

func (r *recorder) WriteMsg(m *dns.Msg) error { r.msg = m; return nil }
func (r *recorder) Write([]byte) (int, error) { return 0, errors.New("recorder: raw writes unused") }
func (r *recorder) Close() error              { return nil }
func (r *recorder) TsigStatus() error         { return nil }
func (r *recorder) TsigTimersOnly(bool)       {}
func (r *recorder) Hijack()                   {}

// FuzzHandler feeds the handler every message that parses, as the DNS
// server would after its own checks, over UDP and TCP: it must answer
// each with a message that packs, has the query's ID, and over UDP fits
// the client's buffer.
func FuzzHandler(f *testing.F) {
	for _, q := range []*dns.Msg{
		question("desktop.mesh.internal.", dns.TypeA, 0),
		question("desktop.mesh.internal.", dns.TypeAAAA, 4096),
		question("many.mesh.internal.", dns.TypeANY, 0),
		question("mesh.internal.", dns.TypeSOA, 0),
		question("2.0.88.100.in-addr.arpa.", dns.TypePTR, 0),
		question("example.test.", dns.TypeA, 0),
		question("example.com.", dns.TypeMX, 1232),
	} {
		b, err := q.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// No budget: the fuzzer's one source asks far more than a peer may.
	h := &Handler{table: testTable(), up: echoUpstream{}, limit: newLimiter(Limits{PerSource: rate.Inf, Sources: 1})}
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(dns.Msg)
		if req.Unpack(b) != nil || len(req.Question) == 0 {
			return // the DNS server answers these itself: FORMERR or nothing
		}
		for _, network := range []string{"udp", "tcp"} {
			w := &recorder{network: network}
			h.ServeDNS(w, req.Copy())
			if w.msg == nil {
				t.Fatalf("%s: no answer", network)
			}
			packed, err := w.msg.Pack()
			if err != nil {
				t.Fatalf("%s: answer does not pack: %v", network, err)
			}
			if w.msg.Id != req.Id || !w.msg.Response {
				t.Fatalf("%s: answer ID %d (response %v), query ID %d", network, w.msg.Id, w.msg.Response, req.Id)
			}
			size := dns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil {
				size = max(dns.MinMsgSize, int(min(opt.UDPSize(), maxUDPSize)))
			}
			if network == "udp" && len(packed) > size {
				t.Fatalf("UDP answer of %d bytes for a %d-byte buffer", len(packed), size)
			}
		}
	})
}
