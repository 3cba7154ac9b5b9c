package node_test

import (
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/meshlab"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/node/path"
	"github.com/meshnode/meshnode/node/relayclient"
)

// echoPort is where echo answers on a node's overlay address.
const echoPort = 7

// probeInterval spaces the probes of traffic that waits for a peer.
const probeInterval = 50 * time.Millisecond

// echo answers UDP datagrams on n's overlay address until n stops.
func echo(t *testing.T, n *meshlab.Node) {
	t.Helper()
	c, err := n.Net.ListenUDPAddrPort(netip.AddrPortFrom(n.Addr4(), echoPort))
	if err != nil {
		t.Fatalf("echo on %s: %v", n.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			k, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo(buf[:k], from)
		}
	}()
}

// probe sends a datagram from a to to's echo every probeInterval until the
// test ends, and counts the replies: traffic that waits for a path.
type probe struct{ replies atomic.Int64 }

func startProbe(t *testing.T, a *meshlab.Node, to netip.Addr) *probe {
	t.Helper()
	c, err := a.Net.ListenUDPAddrPort(netip.AddrPortFrom(a.Addr4(), 0))
	if err != nil {
		t.Fatalf("probe socket on %s: %v", a.Name, err)
	}
	p := new(probe)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); c.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
			p.replies.Add(1)
		}
	}()
	go func() {
		tick := time.NewTicker(probeInterval)
		defer tick.Stop()
		dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(to, echoPort))
		for {
			c.WriteTo([]byte("probe"), dst)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// waitReply waits for a reply beyond the first after replies.
func (p *probe) waitReply(t *testing.T, what string, after int64) {
	t.Helper()
	wait.For(t, pathDeadline, what, func() bool { return p.replies.Load() > after })
}

// counter is one of a node's status counters.
func counter(n *meshlab.Node, name string) uint64 {
	return n.Engine.Status().Counters[name]
}

// A peer restarts (a reboot, an upgrade) while traffic to it waits: the
// peer that kept sending still holds a WireGuard session the restarted one
// no longer has, and would start a new handshake only after 15 s of
// silence. The restarted node sees that peer's data and starts one itself,
// and the waiting traffic is answered.
func TestRestartedPeerAnswersWaitingTraffic(t *testing.T) {
	t.Parallel()
	m, a, b := homeAndOffice(t)
	waitDirect(t, a, b)
	echo(t, b)
	p := startProbe(t, a, b.Addr4())
	p.waitReply(t, "a reply before the restart", 0)

	b = m.Restart(b)
	echo(t, b)
	p.waitReply(t, "a reply after b restarted", p.replies.Load())
	if n := counter(b, "handshakes_asked"); n == 0 {
		t.Error("the restarted node did not start a handshake for the peer that kept its old session")
	}
}

// Traffic waits for a peer whose network blocks UDP: the peer opens the TCP
// relay once its UDP relay is silent, and the handshake that the relay
// could not deliver before goes again the moment the peer is reachable.
func TestWaitingTrafficReachesAPeerOnTheTCPRelay(t *testing.T) {
	t.Parallel()
	m := meshlab.New(t, meshlab.Options{})
	a := m.AddNode("a", m.NAT(homeNAT("home")).NewHost("a", netip.MustParseAddr("192.168.1.2")), meshlab.NodeOptions{})
	hotel := homeNAT("hotel")
	hotel.BlockUDP = true
	// b's TCP relay opens a second after its UDP relay stays silent: a's
	// traffic, started once b is up, waits for it.
	slow := relayclient.Timing{HelloWait: time.Second, HelloWaitMin: time.Second}
	b := m.AddNode("b", m.NAT(hotel).NewHost("b", netip.MustParseAddr("10.1.0.2")), meshlab.NodeOptions{RelayTiming: &slow})
	echo(t, b)
	p := startProbe(t, a, b.Addr4())
	p.waitReply(t, "a reply from the peer behind blocked UDP", 0)
	if via := b.PathTo(a); via.Path != path.PathRelay || !strings.HasPrefix(via.Via, "https://") {
		t.Errorf("b reaches a by %+v, want the TCP relay", via)
	}
	if n := counter(a, "handshakes_resent"); n == 0 {
		t.Error("a's handshake was not sent again once b was reachable")
	}
}
