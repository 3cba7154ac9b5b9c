package bind

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/meshnode/meshnode/internal/testenv"
	"github.com/meshnode/meshnode/internal/wait"
)

// TestStdNetBindSendsToEitherFamily: a dual-stack node sends to IPv4 and
// IPv6 peers from the one socket, in any order, and each datagram reaches
// the address it was sent to. wireguard-go's StdNetBind reused a pooled
// address cut to 4 bytes by an IPv4 send for the next IPv6 one, sending it
// to the wrong host (WireGuard/wireguard-go#135); third_party/wireguard-go
// carries the fix. It runs in a network namespace of its own, with two
// IPv6 addresses on its loopback.
func TestStdNetBindSendsToEitherFamily(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "needs root for a network namespace")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // also enters it, on this thread only
	if err != nil {
		testenv.Unavailable(t, "no network namespace: %v", err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			t.Fatalf("leave the test's namespace: %v", err)
		}
		ns.Close()
	}()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	v6 := []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")}
	for _, a := range v6 {
		if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: netlink.NewIPNet(a.AsSlice()), Flags: 0x02 /* IFA_F_NODAD */}); err != nil {
			t.Fatal(err)
		}
	}
	listen := func(a netip.Addr) *net.UDPConn {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dsts := []*net.UDPConn{listen(v6[0]), listen(netip.MustParseAddr("127.0.0.1")), listen(v6[1])}
	// The namespace's addresses are in place once a plain socket's
	// datagram reaches each listener: only then can a lost datagram be
	// the Bind's doing.
	probe := listen(netip.IPv6Unspecified())
	buf := make([]byte, 16)
	for _, d := range dsts {
		wait.For(t, 5*time.Second, "the namespace to deliver to "+d.LocalAddr().String(), func() bool {
			if _, err := probe.WriteToUDPAddrPort([]byte{0xff}, d.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
				return false
			}
			d.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, _, err := d.ReadFromUDPAddrPort(buf)
			return err == nil && n == 1 && buf[0] == 0xff
		})
	}
	b := conn.NewStdNetBind()
	if _, _, err := b.Open(0); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const rounds = 8
	for range rounds {
		for i, d := range dsts {
			to := d.LocalAddr().(*net.UDPAddr).AddrPort()
			if err := b.Send([][]byte{{byte(i)}}, &conn.StdNetEndpoint{AddrPort: to}); err != nil {
				t.Fatalf("send to %v: %v", to, err)
			}
		}
	}
	for i, d := range dsts {
		d.SetReadDeadline(time.Now().Add(5 * time.Second))
		for range rounds {
			n, _, err := d.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("%v: %v (a datagram for it went elsewhere)", d.LocalAddr(), err)
			}
			if n != 1 || buf[0] != byte(i) {
				t.Fatalf("%v got datagram %v, want [%d]", d.LocalAddr(), buf[:n], i)
			}
		}
	}
}

// TestStdNetBindSendsRunsUncopied: StdNetBind sends a run of equal
// datagrams as one UDP GSO message whose buffers are the datagrams
// themselves (third_party/README.md), and the kernel cuts it back into the
// same datagrams, in order, byte for byte; a shorter datagram ends a run.
// On loopback, which segments in software.
func TestStdNetBindSendsRunsUncopied(t *testing.T) {
	dst, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	dst.SetReadBuffer(1 << 20) // the batches in flight at once, with room
	b := conn.NewStdNetBind()
	if _, _, err := b.Open(0); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	to := &conn.StdNetEndpoint{AddrPort: dst.LocalAddr().(*net.UDPAddr).AddrPort()}
	for _, tc := range []struct {
		name string
		lens []int
	}{
		{"more than a run's 64 datagrams", repeat(65, 1000)},
		{"a short tail", append(repeat(20, 1200), 300)},
		{"short ones between runs", append(append(append(repeat(5, 1200), 77), repeat(7, 1400)...), 1, 1400)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bufs := make([][]byte, len(tc.lens))
			for i, n := range tc.lens {
				bufs[i] = make([]byte, n) // no spare capacity to copy into
				for j := range bufs[i] {
					bufs[i][j] = byte(i + j)
				}
			}
			if err := b.Send(bufs, to); err != nil {
				t.Fatalf("send: %v", err)
			}
			got := make([]byte, 2048)
			dst.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i, want := range bufs {
				n, _, err := dst.ReadFromUDPAddrPort(got)
				if err != nil {
					t.Fatalf("datagram %d of %d: %v", i, len(bufs), err)
				}
				if !bytes.Equal(got[:n], want) {
					t.Fatalf("datagram %d: %d bytes starting %v, want %d starting %v", i, n, got[:min(n, 4)], len(want), want[:min(len(want), 4)])
				}
			}
		})
	}
}

// TestStdNetBindReceivesWhatItSent: datagrams sent in runs (UDP GSO) and one
// by one come out of StdNetBind's receive function one per buffer, in
// order, byte for byte, whether the kernel hands them over coalesced (UDP
// GRO) or not, and however many the caller's buffers take a call
// (third_party/README.md: up to a batch of them a system call).
func TestStdNetBindReceivesWhatItSent(t *testing.T) {
	rx, tx := conn.NewStdNetBind(), conn.NewStdNetBind()
	fns, port, err := rx.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if _, _, err := tx.Open(0); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	to := &conn.StdNetEndpoint{AddrPort: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)}
	var want [][]byte
	for _, lens := range [][]int{repeat(40, 1200), append(repeat(9, 1000), 100), {50}, {60}, repeat(3, 500)} {
		bufs := make([][]byte, len(lens))
		for i, n := range lens {
			bufs[i] = make([]byte, n)
			for j := range bufs[i] {
				bufs[i][j] = byte(len(want) + j)
			}
			want = append(want, bufs[i])
		}
		if err := tx.Send(bufs, to); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	for _, batch := range []int{conn.IdealBatchSize, 7} {
		t.Run(fmt.Sprintf("%d buffers", batch), func(t *testing.T) {
			if batch != conn.IdealBatchSize {
				for _, p := range want {
					if err := tx.Send([][]byte{p}, to); err != nil {
						t.Fatalf("send: %v", err)
					}
				}
			}
			bufs, sizes, eps := make([][]byte, batch), make([]int, batch), make([]conn.Endpoint, batch)
			for i := range bufs {
				bufs[i] = make([]byte, 1<<16)
			}
			got := 0
			for got < len(want) {
				n, err := fns[0](bufs, sizes, eps)
				if err != nil {
					t.Fatalf("receive after %d of %d datagrams: %v", got, len(want), err)
				}
				for i := range n {
					if !bytes.Equal(bufs[i][:sizes[i]], want[got]) {
						t.Fatalf("datagram %d: %d bytes, want %d, in order and intact", got, sizes[i], len(want[got]))
					}
					got++
				}
			}
		})
	}
}
