package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/natlab"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/node/path"
)

// Convergence deadlines: generous, so a loaded CI machine doesn't flake.
const (
	pathDeadline     = 30 * time.Second
	transferDeadline = 120 * time.Second
)

// recoverySpeed runs the path manager's timers this many times faster than
// production in tests that wait for a path to be found dead or for a punch
// round to fail: the same steps in the same order, sooner.
const recoverySpeed = 3

// scaledTiming is the production path timing run f times faster
// (path.Timing.Scaled).
func scaledTiming(f float64) *path.Timing {
	tm := path.DefaultTiming(config.DefaultNode().Keepalive).Scaled(f)
	return &tm
}

// homeNAT is a typical home router: Linux masquerade, port-restricted cone.
func homeNAT(name string) natlab.NATConfig {
	c := natlab.PortRestrictedCone()
	c.Name = name
	return c
}

// homeAndOffice is a mesh of two nodes behind home routers: a at home, b
// at the office.
func homeAndOffice(t *testing.T) (m *meshlab.Mesh, a, b *meshlab.Node) {
	t.Helper()
	m = meshlab.New(t, meshlab.Options{})
	a = m.AddNode("a", m.NAT(homeNAT("home")).NewHost("a", netip.MustParseAddr("192.168.1.2")), meshlab.NodeOptions{})
	b = m.AddNode("b", m.NAT(homeNAT("office")).NewHost("b", netip.MustParseAddr("10.0.0.2")), meshlab.NodeOptions{})
	return m, a, b
}

func waitDirect(t *testing.T, a, b *meshlab.Node) time.Duration {
	t.Helper()
	return wait.For(t, pathDeadline, a.Name+" and "+b.Name+" direct both ways", func() bool {
		return a.PathTo(b).Path == path.PathDirect && b.PathTo(a).Path == path.PathDirect
	})
}

// transfer sends size random bytes from a to b over the overlay with TCP
// and checks they arrive intact.
func transfer(t *testing.T, a, b *meshlab.Node, size int) {
	t.Helper()
	if err := tryTransfer(a, b, size); err != nil {
		t.Fatal(err)
	}
}

// tryTransfer is transfer for goroutines: it reports instead of failing.
func tryTransfer(a, b *meshlab.Node, size int) error {
	return tryTransferCtx(context.Background(), a, b, size)
}

// tryTransferCtx is tryTransfer that gives up when ctx ends.
func tryTransferCtx(ctx context.Context, a, b *meshlab.Node, size int) error {
	ctx, cancel := context.WithTimeout(ctx, transferDeadline)
	defer cancel()
	ln, err := b.Net.ListenTCPAddrPort(netip.AddrPortFrom(b.Addr4(), 0))
	if err != nil {
		return fmt.Errorf("listen on %s: %w", b.Name, err)
	}
	defer ln.Close()
	want := make([]byte, size)
	rand.Read(want)
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer context.AfterFunc(ctx, func() { c.Close() })()
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	c, err := a.Net.DialContextTCPAddrPort(ctx, netip.AddrPortFrom(b.Addr4(), uint16(ln.Addr().(*net.TCPAddr).Port)))
	if err != nil {
		return fmt.Errorf("dial %s over the overlay: %w", b.Name, err)
	}
	// Ending ctx (the deadline, or the caller giving up) unblocks both ends.
	defer context.AfterFunc(ctx, func() { c.Close(); ln.Close() })()
	_, err = c.Write(want)
	c.Close()
	if err != nil {
		return fmt.Errorf("write to %s: %w", b.Name, err)
	}
	if g := <-got; !bytes.Equal(g, want) {
		return fmt.Errorf("%s received %d bytes, want %d intact", b.Name, len(g), size)
	}
	return nil
}

func TestHomeNATsGoDirectAndCarryTCP(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{})
	home := m.NAT(homeNAT("home"))
	office := m.NAT(homeNAT("office"))
	a := m.AddNode("laptop", home.NewHost("laptop", netip.MustParseAddr("192.168.1.10")), meshlab.NodeOptions{})
	b := m.AddNode("desktop", office.NewHost("desktop", netip.MustParseAddr("10.0.0.20")), meshlab.NodeOptions{})
	took := waitDirect(t, a, b)
	t.Logf("direct after %v", took)
	// The path must use the peer's public mapping, not an unreachable LAN address.
	if ep := a.PathTo(b).Endpoint; ep.Addr() != office.PublicIP() {
		t.Errorf("laptop reaches desktop at %v, want the office NAT's public address %v", ep, office.PublicIP())
	}
	transfer(t, a, b, 1<<20)
	transfer(t, b, a, 256<<10)
}

