package bind

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/pmtu"
)

// gsoKernel is an inner Bind that sends like Linux with UDP GSO after it
// learned a path MTU of mtu bytes: a batch with a datagram larger than the
// path allows is refused whole, as sendmmsg refuses it (EMSGSIZE); a single
// datagram of any size is taken (the kernel fragments it).
type gsoKernel struct {
	mtu   int     // the path MTU, IP header included
	fail  error   // when set, every send fails with it
	calls [][]int // the sizes of each Send call that went out
	sent  []int   // every datagram sent, in order
}

func (k *gsoKernel) Send(bufs [][]byte, ep conn.Endpoint) error {
	if k.fail != nil {
		return k.fail
	}
	hdr := ipv4UDPHeaders
	if ep.DstIP().Is6() {
		hdr = ipv6UDPHeaders
	}
	if len(bufs) > 1 && slices.ContainsFunc(bufs, func(p []byte) bool { return len(p)+hdr > k.mtu }) {
		return &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendmmsg", syscall.EMSGSIZE)}
	}
	call := make([]int, len(bufs))
	for i, p := range bufs {
		call[i] = len(p)
		k.sent = append(k.sent, int(p[0]))
	}
	k.calls = append(k.calls, call)
	return nil
}

func (k *gsoKernel) Open(uint16) ([]conn.ReceiveFunc, uint16, error) { return nil, 41820, nil }
func (k *gsoKernel) Close() error                                    { return nil }
func (k *gsoKernel) SetMark(uint32) error                            { return nil }
func (k *gsoKernel) BatchSize() int                                  { return 128 }
func (k *gsoKernel) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	return &conn.StdNetEndpoint{AddrPort: ap}, err
}

// datagrams makes numbered datagrams of the given sizes (byte 0 numbers them).
func datagrams(sizes ...int) [][]byte {
	out := make([][]byte, len(sizes))
	for i, n := range sizes {
		out[i] = make([]byte, n)
		out[i][0] = byte(i)
	}
	return out
}

