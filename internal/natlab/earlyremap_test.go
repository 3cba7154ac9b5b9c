package natlab

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// earlyPair is two EarlyRemap NATs one uplink hop from the internet, a host
// behind each on port 41820, and what a STUN server saw of each.
type earlyPair struct {
	natA, natB *NAT
	a, b       *Conn
	toA, toB   netip.AddrPort
}

func newEarlyPair(t *testing.T, l *Lab) earlyPair {
	t.Helper()
	stun := listen(t, l.NewHost("stun"), 3478)
	var p earlyPair
	for _, side := range []struct {
		name string
		nat  **NAT
		conn **Conn
		pub  *netip.AddrPort
	}{{"a", &p.natA, &p.a, &p.toA}, {"b", &p.natB, &p.b, &p.toB}} {
		cfg := EarlyRemap()
		cfg.Name, cfg.UplinkHops = "nat-"+side.name, 1
		*side.nat = mustNAT(t, l, cfg)
		*side.conn = listen(t, (*side.nat).NewHost(side.name), 41820)
		*side.pub = observe(t, *side.conn, stun)
	}
	return p
}

// TestEarlyRemapNAT: a TrackUnsolicited NAT keeps a packet that arrives
// before its host has sent to the source, and moves the host's flow to that
// source to another port; a low-TTL prime from each side first avoids it.
func TestEarlyRemapNAT(t *testing.T) {
	t.Run("punched early", func(t *testing.T) {
		l, _ := newLab(t)
		p := newEarlyPair(t, l)
		send(t, p.b, p.toA, "early")
		if s := p.natA.Stats(); s.Tracked != 1 || p.a.Queued() != 0 {
			t.Fatalf("b's early packet: nat-a tracked %d, a got %d; want it kept by the NAT", s.Tracked, p.a.Queued())
		}
		send(t, p.a, p.toB, "answer")
		if s := p.natA.Stats(); s.Remapped != 1 {
			t.Errorf("nat-a moved %d flows, want a's flow to b", s.Remapped)
		}
		// a's answer left from another port, which b's NAT never sent to:
		// it keeps that one too, and b hears nothing.
		if s := p.natB.Stats(); s.Tracked != 1 || p.b.Queued() != 0 {
			t.Errorf("a's answer: nat-b tracked %d, b got %d; want it kept by the NAT", s.Tracked, p.b.Queued())
		}
		send(t, p.b, p.toA, "again")
		if p.a.Queued() != 0 || p.natA.TrackedCount() != 1 {
			t.Errorf("b's next packet to %v reached a (%d queued) or wasn't kept (%d tracked)", p.toA, p.a.Queued(), p.natA.TrackedCount())
		}
	})
	t.Run("primed first", func(t *testing.T) {
		l, _ := newLab(t)
		p := newEarlyPair(t, l)
		for _, c := range []struct {
			from *Conn
			to   netip.AddrPort
			nat  *NAT
		}{{p.a, p.toB, p.natA}, {p.b, p.toA, p.natB}} {
			if _, err := c.from.WriteToUDPAddrPortTTL([]byte("prime"), c.to, 2); err != nil {
				t.Fatal(err)
			}
			if s := c.nat.Stats(); s.DroppedTTL != 1 {
				t.Errorf("%s: the prime died %d times at the NAT's uplink, want once", c.nat.Name(), s.DroppedTTL)
			}
		}
		send(t, p.a, p.toB, "punch")
		if got, src := recv(t, p.b); got != "punch" || src != p.toA {
			t.Errorf("b got %q from %v, want a's punch from %v", got, src, p.toA)
		}
		send(t, p.b, p.toA, "punch")
		if got, src := recv(t, p.a); got != "punch" || src != p.toB {
			t.Errorf("a got %q from %v, want b's punch from %v", got, src, p.toB)
		}
		for _, n := range []*NAT{p.natA, p.natB} {
			if s := n.Stats(); s.Tracked != 0 || s.Remapped != 0 {
				t.Errorf("%s tracked %d and moved %d flows; want none", n.Name(), s.Tracked, s.Remapped)
			}
		}
	})
	t.Run("tracked pair expires", func(t *testing.T) {
		l, _ := newLab(t)
		cfg := EarlyRemap()
		cfg.Name, cfg.IdleTimeout = "nat", 50*time.Millisecond
		nat := mustNAT(t, l, cfg)
		stun := listen(t, l.NewHost("stun"), 3478)
		peer := listen(t, l.NewHost("peer"), 41820)
		a := listen(t, nat.NewHost("a"), 41820)
		pub := observe(t, a, stun)
		send(t, peer, pub, "early")
		waitFor(t, "the tracked pair to expire", func() bool { return nat.TrackedCount() == 0 })
		if got := observe(t, a, peer); got != pub {
			t.Errorf("after the tracked pair expired, a's flow to the peer maps to %v, want %v", got, pub)
		}
	})
}

// TestTTL: a packet spends one TTL per NAT and uplink hop, and one that
// dies inside leaves no mapping.
func TestTTL(t *testing.T) {
	l, _ := newLab(t)
	server := listen(t, l.NewHost("server"), 3478)
	cfg := PortRestrictedCone()
	cfg.Name, cfg.UplinkHops = "nat", 2
	nat := mustNAT(t, l, cfg)
	a := listen(t, nat.NewHost("a"), 5000)
	for _, tc := range []struct {
		ttl      int
		arrives  bool
		mappings int
	}{
		{1, false, 0}, // dies at the NAT, before translation
		{3, false, 1}, // translated, dies at the second uplink hop
		{4, true, 1},
	} {
		if _, err := a.WriteToUDPAddrPortTTL([]byte("x"), server.LocalAddrPort(), tc.ttl); err != nil {
			t.Fatal(err)
		}
		if got := server.Queued() == 1; got != tc.arrives {
			t.Errorf("TTL %d: arrived = %v, want %v", tc.ttl, got, tc.arrives)
		}
		if got := nat.MappingCount(); got != tc.mappings {
			t.Errorf("TTL %d: %d mappings, want %d", tc.ttl, got, tc.mappings)
		}
		drain(t, server)
	}
	for _, ttl := range []int{0, 256} {
		if _, err := a.WriteToUDPAddrPortTTL([]byte("x"), server.LocalAddrPort(), ttl); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("TTL %d: err %v, want EINVAL", ttl, err)
		}
	}
}
