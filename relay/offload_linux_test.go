package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/meshnode/meshnode/internal/wire"
)

// xRecorder is x/net's batch calls as a kernel that takes every message,
// or refuses trains (refuseTrains), recording what it took.
type xRecorder struct {
	refuseTrains bool
	sent         [][]int // per message taken, its datagrams' sizes
	segment      []int   // per message taken, its UDP_SEGMENT size (0: none)
}

func (x *xRecorder) ReadBatch([]message, int) (int, error) { return 0, errors.New("not read") }

func (x *xRecorder) WriteBatch(ms []message, _ int) (int, error) {
	for i, m := range ms {
		if x.refuseTrains && len(m.Buffers) > 1 {
			if i == 0 {
				return 0, syscall.EIO
			}
			return i, nil
		}
		var sizes []int
		for _, b := range m.Buffers {
			sizes = append(sizes, len(b))
		}
		x.sent = append(x.sent, sizes)
		x.segment = append(x.segment, segmentOf(m.OOB))
	}
	return len(ms), nil
}

// segmentOf reads a UDP_SEGMENT control message's size (0: none).
func segmentOf(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return -1
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_UDP && m.Header.Type == unix.UDP_SEGMENT && len(m.Data) >= 2 {
			return int(binary.NativeEndian.Uint16(m.Data))
		}
	}
	return 0
}

func TestPackTrains(t *testing.T) {
	a := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.18.1.1:41820"))
	b := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.18.2.1:41820"))
	tests := []struct {
		name        string
		sizes       []int
		to          []*net.UDPAddr
		wantSent    [][]int
		wantSegment []int
	}{
		{"equal frames to one node: one train", []int{1445, 1445, 1445}, []*net.UDPAddr{a, a, a}, [][]int{{1445, 1445, 1445}}, []int{1445}},
		{"a shorter last frame ends the train", []int{1445, 1445, 100, 1445}, []*net.UDPAddr{a, a, a, a}, [][]int{{1445, 1445, 100}, {1445}}, []int{1445, 0}},
		{"a longer frame starts another", []int{100, 1445}, []*net.UDPAddr{a, a}, [][]int{{100}, {1445}}, []int{0, 0}},
		{"two destinations", []int{1445, 1445, 1445}, []*net.UDPAddr{a, b, b}, [][]int{{1445}, {1445, 1445}}, []int{0, 1445}},
		{"frames over a 1500-byte link go alone", []int{1489, 1489}, []*net.UDPAddr{a, a}, [][]int{{1489}, {1489}}, []int{0, 0}},
		{"at most 64 a train", slices.Repeat([]int{200}, 65), slices.Repeat([]*net.UDPAddr{a}, 65), [][]int{slices.Repeat([]int{200}, 64), {200}}, []int{200, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := &xRecorder{}
			c := &kernelConn{x: x}
			c.gso.Store(true)
			var ds []datagram
			for i, n := range tt.sizes {
				ds = append(ds, datagram{make([]byte, n), tt.to[i]})
			}
			if failed := c.writeBatch(ds, &packer{}, nil); len(failed) != 0 {
				t.Fatalf("failed %v", failed)
			}
			if fmt.Sprint(x.sent) != fmt.Sprint(tt.wantSent) || fmt.Sprint(x.segment) != fmt.Sprint(tt.wantSegment) {
				t.Errorf("sent %v with segments %v, want %v with %v", x.sent, x.segment, tt.wantSent, tt.wantSegment)
			}
		})
	}
}

// TestRefusedTrainGoesOneByOne: a kernel that refuses trains (a NIC
// without checksum offload says EIO) still gets every datagram, one a
// message, and is sent no more trains.
func TestRefusedTrainGoesOneByOne(t *testing.T) {
	x := &xRecorder{refuseTrains: true}
	c := &kernelConn{x: x}
	c.gso.Store(true)
	to := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.18.1.1:41820"))
	ds := []datagram{{make([]byte, 100), to}, {make([]byte, 100), to}, {make([]byte, 100), to}}
	if failed := c.writeBatch(ds, &packer{}, nil); len(failed) != 0 {
		t.Fatalf("failed %v, want every datagram sent", failed)
	}
	if fmt.Sprint(x.sent) != "[[100] [100] [100]]" || c.gso.Load() {
		t.Errorf("sent %v, trains on: %v; want three single datagrams and trains off", x.sent, c.gso.Load())
	}
}

// TestTrainsForwarded: a node that sends its frames as one train (as
// StdNetBind does, UDP_SEGMENT) has them forwarded, each to its
// destination in order, and a STUN server sharing the port gets each of
// two requests that arrived as one train.
func TestTrainsForwarded(t *testing.T) {
	m := newMesh(t, false)
	other := make(chan []byte, 4)
	conns, err := ListenUDP("udp4", "127.0.0.1:0", 1)
	if err != nil {
		t.Fatal(err)
	}
	if kc, ok := newBatchConn(conns[0]).(*kernelConn); !ok || !kc.gro || !kc.gso.Load() {
		closeConns(conns)
		t.Skip("the kernel has no UDP_GRO or UDP_SEGMENT (Linux 5.0)")
	}
	shared := netip.MustParseAddrPort(conns[0].LocalAddr().String())
	go func() {
		_ = m.s.ServeUDP(t.Context(), conns, func(pkt []byte, _ net.Addr) { other <- append([]byte(nil), pkt...) })
	}()
	t.Cleanup(func() { closeConns(conns) })

	const n = 20
	var frames [][]byte
	for i := range n {
		frames = append(frames, wire.AppendRelayData(nil, m.b.pub, wgPacket(1200, byte(i))))
	}
	sendTrain(t, m.a.conn, m.addr, frames)
	for i := range n {
		expectData(t, m.b, m.a.pub, wgPacket(1200, byte(i)))
	}

	stun := make([]byte, 20)
	stun[4], stun[5], stun[6], stun[7] = 0x21, 0x12, 0xA4, 0x42
	sendTrain(t, m.a.conn, shared, [][]byte{stun, stun})
	for i := range 2 {
		select {
		case p := <-other:
			if len(p) != len(stun) {
				t.Errorf("the STUN handler got %d bytes, want each %d-byte request alone", len(p), len(stun))
			}
		case <-time.After(waitTimeout):
			t.Fatalf("the STUN handler got %d of 2 requests", i)
		}
	}
}

// sendTrain sends frames from c to to as one train (UDP_SEGMENT).
func sendTrain(t *testing.T, c *net.UDPConn, to netip.AddrPort, frames [][]byte) {
	t.Helper()
	oob := putSegment(make([]byte, oobSize), len(frames[0]))
	msg := []message{{Buffers: frames, OOB: oob, Addr: net.UDPAddrFromAddrPort(to)}}
	if _, err := ipv4.NewPacketConn(c).WriteBatch(msg, 0); err != nil {
		t.Fatalf("send a train of %d: %v", len(frames), err)
	}
}
