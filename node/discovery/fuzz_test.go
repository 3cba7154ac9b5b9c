package discovery

import (
	"net/netip"
	"testing"

	"github.com/pion/stun/v3"
)

// discard is a Transport that sends nothing.
type discard struct{}

func (discard) WriteTo([]byte, netip.AddrPort) error { return nil }

// FuzzHandleSTUN feeds the client's response parsing any datagram, with a
// transaction pending for whatever ID the datagram carries. It must not
// panic, and must deliver a Response only for a Binding success response
// with a usable XOR-MAPPED-ADDRESS.
func FuzzHandleSTUN(f *testing.F) {
	from := netip.MustParseAddrPort("192.0.2.1:3478")
	f.Fuzz(func(t *testing.T, pkt []byte) {
		p := NewProber(discard{})
		tx := transaction{answer: make(chan answer, 1)}
		if len(pkt) >= 20 {
			p.pending[[stun.TransactionIDSize]byte(pkt[8:20])] = tx
		}
		p.HandleSTUN(pkt, from)
		select {
		case a := <-tx.answer:
			r := a.resp
			m := &stun.Message{Raw: pkt}
			if err := m.Decode(); err != nil || m.Type != stun.BindingSuccess {
				t.Fatalf("delivered %+v for a datagram that is not a Binding success (%v)", r, err)
			}
			if !r.Mapped.IsValid() || r.Origin != from {
				t.Fatalf("delivered mapping %v from %v", r.Mapped, r.Origin)
			}
		default:
		}
	})
}
