package conn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// run is one message the fake kernel returns: a payload from a sender,
// coalesced into datagrams of gso bytes (0: one datagram), or with a
// control message that can't be parsed.
type run struct {
	from    *net.UDPAddr
	payload []byte
	gso     int
	badOOB  bool
}

// scriptedReader returns its batches of runs, one per ReadBatch call.
type scriptedReader struct {
	batches [][]run
	calls   int
}

var errNoMore = errors.New("no more batches")

func (s *scriptedReader) readRuns(rs []groRun) (int, error) {
	if s.calls == len(s.batches) {
		return 0, errNoMore
	}
	b := s.batches[s.calls]
	s.calls++
	for i, r := range b {
		m := &rs[i]
		m.n = copy(m.buf, r.payload)
		m.from = r.from.AddrPort()
		m.nn = 0
		switch {
		case r.badOOB:
			m.nn = copy(m.oob, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		case r.gso > 0:
			oob := make([]byte, unix.CmsgSpace(2))
			h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
			h.Level, h.Type = unix.SOL_UDP, unix.UDP_GRO
			h.SetLen(unix.CmsgLen(2))
			binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(r.gso))
			m.nn = copy(m.oob, oob)
		}
	}
	return len(b), nil
}

// meshnode's test of groReader (gro.go): runs are cut back into their
// datagrams, in order, across as many calls as the caller's buffers need,
// each datagram with its run's sender.
func TestGROReaderCutsRunsAcrossCalls(t *testing.T) {
	a := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1).To4(), Port: 1}
	b := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2).To4(), Port: 2}
	payload := func(n int, fill byte) []byte { return bytes.Repeat([]byte{fill}, n) }
	type dgram struct {
		size int
		fill byte
		from *net.UDPAddr
	}
	for _, tc := range []struct {
		name    string
		batches [][]run
		bufs    int       // the caller's buffers a call
		want    [][]dgram // per call
		wantErr []bool    // per call: an error with the datagrams before it
	}{
		{
			name:    "single datagrams",
			batches: [][]run{{{from: a, payload: payload(10, 1)}, {from: b, payload: payload(20, 2)}, {from: a, payload: payload(30, 3)}}},
			bufs:    8,
			want:    [][]dgram{{{10, 1, a}, {20, 2, b}, {30, 3, a}}},
		},
		{
			name:    "a run with a short tail",
			batches: [][]run{{{from: a, payload: append(payload(200, 4), payload(40, 4)...), gso: 100}}},
			bufs:    8,
			want:    [][]dgram{{{100, 4, a}, {100, 4, a}, {40, 4, a}}},
		},
		{
			name: "more than the caller's buffers: kept for the next call",
			batches: [][]run{
				{{from: a, payload: payload(500, 5), gso: 100}, {from: b, payload: payload(7, 6)}},
				{{from: b, payload: payload(8, 7)}},
			},
			bufs: 3,
			want: [][]dgram{
				{{100, 5, a}, {100, 5, a}, {100, 5, a}},
				{{100, 5, a}, {100, 5, a}, {7, 6, b}},
				{{8, 7, b}},
			},
		},
		{
			name:    "a run whose size can't be read is dropped",
			batches: [][]run{{{from: a, payload: payload(10, 8)}, {from: b, payload: payload(300, 9), badOOB: true}, {from: a, payload: payload(11, 10)}}},
			bufs:    8,
			want:    [][]dgram{{{10, 8, a}}, {{11, 10, a}}},
			wantErr: []bool{true, false},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newGROReader(&scriptedReader{batches: tc.batches})
			bufs, sizes, eps := make([][]byte, tc.bufs), make([]int, tc.bufs), make([]Endpoint, tc.bufs)
			for i := range bufs {
				bufs[i] = make([]byte, groMessageSize)
			}
			for call, want := range tc.want {
				n, err := r.read(bufs, sizes, eps)
				if wantErr := call < len(tc.wantErr) && tc.wantErr[call]; (err != nil) != wantErr {
					t.Fatalf("call %d: error %v, want one: %v", call, err, wantErr)
				}
				if n != len(want) {
					t.Fatalf("call %d: %d datagrams, want %d", call, n, len(want))
				}
				for i, d := range want {
					got := bufs[i][:sizes[i]]
					if !bytes.Equal(got, payload(d.size, d.fill)) {
						t.Errorf("call %d, datagram %d: %d bytes of %d, want %d of %d", call, i, len(got), got[0], d.size, d.fill)
					}
					if ep := eps[i].(*StdNetEndpoint); ep.AddrPort != d.from.AddrPort() {
						t.Errorf("call %d, datagram %d: from %v, want %v", call, i, ep.AddrPort, d.from)
					}
				}
			}
			if _, err := r.read(bufs, sizes, eps); !errors.Is(err, errNoMore) {
				t.Fatalf("after the script: %v, want the reader asked for more", err)
			}
		})
	}
}

