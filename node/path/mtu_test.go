package path

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wait"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/bind"
	"github.com/meshnode/meshnode/node/pmtu"
)

// mtuRecorder is an MTUSink.
type mtuRecorder struct {
	mu  sync.Mutex
	mtu map[crypto.PublicKey]int
}

func (r *mtuRecorder) SetMTU(k crypto.PublicKey, mtu int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mtu[k] = mtu
}

func (r *mtuRecorder) get(k crypto.PublicKey) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mtu[k]
}

// mtuTiming runs the search's rounds fast, and finds a path that stopped
// carrying dead in a few tenths of a second: the MTU goes with the path.
func mtuTiming() Timing {
	t := fastTiming()
	t.PMTUWait = 100 * time.Millisecond
	t.Keepalive = 100 * time.Millisecond
	t.ActiveHeartbeat = 100 * time.Millisecond
	return t
}

// mtuOn adds two managers on f and introduces them; a searches path MTUs
// and reports to sa, b only answers.
func mtuOn(t *testing.T, f *fabric) (a, b *node, sa *mtuRecorder) {
	a = f.addTimed(t, "198.18.1.1:41820", mtuTiming())
	b = f.addTimed(t, "198.18.2.1:41820", mtuTiming())
	sa = &mtuRecorder{mtu: map[crypto.PublicKey]int{}}
	a.m.EnablePMTU(1420, sa, nil)
	introduce(a, b, b.addr)
	introduce(b, a, a.addr)
	return a, b, sa
}

// mtuPair is two managers with path MTU discovery on, over a fabric that
// carries datagrams of up to pathMTU bytes (0: any) and drops larger ones
// silently; kernel is the host's view for a, when set.
func mtuPair(t *testing.T, pathMTU int, kernel func(netip.Addr) (int, error)) (a, b *node, sa, sb *mtuRecorder) {
	f := newFabric()
	f.mtu = pathMTU
	a = f.addTimed(t, "198.18.1.1:41820", mtuTiming())
	b = f.addTimed(t, "198.18.2.1:41820", mtuTiming())
	sa, sb = &mtuRecorder{mtu: map[crypto.PublicKey]int{}}, &mtuRecorder{mtu: map[crypto.PublicKey]int{}}
	a.m.EnablePMTU(1420, sa, kernel)
	b.m.EnablePMTU(1420, sb, nil)
	introduce(a, b, b.addr)
	introduce(b, a, a.addr)
	waitPath(t, a, b, b.addr)
	waitPath(t, b, a, a.addr)
	return a, b, sa, sb
}

func TestPathMTUFoundBothWays(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		pathMTU int
		want    int
	}{
		{"1500-byte path", 0, 1420},
		{"1400-byte link, ICMP lost", 1400, 1328},
		{"1280-byte link, ICMP lost", 1280, 1216},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, sa, sb := mtuPair(t, tc.pathMTU, nil)
			took := wait.For(t, 10*time.Second, fmt.Sprintf("both sides at MTU %d", tc.want), func() bool {
				return sa.get(b.key) == tc.want && sb.get(a.key) == tc.want
			})
			t.Logf("found in %v", took)
			if p := a.m.Path(b.key); p.MTU != tc.want || p.PathMTU != tc.want+pmtu.Overhead(false) {
				t.Errorf("status MTU %d, path MTU %d; want %d, %d", p.MTU, p.PathMTU, tc.want, tc.want+60)
			}
		})
	}
}

// TestPathMTUHonoursTheKernel: the host's kernel learned a 1400-byte path
// MTU from ICMP, so its socket would fragment larger probes; they are not
// sent, and the path is taken at what the kernel sends whole.
func TestPathMTUHonoursTheKernel(t *testing.T) {
	t.Parallel()
	kernel := func(netip.Addr) (int, error) { return 1400, nil }
	_, b, sa, _ := mtuPair(t, 0, kernel)
	wait.For(t, 10*time.Second, "a at MTU 1328", func() bool { return sa.get(b.key) == 1328 })
}

// TestPathMTUWithICMPDelivered: the first probe over the 1400-byte link
// teaches both kernels the path MTU, and they fragment the probes that
// follow, which then arrive; their answers must not count.
func TestPathMTUWithICMPDelivered(t *testing.T) {
	t.Parallel()
	f := newFabric()
	f.mtu, f.icmp = 1400, true
	a := f.addTimed(t, "198.18.1.1:41820", mtuTiming())
	b := f.addTimed(t, "198.18.2.1:41820", mtuTiming())
	kernel := func(self netip.AddrPort) func(netip.Addr) (int, error) {
		return func(netip.Addr) (int, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.learned[self] {
				return 1400, nil
			}
			return 1500, nil
		}
	}
	sa, sb := &mtuRecorder{mtu: map[crypto.PublicKey]int{}}, &mtuRecorder{mtu: map[crypto.PublicKey]int{}}
	a.m.EnablePMTU(1420, sa, kernel(a.addr))
	b.m.EnablePMTU(1420, sb, kernel(b.addr))
	introduce(a, b, b.addr)
	introduce(b, a, a.addr)
	wait.For(t, 10*time.Second, "both sides at MTU 1328", func() bool { return sa.get(b.key) == 1328 && sb.get(a.key) == 1328 })
}