func TestSameNATUsesLANAddresses(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{})
	cfg := homeNAT("home")
	cfg.Hairpin = false
	home := m.NAT(cfg)
	a := m.AddNode("a", home.NewHost("a", netip.MustParseAddr("192.168.1.10")), meshlab.NodeOptions{})
	b := m.AddNode("b", home.NewHost("b", netip.MustParseAddr("192.168.1.11")), meshlab.NodeOptions{})
	waitDirect(t, a, b)
	if ep := a.PathTo(b).Endpoint.Addr(); ep != netip.MustParseAddr("192.168.1.11") {
		t.Errorf("a reaches b at %v, want b's LAN address", ep)
	}
	if ep := b.PathTo(a).Endpoint.Addr(); ep != netip.MustParseAddr("192.168.1.10") {
		t.Errorf("b reaches a at %v, want a's LAN address", ep)
	}
	transfer(t, a, b, 256<<10)
}

// earlyRemapNAT is a router that remaps when punched early (Linux
// masquerade with no WAN input filter), one ISP hop from the internet as
// any home router is: a TTL-2 prime opens it and dies at that hop.
func earlyRemapNAT() natlab.NATConfig {
	c := natlab.EarlyRemap()
	c.UplinkHops = 1
	return c
}

// Every pair of cone NATs goes direct, routers that remap when punched
// early included: the punch is ordered (path/order.go), so no packet
// arrives at one before it has sent to its peer.
func TestEveryConeNATPairGoesDirect(t *testing.T) {
	t.Parallel()
	cones := map[string]func() natlab.NATConfig{
		"full-cone":            natlab.FullCone,
		"restricted-cone":      natlab.RestrictedCone,
		"port-restricted-cone": natlab.PortRestrictedCone,
		"early-remap":          earlyRemapNAT,
	}
	names := []string{"full-cone", "restricted-cone", "port-restricted-cone", "early-remap"}
	for i, x := range names {
		for _, y := range names[i:] {
			t.Run(x+"/"+y, func(t *testing.T) {
				t.Parallel()
				m := meshlab.New(t, meshlab.Options{})
				cx, cy := cones[x](), cones[y]()
				cx.Name, cy.Name = "nat-a", "nat-b"
				a := m.AddNode("a", m.NAT(cx).NewHost("a", netip.MustParseAddr("192.168.1.2")), meshlab.NodeOptions{})
				b := m.AddNode("b", m.NAT(cy).NewHost("b", netip.MustParseAddr("192.168.2.2")), meshlab.NodeOptions{})
				t.Logf("%s vs %s: direct after %v", x, y, waitDirect(t, a, b))
				transfer(t, a, b, 64<<10)
			})
		}
	}
}

// A NAT that forgets its mappings mid-transfer (a reboot, conntrack -F) or
// changes its public address: the path comes back after a re-punch and
// traffic flows again. (That the same TCP stream survives is asserted with
// real kernel TCP in the real-kernel lab, e2e/mapping_test.go; gVisor's TCP
// here may back its retransmissions off past the test's deadline.)
func TestMappingChangeMidTransferRecovers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		event func(n *natlab.NAT)
	}{
		{"flush", func(n *natlab.NAT) { n.Flush() }},
		{"new-public-address", func(n *natlab.NAT) { n.SetPublicIP(netip.MustParseAddr("198.18.9.9")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := meshlab.New(t, meshlab.Options{})
			home := m.NAT(homeNAT("home"))
			office := m.NAT(homeNAT("office"))
			opts := meshlab.NodeOptions{Timing: scaledTiming(recoverySpeed)}
			a := m.AddNode("a", home.NewHost("a", netip.MustParseAddr("192.168.1.2")), opts)
			b := m.AddNode("b", office.NewHost("b", netip.MustParseAddr("10.0.0.2")), opts)
			waitDirect(t, a, b)
			sctx, stopStream := context.WithCancel(context.Background())
			defer stopStream()
			stream := make(chan error, 1)
			go func() { stream <- tryTransferCtx(sctx, a, b, 2<<20) }()
			// Change the mapping once the transfer is flowing.
			wait.For(t, pathDeadline, "traffic flowing", func() bool {
				return home.Stats().Outbound > 200
			})
			tc.event(home)
			event := time.Now()
			wait.For(t, transferDeadline, "direct path after the change", func() bool {
				p := b.PathTo(a)
				return p.Path == path.PathDirect && p.Endpoint.Addr() == home.PublicIP()
			})
			t.Logf("%s: direct again after %v", tc.name, time.Since(event).Round(time.Millisecond))
			transfer(t, a, b, 64<<10)
			transfer(t, b, a, 64<<10)
			// Not asserted (see above): report how the stream fared, without
			// waiting out gVisor's retransmission backoff.
			select {
			case err := <-stream:
				t.Logf("%s: the stream that spanned the change: %v", tc.name, err)
			default:
				stopStream()
				t.Logf("%s: the stream that spanned the change was still retransmitting: %v", tc.name, <-stream)
			}
		})
	}
}

