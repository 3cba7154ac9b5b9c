package bind

import (
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/meshnode/meshnode/crypto"
)

// batchKernel is an inner Bind whose one receive function returns a fixed
// batch of WireGuard packets, one from each source in from.
type batchKernel struct {
	gsoKernel
	from []netip.AddrPort
}

func (k *batchKernel) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	pkt, src := wgPacket(1), make([]conn.Endpoint, len(k.from))
	for i, a := range k.from {
		src[i] = &conn.StdNetEndpoint{AddrPort: a}
	}
	recv := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for i := range k.from {
			sizes[i] = copy(bufs[i], pkt)
		}
		return copy(eps, src), nil
	}
	return []conn.ReceiveFunc{recv}, 41820, nil
}

// A batch mixes peers' packets (and strangers'): each packet gets the
// endpoint of the peer at its own source, however the sources interleave.
func TestReceiveBatchOfSeveralPeers(t *testing.T) {
	a, b := key(t), key(t)
	atA, atB := netip.MustParseAddrPort("192.0.2.1:41820"), netip.MustParseAddrPort("192.0.2.2:41820")
	stranger := netip.MustParseAddrPort("192.0.2.3:41820")
	router := staticRouter{
		to:   map[crypto.PublicKey]netip.AddrPort{a: atA, b: atB},
		from: map[netip.AddrPort]crypto.PublicKey{atA: a, atB: b},
	}
	for _, tc := range []struct {
		name string
		from []netip.AddrPort
		want []*crypto.PublicKey // nil: dropped (size 0)
	}{
		{"one peer", []netip.AddrPort{atA, atA, atA}, []*crypto.PublicKey{&a, &a, &a}},
		{"two peers in runs", []netip.AddrPort{atA, atA, atB, atB}, []*crypto.PublicKey{&a, &a, &b, &b}},
		{"two peers interleaved", []netip.AddrPort{atA, atB, atA, atB}, []*crypto.PublicKey{&a, &b, &a, &b}},
		{"a stranger between", []netip.AddrPort{atA, stranger, atA, stranger, atB}, []*crypto.PublicKey{&a, nil, &a, nil, &b}},
		{"a stranger first", []netip.AddrPort{stranger, atB}, []*crypto.PublicKey{nil, &b}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bd := New(&batchKernel{from: tc.from}, nil)
			bd.Attach(router.with(bd), (&recorder{}).handlers())
			fns, _, err := bd.Open(0)
			if err != nil {
				t.Fatal(err)
			}
			defer bd.Close()
			n := len(tc.from)
			bufs, sizes, eps := make([][]byte, n), make([]int, n), make([]conn.Endpoint, n)
			for i := range bufs {
				bufs[i] = make([]byte, 1500)
			}
			if got, err := fns[0](bufs, sizes, eps); err != nil || got != n {
				t.Fatalf("receive: n=%d err=%v, want %d packets", got, err, n)
			}
			for i, want := range tc.want {
				if want == nil {
					if sizes[i] != 0 {
						t.Errorf("packet %d from %v: reached wireguard-go, want dropped", i, tc.from[i])
					}
					continue
				}
				pe, ok := eps[i].(*PeerEndpoint)
				if !ok || pe.Key != *want || pe != bd.Endpoint(*want) {
					t.Errorf("packet %d from %v: endpoint %v, want peer %s's", i, tc.from[i], eps[i], want.Hex())
				}
			}
		})
	}
}

// BenchmarkReceiveBatch is the Bind's own work on a full receive batch
// from one peer (the inner Bind's is a fixed copy): per packet, and
// allocations per batch, which must be none.
func BenchmarkReceiveBatch(b *testing.B) {
	peer := crypto.PublicKey{1}
	at := netip.MustParseAddrPort("192.0.2.1:41820")
	from := make([]netip.AddrPort, conn.IdealBatchSize)
	for i := range from {
		from[i] = at
	}
	router := staticRouter{to: map[crypto.PublicKey]netip.AddrPort{peer: at}, from: map[netip.AddrPort]crypto.PublicKey{at: peer}}
	bd := New(&batchKernel{from: from}, nil)
	bd.Attach(router.with(bd), (&recorder{}).handlers())
	fns, _, err := bd.Open(0)
	if err != nil {
		b.Fatal(err)
	}
	defer bd.Close()
	n := len(from)
	bufs, sizes, eps := make([][]byte, n), make([]int, n), make([]conn.Endpoint, n)
	for i := range bufs {
		bufs[i] = make([]byte, 1500)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fns[0](bufs, sizes, eps); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/packet")
}
