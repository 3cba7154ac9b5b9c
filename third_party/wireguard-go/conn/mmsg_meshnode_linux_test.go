package conn

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// meshnode's test of mmsgReader (mmsg_linux.go) on real loopback sockets of
// both families: every datagram whole, with its sender, and no allocation
// a read.
func TestMMsgReaderReadsRuns(t *testing.T) {
	for _, tc := range []struct {
		network, addr string
	}{
		{"udp4", "127.0.0.1:0"},
		{"udp6", "[::1]:0"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			srv, err := net.ListenUDP(tc.network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.addr)))
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			cli, err := net.DialUDP(tc.network, nil, srv.LocalAddr().(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			rr, err := newMMsgReader(srv)
			if err != nil {
				t.Fatal(err)
			}
			runs := make([]groRun, 8)
			for i := range runs {
				runs[i].buf = make([]byte, groMessageSize)
				runs[i].oob = make([]byte, stickyControlSize+gsoControlSize)
			}
			sent := [][]byte{bytes.Repeat([]byte{1}, 1400), {2}, bytes.Repeat([]byte{3}, 60000)}
			for _, p := range sent {
				if _, err := cli.Write(p); err != nil {
					t.Fatal(err)
				}
			}
			from := cli.LocalAddr().(*net.UDPAddr).AddrPort()
			srv.SetReadDeadline(time.Now().Add(10 * time.Second))
			var got int
			for got < len(sent) {
				n, err := rr.readRuns(runs[got:])
				if err != nil {
					t.Fatalf("after %d datagrams: %v", got, err)
				}
				for _, r := range runs[got : got+n] {
					if !bytes.Equal(r.buf[:r.n], sent[got]) {
						t.Errorf("datagram %d: %d bytes, want %d", got, r.n, len(sent[got]))
					}
					if r.from != from {
						t.Errorf("datagram %d: from %v, want %v", got, r.from, from)
					}
					got++
				}
			}
			// AllocsPerRun calls once more than it counts.
			const reads = 50
			for range reads + 1 {
				if _, err := cli.Write(sent[1]); err != nil {
					t.Fatal(err)
				}
			}
			allocs := testing.AllocsPerRun(reads, func() {
				if n, err := rr.readRuns(runs[:1]); err != nil || n != 1 {
					t.Fatalf("readRuns = %d, %v; want 1 datagram", n, err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%.1f allocations a read, want none", allocs)
			}
		})
	}
}

func TestSockaddrAddrPort(t *testing.T) {
	v4 := func(a [4]byte, port uint16) *unix.RawSockaddrInet6 {
		var sa unix.RawSockaddrInet6
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
		sa4.Family, sa4.Addr = unix.AF_INET, a
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], port)
		return &sa
	}
	v6 := func(a string, port uint16, scope uint32) *unix.RawSockaddrInet6 {
		sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: netip.MustParseAddr(a).As16(), Scope_id: scope}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], port)
		return &sa
	}
	for _, tc := range []struct {
		name string
		sa   *unix.RawSockaddrInet6
		want netip.AddrPort
	}{
		{"IPv4", v4([4]byte{198, 18, 0, 1}, 51820), netip.MustParseAddrPort("198.18.0.1:51820")},
		{"IPv6", v6("2001:2::1", 41641, 0), netip.MustParseAddrPort("[2001:2::1]:41641")},
		{"IPv6 link-local: the interface index as zone", v6("fe80::1", 1, 3), netip.MustParseAddrPort("[fe80::1%3]:1")},
		{"unknown family", &unix.RawSockaddrInet6{Family: unix.AF_UNIX}, netip.AddrPort{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sockaddrAddrPort(tc.sa); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// BenchmarkReadRuns reads batches of 64 single datagrams of 1,400 bytes
// from a loopback socket through x/net's ReadBatch, as upstream's reader
// did, and through mmsgReader: the cost a datagram of reading it and its
// sender (the sends are not timed).
func BenchmarkReadRuns(b *testing.B) {
	const batch = 64
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	if err := srv.SetReadBuffer(4 << 20); err != nil {
		b.Fatal(err)
	}
	cli, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	payload := make([]byte, 1400)
	send := func(b *testing.B) {
		b.StopTimer()
		defer b.StartTimer()
		for range batch {
			if _, err := cli.Write(payload); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("x-net", func(b *testing.B) {
		pc := ipv6.NewPacketConn(srv)
		msgs := make([]ipv6.Message, batch)
		for i := range msgs {
			msgs[i].Buffers = net.Buffers{make([]byte, groMessageSize)}
			msgs[i].OOB = make([]byte, stickyControlSize+gsoControlSize)
		}
		b.ReportAllocs()
		b.SetBytes(batch * int64(len(payload)))
		for range b.N {
			send(b)
			for got := 0; got < batch; {
				n, err := pc.ReadBatch(msgs[got:], 0)
				if err != nil {
					b.Fatal(err)
				}
				for _, m := range msgs[got : got+n] {
					_ = m.Addr.(*net.UDPAddr).AddrPort()
				}
				got += n
			}
		}
	})
	b.Run("mmsg", func(b *testing.B) {
		rr, err := newMMsgReader(srv)
		if err != nil {
			b.Fatal(err)
		}
		runs := make([]groRun, batch)
		for i := range runs {
			runs[i].buf = make([]byte, groMessageSize)
			runs[i].oob = make([]byte, stickyControlSize+gsoControlSize)
		}
		b.ReportAllocs()
		b.SetBytes(batch * int64(len(payload)))
		for range b.N {
			send(b)
			for got := 0; got < batch; {
				n, err := rr.readRuns(runs[got:])
				if err != nil {
					b.Fatal(err)
				}
				got += n
			}
		}
	})
}