func repeat(n, size int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

var peerAddr = netip.MustParseAddrPort("198.18.2.1:41820")

func TestRefusedBatchIsSplitAndResent(t *testing.T) {
	full := 1452 // a full-size WireGuard packet at MTU 1420
	for _, tc := range []struct {
		name      string
		pathMTU   func(netip.Addr) (int, error) // the kernel's view; nil: unknown
		sizes     []int
		wantLimit int
		wantCalls [][]int // the Send calls that went out
	}{
		{
			name:      "full-size batch on a 1400-byte path, kernel says",
			pathMTU:   func(netip.Addr) (int, error) { return 1400, nil },
			sizes:     repeat(4, full),
			wantLimit: 1400 - ipv4UDPHeaders,
			wantCalls: [][]int{{full}, {full}, {full}, {full}},
		},
		{
			name:      "kernel can't say: just under the refused size",
			sizes:     repeat(3, full),
			wantLimit: full - 1,
			wantCalls: [][]int{{full}, {full}, {full}},
		},
		{
			name:      "small datagrams stay batched around a big one",
			pathMTU:   func(netip.Addr) (int, error) { return 1400, nil },
			sizes:     []int{200, 200, full, 300, 100},
			wantLimit: 1400 - ipv4UDPHeaders,
			wantCalls: [][]int{{200, 200}, {full}, {300, 100}},
		},
		{
			name:      "kernel's view above what it refused: the refused size rules",
			pathMTU:   func(netip.Addr) (int, error) { return 1500, nil },
			sizes:     repeat(2, full),
			wantLimit: full - 1,
			wantCalls: [][]int{{full}, {full}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &gsoKernel{mtu: 1400}
			b := New(k, nil)
			b.SetKernelPathMTU(tc.pathMTU)
			r := b.Direct(peerAddr, 0).(*directRoute)
			if err := r.Send(datagrams(tc.sizes...), crypto.PublicKey{}); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if got := int(r.limit.n.Load()); got != tc.wantLimit {
				t.Errorf("limit learned %d, want %d", got, tc.wantLimit)
			}
			if !slices.EqualFunc(k.calls, tc.wantCalls, slices.Equal) {
				t.Errorf("sends %v, want %v", k.calls, tc.wantCalls)
			}
			if want := len(tc.sizes); !slices.Equal(k.sent, seq(want)) {
				t.Errorf("datagrams sent in the order %v, want each once in order", k.sent)
			}
			if b.Stats.BatchesSplit.Load() != 1 {
				t.Errorf("batches split: %d, want 1", b.Stats.BatchesSplit.Load())
			}

			// The next batch is split before the kernel must refuse it.
			k.calls, k.sent = nil, nil
			if err := r.Send(datagrams(tc.sizes...), crypto.PublicKey{}); err != nil {
				t.Fatalf("second Send: %v", err)
			}
			if !slices.EqualFunc(k.calls, tc.wantCalls, slices.Equal) || b.Stats.BatchesSplit.Load() != 1 {
				t.Errorf("second send %v (split %d times); want %v without a refusal", k.calls, b.Stats.BatchesSplit.Load(), tc.wantCalls)
			}
		})
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func TestSendWithinThePathIsOneBatch(t *testing.T) {
	k := &gsoKernel{mtu: 1500}
	b := New(k, nil)
	r := b.Direct(peerAddr, 0)
	if err := r.Send(datagrams(repeat(64, 1452)...), crypto.PublicKey{}); err != nil {
		t.Fatal(err)
	}
	if len(k.calls) != 1 || len(k.calls[0]) != 64 || b.Stats.BatchesSplit.Load() != 0 {
		t.Errorf("%d sends, %d split: want the batch sent whole", len(k.calls), b.Stats.BatchesSplit.Load())
	}
}

func TestSendErrorsThatSplittingCannotFix(t *testing.T) {
	tooBig := &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendmmsg", syscall.EMSGSIZE)}
	unreachable := &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendmmsg", syscall.ENETUNREACH)}
	for _, tc := range []struct {
		name  string
		fail  error
		sizes []int
	}{
		{"a single datagram refused", tooBig, []int{1452}},
		{"network unreachable", unreachable, repeat(4, 1452)},
		{"refused even split", tooBig, repeat(4, 1452)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &gsoKernel{mtu: 1500, fail: tc.fail}
			b := New(k, nil)
			err := b.Direct(peerAddr, 0).Send(datagrams(tc.sizes...), crypto.PublicKey{})
			if !errors.Is(err, tc.fail.(*net.OpError).Err.(*os.SyscallError).Err) {
				t.Errorf("Send = %v, want the kernel's error", err)
			}
		})
	}
}

// TestRelayFramesOverTheLinkGoAlone: the frame of a full-size packet at
// the default MTU is larger than a 1500-byte link carries whole, over IPv4
// and IPv6; such frames are never batched (the kernel would refuse the
// batch). The frames of packets fitted to the relay (pmtu.RelayMTU, what
// the node's guard lets through to a relayed peer) fit, in one batch, and
// leave no host in fragments.
func TestRelayFramesOverTheLinkGoAlone(t *testing.T) {
	const full = 1420 + pmtu.WireGuardOverhead
	fitted := pmtu.RelayMTU + pmtu.WireGuardOverhead
	for _, tc := range []struct {
		relay netip.AddrPort
		hdr   int
	}{
		{peerAddr, ipv4UDPHeaders},
		{netip.MustParseAddrPort("[2001:2::1]:3478"), ipv6UDPHeaders},
	} {
		t.Run(tc.relay.String(), func(t *testing.T) {
			if n := fitted + wire.RelayHeaderLen + tc.hdr; n > 1500 {
				t.Fatalf("a fitted relayed packet takes %d bytes on the link, over 1500", n)
			}
			k := &gsoKernel{mtu: 1500}
			b := New(k, nil)
			r := b.UDPRelay(tc.relay)
			if err := r.Send(datagrams(repeat(3, full)...), crypto.PublicKey{}); err != nil {
				t.Fatal(err)
			}
			if len(k.calls) != 3 || b.Stats.BatchesSplit.Load() != 0 {
				t.Errorf("sends %v (%d split): want each frame alone without a refusal", k.calls, b.Stats.BatchesSplit.Load())
			}
			k.calls = nil
			if err := r.Send(datagrams(repeat(3, fitted)...), crypto.PublicKey{}); err != nil {
				t.Fatal(err)
			}
			if len(k.calls) != 1 || b.Stats.BatchesSplit.Load() != 0 {
				t.Errorf("sends %v: want fitted frames in one batch", k.calls)
			}
		})
	}
}

// discardKernel is an inner Bind that takes every send and keeps nothing.
type discardKernel struct{ gsoKernel }

func (discardKernel) Send([][]byte, conn.Endpoint) error { return nil }

// TestRelaySendDoesNotAllocate: framing a batch for the relay reuses
// pooled frames.
func TestRelaySendDoesNotAllocate(t *testing.T) {
	b := New(&discardKernel{}, nil)
	r := b.UDPRelay(peerAddr)
	bufs := datagrams(repeat(64, 1200)...)
	peer := crypto.PublicKey{7}
	allocs := testing.AllocsPerRun(100, func() {
		if err := r.Send(bufs, peer); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per relayed batch, want 0", allocs)
	}
}