// Behind NATs that drop idle mappings quickly, keepalives shorter than the
// timeout hold the path: after a long idle spell it is still the same path,
// with no new punch.
func TestKeepaliveHoldsPathThroughIdleTimeouts(t *testing.T) {
	t.Parallel()
	const natTimeout = time.Second
	timing := path.DefaultTiming(natTimeout / 3)
	m := meshlab.New(t, meshlab.Options{})
	ca, cb := homeNAT("home"), homeNAT("office")
	ca.IdleTimeout, cb.IdleTimeout = natTimeout, natTimeout
	a := m.AddNode("a", m.NAT(ca).NewHost("a", netip.MustParseAddr("192.168.1.2")), meshlab.NodeOptions{Timing: &timing})
	b := m.AddNode("b", m.NAT(cb).NewHost("b", netip.MustParseAddr("10.0.0.2")), meshlab.NodeOptions{Timing: &timing})
	waitDirect(t, a, b)
	before := a.PathTo(b).Endpoint
	// Idle for several NAT timeouts; the assertion is about idleness, so a
	// timer is the point here, not synchronisation.
	idle := time.NewTimer(5 * natTimeout)
	<-idle.C
	after := a.PathTo(b)
	if after.Path != path.PathDirect || after.Endpoint != before {
		t.Fatalf("after idling: path %s at %v, want direct at %v", after.Path, after.Endpoint, before)
	}
	for _, n := range []*meshlab.Node{a, b} {
		if lost := n.Engine.PathStats().PathsLost.Load(); lost != 0 {
			t.Errorf("%s lost its path %d times while idle: keepalives did not hold the mapping", n.Name, lost)
		}
	}
	transfer(t, a, b, 16<<10)
}

// A symmetric NAT that allocates ports in sequence against a home router:
// the cone side predicts the symmetric side's next ports and punches them.
func TestSequentialSymmetricNATIsPredicted(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{})
	hard := natlab.Symmetric()
	hard.Name, hard.PortAlloc, hard.PortStep = "carrier", natlab.PortSequential, 1
	a := m.AddNode("phone", m.NAT(hard).NewHost("phone", netip.MustParseAddr("10.1.0.2")), meshlab.NodeOptions{})
	b := m.AddNode("home", m.NAT(homeNAT("home")).NewHost("home", netip.MustParseAddr("192.168.1.2")), meshlab.NodeOptions{})
	t.Logf("direct after %v", waitDirect(t, a, b))
	transfer(t, a, b, 64<<10)
}

// A symmetric NAT facing a full-cone NAT needs no prediction: the cone side
// answers wherever the symmetric side's pings come from.
func TestSymmetricAgainstFullConeGoesDirect(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{})
	hard := natlab.Symmetric()
	hard.Name = "carrier"
	cone := natlab.FullCone()
	cone.Name = "cone"
	a := m.AddNode("phone", m.NAT(hard).NewHost("phone", netip.MustParseAddr("10.1.0.2")), meshlab.NodeOptions{})
	b := m.AddNode("server", m.NAT(cone).NewHost("server", netip.MustParseAddr("192.168.1.2")), meshlab.NodeOptions{})
	t.Logf("direct after %v", waitDirect(t, a, b))
	transfer(t, a, b, 64<<10)
}

func waitPath(t *testing.T, a, b *meshlab.Node, want string) time.Duration {
	t.Helper()
	return wait.For(t, pathDeadline, a.Name+" and "+b.Name+" on "+want+" both ways", func() bool {
		return a.PathTo(b).Path == want && b.PathTo(a).Path == want
	})
}

