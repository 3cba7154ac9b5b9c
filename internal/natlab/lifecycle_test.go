package natlab

import (
	"testing"
	"time"
)

// shortIdle is a mapping timeout short enough to wait out in a test.
const shortIdle = 200 * time.Millisecond

// TestIdleExpiry waits for a mapping to expire, checks the old mapping no
// longer lets packets in, and that the next outbound packet gets a new one.
func TestIdleExpiry(t *testing.T) {
	tests := []struct {
		alloc    PortAlloc
		samePort bool
	}{
		{PortPreserve, true},
		{PortRandom, false},
	}
	for _, tt := range tests {
		t.Run(tt.alloc.String(), func(t *testing.T) {
			t.Parallel() // each waits out an idle timeout in its own lab
			l, _ := newLab(t)
			stun := listen(t, l.NewHost("stun"), 3478)
			cfg := named(PortRestrictedCone(), "nat")
			cfg.PortAlloc, cfg.IdleTimeout = tt.alloc, shortIdle
			nat := mustNAT(t, l, cfg)
			a := listen(t, nat.NewHost("a"), 5000)

			old := observe(t, a, stun)
			if n := nat.MappingCount(); n != 1 {
				t.Fatalf("MappingCount = %d, want 1", n)
			}
			waitFor(t, "the mapping to expire", func() bool { return nat.MappingCount() == 0 })
			send(t, stun, old, "late reply")
			if a.Queued() != 0 || nat.Stats().DroppedNoMapping != 1 {
				t.Errorf("reply to expired mapping %v: queued %d, DroppedNoMapping %d; want dropped", old, a.Queued(), nat.Stats().DroppedNoMapping)
			}
			renewed := observe(t, a, stun)
			if got := renewed == old; got != tt.samePort {
				t.Errorf("mapping after expiry %v, before %v: same = %v, want %v", renewed, old, got, tt.samePort)
			}
			if s := nat.Stats(); s.MappingsCreated != 2 || s.MappingsExpired != 1 {
				t.Errorf("MappingsCreated %d, MappingsExpired %d; want 2 and 1", s.MappingsCreated, s.MappingsExpired)
			}
		})
	}
}

// TestRefresh keeps a mapping alive for several idle timeouts with traffic in
// one direction only: outbound always refreshes, inbound does once the
// remote was let in (conntrack's replied state).
func TestRefresh(t *testing.T) {
	const (
		idle  = 500 * time.Millisecond
		every = 50 * time.Millisecond
		ticks = 25 // 1.25 s: 2.5 idle timeouts
	)
	for _, inbound := range []bool{false, true} {
		name := map[bool]string{false: "outbound", true: "inbound"}[inbound]
		t.Run(name, func(t *testing.T) {
			t.Parallel() // each runs for seconds of real time in its own lab
			l, _ := newLab(t)
			stun := listen(t, l.NewHost("stun"), 3478)
			cfg := named(PortRestrictedCone(), "nat")
			cfg.IdleTimeout = idle
			nat := mustNAT(t, l, cfg)
			a := listen(t, nat.NewHost("a"), 5000)
			ext := observe(t, a, stun)

			tick := time.NewTicker(every)
			defer tick.Stop()
			for range ticks {
				<-tick.C
				if inbound {
					send(t, stun, ext, "keepalive")
					drain(t, a)
				} else if got := observe(t, a, stun); got != ext {
					t.Fatalf("mapping changed from %v to %v", ext, got)
				}
			}
			if s := nat.Stats(); s.MappingsExpired != 0 || s.DroppedNoMapping != 0 {
				t.Errorf("mapping expired under %s traffic: %+v", name, s)
			}
			waitFor(t, "the mapping to expire once traffic stops", func() bool { return nat.MappingCount() == 0 })
		})
	}
}

// TestMappingLoss covers the ways a NAT forgets its mappings.
func TestMappingLoss(t *testing.T) {
	tests := []struct {
		name   string
		lose   func(*NAT)
		wantIP string
	}{
		{"flush", (*NAT).Flush, "198.18.1.1"},
		{"public IP change", func(n *NAT) { n.SetPublicIP(ip("198.18.9.9")) }, "198.18.9.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newLab(t)
			stun := listen(t, l.NewHost("stun"), 3478)
			nat := mustNAT(t, l, named(PortRestrictedCone(), "nat"))
			a := listen(t, nat.NewHost("a"), 5000)
			old := observe(t, a, stun)

			tt.lose(nat)
			if n := nat.MappingCount(); n != 0 {
				t.Errorf("MappingCount = %d after %s, want 0", n, tt.name)
			}
			send(t, stun, old, "to the old mapping")
			if a.Queued() != 0 {
				t.Errorf("a packet to the old mapping %v got through", old)
			}
			if now := observe(t, a, stun); now.Addr() != ip(tt.wantIP) || nat.Config().PublicIP != ip(tt.wantIP) {
				t.Errorf("mapping now %v, Config().PublicIP %v; want address %s", now, nat.Config().PublicIP, tt.wantIP)
			}
		})
	}
}

