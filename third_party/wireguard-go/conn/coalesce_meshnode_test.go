package conn

import (
	"encoding/binary"
	"net"
	"slices"
	"testing"

	"golang.org/x/net/ipv6"
)

// meshnode's test of its coalesceMessages (third_party/README.md): a run
// of datagrams is one message whose buffers are the datagrams themselves,
// uncopied, whatever their capacity.
func TestCoalesceMessagesKeepsDatagramsApart(t *testing.T) {
	setGSO := func(control *[]byte, gsoSize uint16) {
		*control = binary.LittleEndian.AppendUint16((*control)[:0], gsoSize)
	}
	gsoOf := func(control []byte) int {
		if len(control) < 2 {
			return 0
		}
		return int(binary.LittleEndian.Uint16(control))
	}
	sized := func(lens ...int) [][]byte {
		out := make([][]byte, len(lens))
		for i, n := range lens {
			out[i] = make([]byte, n) // no spare capacity: upstream could not coalesce these
			if n > 0 {
				out[i][0] = byte(i)
			}
		}
		return out
	}
	full := make([]int, udpSegmentMaxDatagrams+1)
	for i := range full {
		full[i] = 1000
	}
	big := make([]int, 3)
	for i := range big {
		big[i] = maxIPv4PayloadLen/2 - 1
	}
	for _, tc := range []struct {
		name  string
		lens  []int
		want  [][]int // per message, the datagrams (indices into lens) it carries
		wantG []int   // per message, its GSO size (0: none)
	}{
		{"one datagram", []int{100}, [][]int{{0}}, []int{0}},
		{"two equal", []int{100, 100}, [][]int{{0, 1}}, []int{100}},
		{"a shorter tail", []int{100, 100, 40}, [][]int{{0, 1, 2}}, []int{100}},
		{"a shorter one ends the run", []int{100, 40, 100}, [][]int{{0, 1}, {2}}, []int{100, 0}},
		{"a longer one starts a new run", []int{100, 100, 200, 200}, [][]int{{0, 1}, {2, 3}}, []int{100, 200}},
		{"at most udpSegmentMaxDatagrams a run", full, [][]int{seq(0, udpSegmentMaxDatagrams), {udpSegmentMaxDatagrams}}, []int{1000, 0}},
		{"at most a UDP payload a run", big, [][]int{{0, 1}, {2}}, []int{big[0], 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bufs := sized(tc.lens...)
			addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1).To4(), Port: 1}
			msgs := make([]ipv6.Message, len(bufs))
			for i := range msgs {
				msgs[i].Buffers = make([][]byte, 1)
				msgs[i].OOB = make([]byte, 0, 2)
			}
			n := coalesceMessages(addr, &StdNetEndpoint{AddrPort: addr.AddrPort()}, bufs, msgs, setGSO)
			if n != len(tc.want) {
				t.Fatalf("%d messages, want %d", n, len(tc.want))
			}
			for m, dgrams := range tc.want {
				if len(msgs[m].Buffers) != len(dgrams) {
					t.Fatalf("message %d has %d buffers, want %d", m, len(msgs[m].Buffers), len(dgrams))
				}
				for j, d := range dgrams {
					if b := msgs[m].Buffers[j]; len(b) != len(bufs[d]) || &b[0] != &bufs[d][0] {
						t.Errorf("message %d buffer %d is not datagram %d itself", m, j, d)
					}
				}
				if g := gsoOf(msgs[m].OOB); g != tc.wantG[m] {
					t.Errorf("message %d: GSO size %d, want %d", m, g, tc.wantG[m])
				}
				if msgs[m].Addr != addr {
					t.Errorf("message %d: address %v, want %v", m, msgs[m].Addr, addr)
				}
			}
		})
	}
}

// A message pooled after a send of several buffers goes back to one
// buffer, the receive path's shape.
func TestPutMessagesLeavesOneBuffer(t *testing.T) {
	s := NewStdNetBind().(*StdNetBind)
	msgs := s.getMessages()
	(*msgs)[0].Buffers = append((*msgs)[0].Buffers[:0], []byte{1}, []byte{2}, []byte{3})
	s.putMessages(msgs, 1)
	if bs := (*msgs)[0].Buffers; len(bs) != 1 || slices.ContainsFunc(bs[1:cap(bs)], func(b []byte) bool { return b != nil }) {
		t.Fatalf("after putMessages: %d buffers (%v beyond), want 1 and nothing kept", len(bs), bs[1:cap(bs)])
	}
}

func seq(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}
