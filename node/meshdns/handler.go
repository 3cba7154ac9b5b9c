package meshdns

import (
	"context"
	"net/netip"
	"sync/atomic"

	"github.com/miekg/dns"
)

// Answer parameters.
const (
	// recordTTL is short because names follow renames and removals within
	// a second (the coordinator pushes them at once); caching resolvers
	// in front of this one must not hold a name much longer.
	recordTTL = 1
	// negativeTTL is the SOA minimum: how long an NXDOMAIN may be cached
	// (RFC 2308 §5), as short, so a new member resolves at once.
	negativeTTL = 1
	// maxUDPSize is the largest UDP answer (the EDNS buffer size this
	// resolver advertises): 1232 bytes fits every IPv6 path without
	// fragmentation (DNS Flag Day 2020). Larger answers are truncated and
	// the client asks again over TCP.
	maxUDPSize = 1232
)

// Stats count what the resolver did; status shows them.
type Stats struct {
	Queries       atomic.Uint64 // queries handled (after the source and rate checks)
	Answered      atomic.Uint64 // answered from the mesh's names
	NXDomain      atomic.Uint64 // names in the mesh's domain that don't exist
	Forwarded     atomic.Uint64 // answered by an upstream
	ServFail      atomic.Uint64 // no upstream answered in time
	Truncated     atomic.Uint64 // UDP answers with TC set: cut to fit, here or upstream
	RateLimited   atomic.Uint64 // queries dropped over a source's budget
	RefusedSource atomic.Uint64 // packets and connections from sources off the overlay
	Malformed     atomic.Uint64 // messages that could not be parsed
}

// Handler answers queries (dns.Handler).
type Handler struct {
	table *Table
	up    upstream
	limit *limiter
	// Stats are the resolver's counters.
	Stats Stats
}

// NewHandler answers from table and forwards to up.
func NewHandler(table *Table, up *Forwarder, limits Limits) *Handler {
	return &Handler{table: table, up: up, limit: newLimiter(limits)}
}

// admit decides whether the resolver reads from a source at all: this
// machine (loopback) and addresses on the overlay. A query (not a TCP
// connection) also takes from the source's budget.
func (h *Handler) admit(src netip.Addr, query bool) bool {
	if !src.IsLoopback() && !h.onOverlay(src) {
		h.Stats.RefusedSource.Add(1)
		return false
	}
	if query && !h.limit.allow(src) {
		h.Stats.RateLimited.Add(1)
		return false
	}
	return true
}

func (h *Handler) onOverlay(a netip.Addr) bool {
	for _, p := range h.table.overlay {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ServeDNS answers one query. UDP queries passed admit as they were read;
// a TCP query takes from its source's budget here.
func (h *Handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	network := w.LocalAddr().Network()
	if network == "tcp" && !h.admit(addrOf(w.RemoteAddr()), true) {
		return
	}
	resp := h.respond(context.Background(), req, network)
	if network != "tcp" {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(min(opt.UDPSize(), maxUDPSize))
		}
		resp.Truncate(size)
		if resp.Truncated {
			h.Stats.Truncated.Add(1)
		}
	}
	w.WriteMsg(resp) //nolint:errcheck // the client went away; it asks again
}

// respond builds the answer to req, which arrived over network.
func (h *Handler) respond(ctx context.Context, req *dns.Msg, network string) *dns.Msg {
	h.Stats.Queries.Add(1)
	if len(req.Question) != 1 || req.Response || req.Opcode != dns.OpcodeQuery {
		return h.reply(req, dns.RcodeFormatError)
	}
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		return h.reply(req, dns.RcodeBadVers) // RFC 6891 §6.1.3
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	if a, ok := h.table.lookup(name); ok {
		return h.authoritative(req, q, a)
	}
	if addr, ok := reverseAddr(name); ok {
		if target, zone, ok := h.table.ptr(addr); ok {
			return h.reverse(req, q, target, zone)
		}
	}
	resp, err := h.up.Forward(ctx, req, network)
	if err != nil {
		h.Stats.ServFail.Add(1)
		return h.reply(req, dns.RcodeServerFailure)
	}
	h.Stats.Forwarded.Add(1)
	resp.Id = req.Id
	return resp
}

// reply is an answer with no records, EDNS kept when the query had it.
func (h *Handler) reply(req *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	m.Rcode = rcode
	if req.IsEdns0() != nil {
		m.SetEdns0(maxUDPSize, false)
	}
	return m
}

// authoritative answers a name in the mesh's domain.
func (h *Handler) authoritative(req *dns.Msg, q dns.Question, a answer) *dns.Msg {
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		return h.reply(req, dns.RcodeRefused)
	}
	m := h.reply(req, dns.RcodeSuccess)
	m.Authoritative = true
	h.Stats.Answered.Add(1)
	if !a.exists {
		h.Stats.NXDomain.Add(1)
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{soa(a.zone)}
		return m
	}
	if a.apex && (q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeANY) {
		m.Answer = append(m.Answer, soa(a.zone))
	}
	for _, addr := range a.addrs {
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: recordTTL}
		switch {
		case addr.Is4() && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: addr.AsSlice()})
		case addr.Is6() && (q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY):
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: addr.AsSlice()})
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{soa(a.zone)} // NODATA (RFC 2308 §2.2)
	}
	return m
}

// reverse answers a reverse name of an overlay address: the member that
// holds it, or NXDOMAIN.
func (h *Handler) reverse(req *dns.Msg, q dns.Question, target, zone string) *dns.Msg {
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		return h.reply(req, dns.RcodeRefused)
	}
	m := h.reply(req, dns.RcodeSuccess)
	m.Authoritative = true
	h.Stats.Answered.Add(1)
	switch {
	case target == "":
		h.Stats.NXDomain.Add(1)
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{soa(zone)}
	case q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY:
		m.Answer = []dns.RR{&dns.PTR{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: recordTTL}, Ptr: target}}
	default:
		m.Ns = []dns.RR{soa(zone)}
	}
	return m
}

// soa is the zone's start of authority, which negative answers carry so
// that resolvers cache them for negativeTTL (RFC 2308 §3). The serial
// stays 1: nothing transfers the zone.
func soa(zone string) dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: negativeTTL},
		Ns:      "ns." + zone,
		Mbox:    "hostmaster." + zone,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  negativeTTL,
	}
}
