package discovery

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/meshnode/meshnode/internal/wire"
)

// holdingServer answers signed requests; one asking for a late answer gets
// it after the delay, at once, or never (the NAT forgot the mapping).
type holdingServer struct {
	p     *Prober
	from  netip.AddrPort
	late  string // "held", "at once" or "lost"
	asked chan time.Duration
}

func (s *holdingServer) WriteTo(pkt []byte, _ netip.AddrPort) error {
	req := &stun.Message{Raw: append([]byte{}, pkt...)}
	if err := req.Decode(); err != nil {
		return err
	}
	resp := mappedTo(req, netip.MustParseAddrPort("198.18.5.5:41000"), stun.NewShortTermIntegrity("secret"))
	v, err := req.Get(stun.AttrType(wire.STUNAttrResponseDelay))
	if err != nil {
		go s.p.HandleSTUN(resp, s.from)
		return nil
	}
	d := time.Duration(binary.BigEndian.Uint32(v)) * time.Second
	s.asked <- d
	switch s.late {
	case "held":
		time.AfterFunc(d, func() { s.p.HandleSTUN(resp, s.from) })
	case "at once":
		go s.p.HandleSTUN(resp, s.from)
	}
	return nil
}

// TestSurvives checks the lifetime probe's reading of the server's late
// answer: held for the silence means the mapping outlived it; none means it
// did not; an answer at once means the server can't tell. One request is
// sent for the silence, asking for exactly it.
func TestSurvives(t *testing.T) {
	t.Parallel()
	const idle = time.Second // the wire's unit: the shortest silence asked
	// The server here is in-process, with no conntrack to age the flow
	// for, and holds its answer on a local timer: lateGrace need only
	// cover that timer's lateness under load.
	timing := lifetimeTiming{streamAge: 10 * time.Millisecond, lateGrace: 1500 * time.Millisecond}
	for _, tc := range []struct {
		late    string
		want    bool
		wantErr error
	}{
		{"held", true, nil},
		{"lost", false, nil},
		{"at once", false, errNoDelay},
	} {
		t.Run(tc.late, func(t *testing.T) {
			t.Parallel()
			s := &holdingServer{from: netip.MustParseAddrPort("198.18.0.2:3479"), late: tc.late, asked: make(chan time.Duration, 4)}
			s.p = NewProber(s)
			s.p.life = timing
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ok, err := s.p.Survives(ctx, Target{Addr: s.from, Auth: &Credentials{Username: "node", Password: "secret"}}, idle)
			if ok != tc.want || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Survives = %v, %v; want %v, %v", ok, err, tc.want, tc.wantErr)
			}
			if n := len(s.asked); n != 1 {
				t.Fatalf("%d requests asked for a late answer, want 1", n)
			}
			if d := <-s.asked; d != idle {
				t.Errorf("asked for %v, want %v", d, idle)
			}
		})
	}
}

func TestAlternates(t *testing.T) {
	primary := Target{Addr: netip.MustParseAddrPort("198.18.0.1:3478"), Auth: &Credentials{Username: "n"}}
	got := Alternates(primary, netip.MustParseAddrPort("198.18.0.2:3479"))
	want := []string{"198.18.0.1:3479", "198.18.0.2:3478", "198.18.0.2:3479"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].Addr.String() != want[i] || got[i].Auth != primary.Auth {
			t.Errorf("alternate %d: %v, want %s signed as the primary", i, got[i], want[i])
		}
	}
	if Alternates(primary, netip.AddrPort{}) != nil {
		t.Error("alternates of a server without OTHER-ADDRESS")
	}
}