// repeatReader returns the same batch of single datagrams on every call,
// each with an IP_PKTINFO control message, as a sticky socket reads them.
type repeatReader struct {
	from *net.UDPAddr
	n    int
	oob  []byte
}

func newRepeatReader(n int) *repeatReader {
	oob := make([]byte, unix.CmsgSpace(unix.SizeofInet4Pktinfo))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	info := (*unix.Inet4Pktinfo)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
	info.Ifindex, info.Spec_dst = 3, [4]byte{198, 18, 1, 2}
	return &repeatReader{from: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1).To4(), Port: 1}, n: n, oob: oob}
}

func (r *repeatReader) readRuns(rs []groRun) (int, error) {
	n := min(r.n, len(rs))
	for i := range n {
		rs[i].n, rs[i].from = 1400, r.from.AddrPort()
		rs[i].nn = copy(rs[i].oob, r.oob)
	}
	return n, nil
}

// Every datagram gets an endpoint of its own, with its source, and making
// them costs far less than an allocation per datagram (they come from a
// slab).
func TestGROReaderEndpoints(t *testing.T) {
	const batch = IdealBatchSize
	r := newGROReader(newRepeatReader(batch))
	bufs, sizes, eps := make([][]byte, batch), make([]int, batch), make([]Endpoint, batch)
	for i := range bufs {
		bufs[i] = make([]byte, 1500)
	}
	n, err := r.read(bufs, sizes, eps)
	if err != nil || n != batch {
		t.Fatalf("read = %d, %v; want %d datagrams", n, err, batch)
	}
	first, second := eps[0].(*StdNetEndpoint), eps[1].(*StdNetEndpoint)
	if first == second {
		t.Fatal("two datagrams share one endpoint")
	}
	if got := second.SrcIP(); got != netip.AddrFrom4([4]byte{198, 18, 1, 2}) {
		t.Fatalf("source %v, want 198.18.1.2 from IP_PKTINFO", got)
	}
	first.ClearSrc()
	if !second.SrcIP().IsValid() {
		t.Fatal("clearing one endpoint's source cleared another's")
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := r.read(bufs, sizes, eps); err != nil {
			t.Fatal(err)
		}
	})
	if perDatagram := allocs / batch; perDatagram > 0.1 {
		t.Fatalf("%.2f allocations per datagram, want at most 0.1", perDatagram)
	}
}

// The datagrams of a run are lent where they lie (ReceiveFunc), not
// copied: each is a slice of the run's buffer, in order, whose capacity
// ends where the datagram does, so nothing the caller appends or writes
// past it can reach the next one.
func TestGROReaderLendsDatagrams(t *testing.T) {
	from := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1).To4(), Port: 1}
	payload := make([]byte, 2500)
	for i := range payload {
		payload[i] = byte(i / 1000)
	}
	r := newGROReader(&scriptedReader{batches: [][]run{{{from: from, payload: payload, gso: 1000}}}})
	bufs, sizes, eps := make([][]byte, 4), make([]int, 4), make([]Endpoint, 4)
	for i := range bufs {
		bufs[i] = make([]byte, 1500)
	}
	n, err := r.read(bufs, sizes, eps)
	if err != nil || n != 3 {
		t.Fatalf("read = %d, %v; want 3 datagrams", n, err)
	}
	run := r.runs[0].buf
	for i, want := range []int{1000, 1000, 500} {
		got := bufs[i][:sizes[i]]
		if sizes[i] != want || &got[0] != &run[i*1000] {
			t.Errorf("datagram %d: %d bytes at %p, want %d bytes lent at %p, offset %d of the run", i, sizes[i], &got[0], want, &run[i*1000], i*1000)
		}
		if cap(bufs[i]) != want {
			t.Errorf("datagram %d: capacity %d, want %d (the datagram's end)", i, cap(bufs[i]), want)
		}
		if !bytes.Equal(got, payload[i*1000:i*1000+want]) {
			t.Errorf("datagram %d: wrong bytes", i)
		}
	}
}