func TestProbesArePaddedAndAnsweredAsLarge(t *testing.T) {
	t.Parallel()
	f := newFabric()
	var mu sync.Mutex
	sizes := map[netip.AddrPort]map[int]bool{} // sender → sizes it sent
	f.mu.Lock()
	f.tap = func(pkt []byte, from, _ netip.AddrPort) {
		mu.Lock()
		defer mu.Unlock()
		if sizes[from] == nil {
			sizes[from] = map[int]bool{}
		}
		sizes[from][len(pkt)] = true
	}
	f.mu.Unlock()
	a, b, _ := mtuOn(t, f)
	full := pmtu.Probe(1420) // the UDP payload of a full-size tunnel packet
	wait.For(t, 10*time.Second, "a full-size probe each way", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return sizes[a.addr][full] && sizes[b.addr][full]
	})
}

// TestPathMTUGoesWithThePath: a path that dies takes its MTU with it (the
// relay carries any size); the path punched again is searched again.
func TestPathMTUGoesWithThePath(t *testing.T) {
	t.Parallel()
	f := newFabric()
	f.mtu = 1400
	a, b, sa := mtuOn(t, f)
	wait.For(t, 10*time.Second, "MTU 1328", func() bool { return sa.get(b.key) == 1328 })
	f.mu.Lock()
	f.block[b.addr] = true
	f.mu.Unlock()
	wait.For(t, 20*time.Second, "MTU forgotten with the dead path", func() bool { return sa.get(b.key) == 0 && a.m.Path(b.key).MTU == 0 })
	f.mu.Lock()
	f.block[b.addr] = false
	f.mu.Unlock()
	wait.For(t, 20*time.Second, "MTU 1328 on the path punched again", func() bool { return sa.get(b.key) == 1328 })
}

// TestRepunchMeasuresTheMTUAgain: after a change of this node's network
// the path may keep its address but run over another link.
func TestRepunchMeasuresTheMTUAgain(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a, b, sa := mtuOn(t, f)
	wait.For(t, 10*time.Second, "MTU 1420", func() bool { return sa.get(b.key) == 1420 })
	f.mu.Lock()
	f.mtu = 1280 // the new link, say a phone's tether
	f.mu.Unlock()
	a.m.Repunch()
	wait.For(t, 10*time.Second, "MTU 1216 on the new link", func() bool { return sa.get(b.key) == 1216 })
}

// streamRelay is a relay over a stream (the WebSocket relay): it carries
// packets of any size.
type streamRelay struct{}

func (streamRelay) Send([][]byte, crypto.PublicKey) error { return nil }
func (streamRelay) Info() bind.RouteInfo {
	return bind.RouteInfo{Kind: bind.KindRelay, Via: "wss://coordinator.test/relay"}
}

// TestRelayedMTU: a peer the UDP relay carries is fitted to the relay at
// once (pmtu.RelayMTU, so a full-size packet and the relay's header fit a
// 1500-byte link), not at the next tick: the first packets to it, a TCP
// SYN among them, must fit. A direct path takes its own MTU, a stream
// relay none, and a lost direct path brings the relay's back.
func TestRelayedMTU(t *testing.T) {
	t.Parallel()
	f := newFabric()
	a := f.addTimed(t, "198.18.1.1:41820", mtuTiming())
	b := f.addTimed(t, "198.18.2.1:41820", mtuTiming())
	sa := &mtuRecorder{mtu: map[crypto.PublicKey]int{}}
	a.m.EnablePMTU(1420, sa, nil)
	f.relay(a, b)
	introduce(a, b) // no candidates: only the relay carries b
	steps := []struct {
		name string
		do   func()
		want int // in the sink and in status
	}{
		{"new peer on the UDP relay", func() {}, pmtu.RelayMTU},
		{"relay lost", func() { a.m.SetRelay(nil) }, 0},
		{"stream relay", func() { a.m.SetRelay(streamRelay{}) }, 0},
		{"UDP relay again", func() { a.m.SetRelay(fabricRelay{f, a.key}) }, pmtu.RelayMTU},
	}
	for _, s := range steps {
		s.do()
		if got := sa.get(b.key); got != s.want {
			t.Fatalf("%s: MTU %d at once, want %d", s.name, got, s.want)
		}
		p := a.m.Path(b.key)
		wantPath := 0
		if s.want > 0 {
			wantPath = s.want + pmtu.Overhead(false) + wire.RelayHeaderLen
		}
		if p.MTU != s.want || p.PathMTU != wantPath {
			t.Fatalf("%s: status MTU %d, path MTU %d; want %d, %d", s.name, p.MTU, p.PathMTU, s.want, wantPath)
		}
	}

	introduce(a, b, b.addr)
	introduce(b, a, a.addr)
	waitPath(t, a, b, b.addr)
	wait.For(t, 10*time.Second, "the direct path's MTU", func() bool { return sa.get(b.key) == 1420 })
	f.mu.Lock()
	f.block[b.addr] = true
	f.mu.Unlock()
	wait.For(t, 10*time.Second, "the relay's MTU after the direct path died", func() bool { return sa.get(b.key) == pmtu.RelayMTU })
}
