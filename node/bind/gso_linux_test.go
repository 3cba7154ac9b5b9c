package bind

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/testenv"
	"github.com/meshnode/meshnode/node/pmtu"
)

// TestKernelRefusedBatchArrivesSplit runs wireguard-go's StdNetBind on a
// real kernel whose route to the peer has a 1400-byte MTU, as after ICMP
// "fragmentation needed": the kernel refuses a UDP GSO batch of full-size
// WireGuard packets (EMSGSIZE), and the Bind gets every one of them there.
func TestKernelRefusedBatchArrivesSplit(t *testing.T) {
	testenv.EnterNetns(t)
	rx, to := farReceiver(t)
	defer rx.Close()

	const n, size = 32, 1452 // a batch of full-size packets at MTU 1420
	batch := make([][]byte, n)
	for i := range batch {
		// StdNetBind coalesces into the first buffer's spare room, as in
		// wireguard-go's buffers of device.MaxMessageSize.
		batch[i] = make([]byte, size, maxPacket)
		batch[i][0] = byte(i)
	}
	std := conn.NewStdNetBind()
	if _, _, err := std.Open(0); err != nil {
		t.Fatal(err)
	}
	err := std.Send(batch, &conn.StdNetEndpoint{AddrPort: to})
	std.Close()
	if !errors.Is(err, syscall.EMSGSIZE) {
		testenv.Unavailable(t, "this kernel takes the batch (UDP GSO off?): %v; the test needs it refused", err)
	}
	if got := drain(t, rx, 0); got != 0 {
		t.Fatalf("%d datagrams of the refused batch arrived", got)
	}

	b := New(conn.NewStdNetBind(), nil)
	b.SetKernelPathMTU(pmtu.KernelPathMTU)
	if _, _, err := b.Open(0); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r := b.Direct(to, 0)
	for round := range 2 {
		if err := r.Send(batch, crypto.PublicKey{}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if got := drain(t, rx, n); got != n {
			t.Errorf("round %d: %d of %d datagrams arrived", round, got, n)
		}
	}
	if got := b.Stats.BatchesSplit.Load(); got != 1 {
		t.Errorf("batches split %d, want 1: the second batch is split before the kernel refuses it", got)
	}
	if got := int(r.(*directRoute).limit.n.Load()); got != 1400-ipv4UDPHeaders {
		t.Errorf("limit %d, want %d (the route's 1400 bytes less IP and UDP)", got, 1400-ipv4UDPHeaders)
	}
}

// farReceiver is a UDP socket in a second namespace, behind a veth whose
// route here has a 1400-byte MTU: the kernel's state after ICMP
// "fragmentation needed" from the path, without a router. The namespace goes
// when the test ends.
func farReceiver(t *testing.T) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	here, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer here.Close()
	far := fmt.Sprintf("meshgso-%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("netns", "add", far)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", far).Run() })
	ip("link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", far)
	ip("addr", "add", "10.99.0.1/24", "dev", "veth0")
	ip("link", "set", "veth0", "up")
	ip("-n", far, "addr", "add", "10.99.0.2/24", "dev", "veth1")
	ip("-n", far, "link", "set", "veth1", "up")
	ip("route", "add", "10.99.0.2/32", "dev", "veth0", "mtu", "1400")
	h, err := netns.GetFromName(far)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	rx, lerr := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 99, 0, 2)})
	if err := netns.Set(here); err != nil {
		t.Fatal(err)
	}
	if lerr != nil {
		t.Fatal(lerr)
	}
	return rx, rx.LocalAddr().(*net.UDPAddr).AddrPort()
}

// drain counts the full-size datagrams rx receives until want arrived or
// the socket has been quiet for a while.
func drain(t *testing.T, rx *net.UDPConn, want int) int {
	t.Helper()
	buf := make([]byte, 2048)
	got := 0
	for want == 0 || got < want {
		rx.SetReadDeadline(time.Now().Add(time.Second))
		k, err := rx.Read(buf)
		if err != nil {
			break
		}
		if k == 1452 {
			got++
		}
	}
	return got
}
