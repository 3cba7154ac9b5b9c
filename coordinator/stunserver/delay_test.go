package stunserver

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/meshnode/meshnode/internal/wire"
)

func delayAttr(d time.Duration) stun.Setter {
	return attribute(stun.AttrType(wire.STUNAttrResponseDelay), binary.BigEndian.AppendUint32(nil, uint32(d/time.Second)))
}

// A member's signed request asking for a late answer gets it after the
// delay, from the socket it came in on, and signed; unsigned requests, and
// a member's requests beyond its share of held answers, are answered at
// once.
func TestDelayedAnswers(t *testing.T) {
	t.Parallel() // its own server; it waits for the held answers
	conns := Conns{Primary: listen(t, "127.0.0.1:0")}
	u := &users{pass: map[string]string{"alice": "secret"}, observed: map[string]netip.AddrPort{}}
	serveWith(t, conns, Options{Software: software, Auth: u})
	server := conns.Primary.LocalAddr()
	signed := func(extra ...stun.Setter) []byte {
		return request(append(append([]stun.Setter{stun.NewUsername("alice")}, extra...), stun.NewShortTermIntegrity("secret"), stun.Fingerprint)...)
	}
	// The shortest delay the attribute carries (whole seconds): the
	// answer at once still comes well before it.
	const delay = time.Second

	// More than a node's share: the first MaxDelayedPerNode wait, the rest
	// are answered at once.
	client := listen(t, "127.0.0.1:0")
	sent := time.Now()
	var ids [][stun.TransactionIDSize]byte
	for range wire.MaxDelayedPerNode + 1 {
		req := signed(delayAttr(delay))
		ids = append(ids, [stun.TransactionIDSize]byte(req[8:20]))
		if _, err := client.WriteTo(req, server); err != nil {
			t.Fatal(err)
		}
	}
	// An unsigned request may not hold anything.
	if resp, _ := exchange(t, listen(t, "127.0.0.1:0"), server, request(delayAttr(delay), stun.Fingerprint)); resp == nil {
		t.Fatal("no answer to an unsigned request")
	}
	buf := make([]byte, 1500)
	for i := range wire.MaxDelayedPerNode + 1 {
		client.SetReadDeadline(time.Now().Add(ioDeadline + delay)) //nolint:errcheck // the read reports it
		n, _, err := client.ReadFrom(buf)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		m := &stun.Message{Raw: append([]byte{}, buf[:n]...)}
		if err := m.Decode(); err != nil || m.Type != stun.BindingSuccess {
			t.Fatalf("answer %d: %v, %v", i, m.Type, err)
		}
		if err := stun.NewShortTermIntegrity("secret").Check(m); err != nil {
			t.Errorf("answer %d not signed: %v", i, err)
		}
		late := time.Since(sent) >= delay
		// The one over the share comes first, at once; the held ones after.
		if want := i > 0; late != want {
			t.Errorf("answer %d (transaction %x) late=%v, want %v", i, m.TransactionID, late, want)
		}
		if i == 0 && m.TransactionID != ids[len(ids)-1] {
			t.Errorf("the answer at once was for %x, want the request over the share %x", m.TransactionID, ids[len(ids)-1])
		}
	}
}

// Held answers are dropped when the server stops: no timer is left behind
// and nothing more is held.
func TestDelayedAnswersDroppedOnClose(t *testing.T) {
	q := newDelayed()
	c := nopConn{}
	for range 2 {
		if !q.hold("alice", time.Hour, c, []byte("x"), &net.UDPAddr{}) {
			t.Fatal("hold refused within the share")
		}
	}
	q.close()
	if q.hold("alice", time.Millisecond, c, []byte("x"), &net.UDPAddr{}) {
		t.Fatal("hold accepted after close")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.total != 0 || len(q.timers) != 0 {
		t.Fatalf("after close: %d held, %d timers", q.total, len(q.timers))
	}
}

// nopConn is a PacketConn that writes nowhere.
type nopConn struct{ net.PacketConn }

func (nopConn) WriteTo([]byte, net.Addr) (int, error) { return 0, nil }
