package stunserver

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// TestFullTableStillAnswersNewClients performs the lock-out attack: every
// slot of the source table is taken by sources that each sent a request
// just now, from many /64s and many IPv4 addresses. A new client, a real
// one on loopback, must still be answered.
func TestFullTableStillAnswersNewClients(t *testing.T) {
	primary := listen(t, "127.0.0.1:0")
	s, _ := serve(t, Conns{Primary: primary})
	g := syntheticGrid(false)
	req := request()
	for i := range maxSources {
		var src netip.Addr
		if i%2 == 0 {
			src = netip.AddrFrom4([4]byte{198, 18, byte(i >> 9), byte(i >> 1)})
		} else {
			var a [16]byte
			copy(a[:], netip.MustParseAddr("2001:db8::").AsSlice())
			binary.BigEndian.PutUint32(a[4:8], uint32(i))
			binary.BigEndian.PutUint64(a[8:], rand.Uint64())
			src = netip.AddrFrom16(a)
		}
		if _, _, result, _ := s.respond(req, netip.AddrPortFrom(src, 40000), g, 0, time.Now()); result != ResultOK {
			t.Fatalf("flood source %d (%v): %s", i, src, result)
		}
	}
	if n := s.limit.Len(); n != maxSources {
		t.Fatalf("after the flood the table holds %d sources, want it full (%d)", n, maxSources)
	}
	client := listen(t, "127.0.0.1:0")
	fresh := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	raw, _ := exchange(t, client, primary.LocalAddr(), fresh.Raw)
	resp := &stun.Message{Raw: raw}
	if err := resp.Decode(); err != nil || resp.Type != stun.BindingSuccess || resp.TransactionID != fresh.TransactionID {
		t.Fatalf("new client got %x (%v), want a success response", raw, err)
	}
	if n := s.limit.Len(); n > maxSources {
		t.Fatalf("table grew to %d sources, past its bound %d", n, maxSources)
	}
}

// TestIPv6PrefixSprayIsOneSource: one host sending from many addresses of
// its /64 is limited as one source and takes one slot; its neighbouring /64
// is not limited by it.
func TestIPv6PrefixSprayIsOneSource(t *testing.T) {
	s := New(Options{})
	g := syntheticGrid(false)
	req := request()
	now := time.Unix(1000, 0)
	prefix := netip.MustParsePrefix("2001:db8:1:2::/64")
	counts := map[string]int{}
	const spray = 10 * sourceBurst
	for range spray {
		a := prefix.Addr().As16()
		binary.BigEndian.PutUint64(a[8:], rand.Uint64())
		_, _, result, _ := s.respond(req, netip.AddrPortFrom(netip.AddrFrom16(a), 40000), g, 0, now)
		counts[result]++
	}
	if counts[ResultOK] != sourceBurst || counts[ResultRateLimited] != spray-sourceBurst {
		t.Fatalf("%d requests from one /64 at once: %v, want %d ok and the rest rate limited", spray, counts, sourceBurst)
	}
	neighbour := netip.MustParseAddrPort("[2001:db8:1:3::1]:40000")
	if _, _, result, _ := s.respond(req, neighbour, g, 0, now); result != ResultOK {
		t.Fatalf("the neighbouring /64: %s, want ok", result)
	}
	if n := s.limit.Len(); n != 2 {
		t.Fatalf("table holds %d sources, want 2 (the sprayed /64 and its neighbour)", n)
	}
}