// TestHairpin sends from one inside host to another's public mapping.
func TestHairpin(t *testing.T) {
	for _, hairpin := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[hairpin], func(t *testing.T) {
			l, _ := newLab(t)
			stun := listen(t, l.NewHost("stun"), 3478)
			cfg := named(FullCone(), "nat")
			cfg.Hairpin = hairpin
			nat := mustNAT(t, l, cfg)
			a := listen(t, nat.NewHost("a"), 5000)
			b := listen(t, nat.NewHost("b"), 6000)
			bPublic := observe(t, b, stun)

			send(t, a, bPublic, "via the public mapping")
			if !hairpin {
				if b.Queued() != 0 || nat.Stats().DroppedHairpin != 1 {
					t.Errorf("hairpin off: b queued %d, DroppedHairpin %d; want 0 and 1", b.Queued(), nat.Stats().DroppedHairpin)
				}
				return
			}
			_, src := recv(t, b)
			if aPublic := observe(t, a, stun); src != aPublic {
				t.Errorf("hairpinned source %v, want a's public mapping %v (RFC 4787 REQ-9)", src, aPublic)
			}
			if n := nat.Stats().Hairpinned; n != 1 {
				t.Errorf("Hairpinned = %d, want 1", n)
			}
		})
	}
}

// TestLAN checks hosts behind one NAT reach each other directly, untranslated.
func TestLAN(t *testing.T) {
	l, _ := newLab(t)
	nat := mustNAT(t, l, named(Symmetric(), "nat"))
	a := listen(t, nat.NewHost("a"), 5000)
	b := listen(t, nat.NewHost("b"), 6000)
	send(t, a, b.LocalAddrPort(), "hello")
	if _, src := recv(t, b); src != a.LocalAddrPort() {
		t.Errorf("LAN source %v, want %v", src, a.LocalAddrPort())
	}
	if n := nat.MappingCount(); n != 0 {
		t.Errorf("MappingCount = %d, LAN traffic must not touch the NAT", n)
	}
}

// TestDoubleNAT puts a home router behind carrier-grade NAT: the internet
// sees only the outer mapping, and replies find their way back in.
func TestDoubleNAT(t *testing.T) {
	l, _ := newLab(t)
	stun := listen(t, l.NewHost("stun"), 3478)
	cgnat := mustNAT(t, l, NATConfig{Name: "cgnat", PublicIP: ip("198.18.5.1"), Filtering: AddressAndPortDependentFiltering})
	home := mustNAT(t, l, NATConfig{Name: "home", Upstream: cgnat, PublicIP: ip("100.64.0.2"), Filtering: AddressAndPortDependentFiltering})
	alice := home.NewHost("alice")
	// The same address on the CGNAT's LAN: separate networks may collide.
	cgnat.NewHost("neighbour", alice.IPs()[0])
	a := listen(t, alice, 5000)

	ext := observe(t, a, stun)
	if ext.Addr() != ip("198.18.5.1") {
		t.Errorf("internet sees %v, want the outer public address 198.18.5.1", ext)
	}
	send(t, stun, ext, "reply")
	if got, _ := recv(t, a); got != "reply" {
		t.Errorf("alice got %q, want the reply", got)
	}
	if h, c := home.MappingCount(), cgnat.MappingCount(); h != 1 || c != 1 {
		t.Errorf("mappings home %d, cgnat %d; want 1 each", h, c)
	}
	send(t, stun, ap("100.64.0.2:5000"), "to the inner address")
	if a.Queued() != 0 {
		t.Error("the inner NAT's address was reachable from the internet")
	}
}

// TestBlockUDP drops everything outbound before any mapping is made.
func TestBlockUDP(t *testing.T) {
	l, _ := newLab(t)
	stun := listen(t, l.NewHost("stun"), 3478)
	nat := mustNAT(t, l, NATConfig{Name: "nat", BlockUDP: true})
	a := listen(t, nat.NewHost("a"), 5000)
	send(t, a, stun.LocalAddrPort(), "blocked")
	if stun.Queued() != 0 || nat.MappingCount() != 0 || nat.Stats().DroppedBlocked != 1 {
		t.Errorf("stun queued %d, mappings %d, DroppedBlocked %d; want 0, 0, 1", stun.Queued(), nat.MappingCount(), nat.Stats().DroppedBlocked)
	}
}
