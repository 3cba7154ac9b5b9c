package discovery

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// scripted is a Transport whose server answers each request with the
// datagrams answer builds, delivered to the prober in order.
type scripted struct {
	p      *Prober
	from   netip.AddrPort
	answer func(req *stun.Message) [][]byte
	signed []bool // per request: did it carry valid credentials?
}

func (s *scripted) WriteTo(pkt []byte, _ netip.AddrPort) error {
	req := &stun.Message{Raw: append([]byte{}, pkt...)}
	if err := req.Decode(); err != nil {
		return err
	}
	s.signed = append(s.signed, stun.NewShortTermIntegrity("secret").Check(req) == nil && req.Contains(stun.AttrUsername))
	answers := s.answer(req)
	// Delivered in order, after WriteTo returns, as from the network.
	go func() {
		for _, b := range answers {
			s.p.HandleSTUN(b, s.from)
		}
	}()
	return nil
}

func mappedTo(req *stun.Message, a netip.AddrPort, extra ...stun.Setter) []byte {
	setters := append([]stun.Setter{stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: a.Addr().AsSlice(), Port: int(a.Port())}}, extra...)
	return stun.MustBuild(append(setters, stun.Fingerprint)...).Raw
}

// TestSignedQueries checks the client side of short-term credentials: a
// signed request is answered only by a response signed with the same key
// (an off-path forger's unsigned or wrongly signed answer is ignored, even
// when it arrives first), and a coordinator that doesn't know the
// credential attributes (420) is asked again unsigned.
func TestSignedQueries(t *testing.T) {
	real := netip.MustParseAddrPort("198.18.5.5:41000")
	forged := netip.MustParseAddrPort("203.0.113.66:666")
	good := stun.NewShortTermIntegrity("secret")
	tests := []struct {
		name       string
		answer     func(req *stun.Message) [][]byte
		wantSigned []bool
	}{
		{"signed answer", func(req *stun.Message) [][]byte {
			return [][]byte{mappedTo(req, real, good)}
		}, []bool{true}},
		{"unsigned forgery first", func(req *stun.Message) [][]byte {
			return [][]byte{mappedTo(req, forged), mappedTo(req, real, good)}
		}, []bool{true}},
		{"wrongly signed forgery first", func(req *stun.Message) [][]byte {
			return [][]byte{mappedTo(req, forged, stun.NewShortTermIntegrity("guess")), mappedTo(req, real, good)}
		}, []bool{true}},
		{"older coordinator: 420, then unsigned", func(req *stun.Message) [][]byte {
			if !req.Contains(stun.AttrUsername) {
				return [][]byte{mappedTo(req, real)}
			}
			return [][]byte{stun.MustBuild(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingError,
				stun.CodeUnknownAttribute, stun.UnknownAttributes{stun.AttrUsername, stun.AttrMessageIntegrity}, stun.Fingerprint).Raw}
		}, []bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &scripted{from: netip.MustParseAddrPort("198.18.0.1:3478"), answer: tt.answer}
			tr.p = NewProber(tr)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r, err := tr.p.Query(ctx, Target{Addr: tr.from, Auth: &Credentials{Username: "node", Password: "secret"}}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if r.Mapped != real {
				t.Errorf("mapped %v, want %v", r.Mapped, real)
			}
			if len(tr.signed) != len(tt.wantSigned) {
				t.Fatalf("requests signed %v, want %v", tr.signed, tt.wantSigned)
			}
			for i := range tr.signed {
				if tr.signed[i] != tt.wantSigned[i] {
					t.Errorf("requests signed %v, want %v", tr.signed, tt.wantSigned)
				}
			}
		})
	}
}