// Random-port symmetric NATs at both ends can't be punched: the pair uses
// the relay, end to end encrypted, and a discovery ping shows it.
func TestHardNATsAtBothEndsUseTheRelay(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{})
	ha, hb := natlab.Symmetric(), natlab.Symmetric()
	ha.Name, hb.Name = "carrier-a", "carrier-b"
	a := m.AddNode("a", m.NAT(ha).NewHost("a", netip.MustParseAddr("10.1.0.2")), meshlab.NodeOptions{})
	b := m.AddNode("b", m.NAT(hb).NewHost("b", netip.MustParseAddr("10.2.0.2")), meshlab.NodeOptions{})
	t.Logf("relay after %v", waitPath(t, a, b, path.PathRelay))
	transfer(t, a, b, 256<<10)
	ctx, cancel := context.WithTimeout(context.Background(), pathDeadline)
	defer cancel()
	r, err := a.Engine.Ping(ctx, "b")
	if err != nil || r.Path != path.PathRelay || r.Endpoint == "" {
		t.Fatalf("ping over the relay: %+v, %v", r, err)
	}
}

// A network that blocks UDP: the node binds the relay over TCP (WebSocket on
// the coordinator's HTTPS port) and still reaches its peer.
func TestUDPBlockedUsesTheTCPRelay(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{})
	blocked := homeNAT("hotel")
	blocked.BlockUDP = true
	a := m.AddNode("a", m.NAT(blocked).NewHost("a", netip.MustParseAddr("10.1.0.2")), meshlab.NodeOptions{})
	b := m.AddNode("b", m.NAT(homeNAT("home")).NewHost("b", netip.MustParseAddr("192.168.1.2")), meshlab.NodeOptions{})
	t.Logf("relay after %v", waitPath(t, a, b, path.PathRelay))
	if via := a.PathTo(b).Via; !strings.HasPrefix(via, "https://") {
		t.Errorf("a relays via %q, want the coordinator's HTTPS URL (TCP)", via)
	}
	transfer(t, a, b, 256<<10)
	transfer(t, b, a, 64<<10)
}

// A random-port symmetric NAT against a home router (port-restricted cone):
// plain punching can't cross it (the symmetric side's mapping towards the
// home router is unknown and the router filters by port), so the pair starts
// on the relay and the birthday technique finds a direct path. Against a
// router that remaps when punched early it does too: the hard side's
// sockets only prime their mappings, so none of their packets takes a
// tuple at that router before its probes.
func TestRandomSymmetricNATGoesDirectByBirthdayTechnique(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		easy natlab.NATConfig
	}{
		{"home-router", homeNAT("home")},
		{"early-remap", earlyRemapNAT()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := meshlab.New(t, meshlab.Options{})
			hard := natlab.Symmetric()
			hard.Name = "carrier"
			tc.easy.Name = "home"
			opts := meshlab.NodeOptions{Timing: scaledTiming(recoverySpeed)}
			a := m.AddNode("phone", m.NAT(hard).NewHost("phone", netip.MustParseAddr("10.1.0.2")), opts)
			b := m.AddNode("home", m.NAT(tc.easy).NewHost("home", netip.MustParseAddr("192.168.1.2")), opts)
			t.Logf("relay after %v", waitPath(t, a, b, path.PathRelay))
			took := wait.For(t, birthdayDeadline, "a direct path by the birthday technique", func() bool {
				return a.PathTo(b).Path == path.PathDirect && b.PathTo(a).Path == path.PathDirect
			})
			t.Logf("direct after %v more", took)
			if a.Engine.PathStats().BirthdayWins.Load()+b.Engine.PathStats().BirthdayWins.Load() == 0 {
				t.Error("direct, but not through the birthday technique")
			}
			transfer(t, a, b, 256<<10)
		})
	}
}

// birthdayDeadline covers a failed punch round, then up to 2048 probes at
// 100 a second.
const birthdayDeadline = 90 * time.Second

// A node with a public address configured as a relay carries the traffic of
// pairs that can't go direct, instead of the coordinator; both ends choose
// it.
func TestRelayNodeCarriesHardNATPairs(t *testing.T) {
	t.Parallel()
	_, r, a, b, want := relayNodeMesh(t)
	relayedVia(t, a, b, want)
	transfer(t, a, b, 256<<10)
	transfer(t, b, a, 64<<10)
	// The relay node reaches both directly (it has a public address).
	waitDirect(t, r, a)
}
