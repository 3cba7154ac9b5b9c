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
// both families, read as a groReader reads, into the same runs every time:
// every datagram whole, with its sender and its control message (packet
// info), read after read, and no allocation a read.
func TestMMsgReaderReadsRuns(t *testing.T) {
	for _, tc := range []struct {
		network, addr string
		level, opt    int // the socket option that asks for packet info
	}{
		{"udp4", "127.0.0.1:0", unix.IPPROTO_IP, unix.IP_PKTINFO},
		{"udp6", "[::1]:0", unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO},
	} {
		t.Run(tc.network, func(t *testing.T) {
			srv, err := net.ListenUDP(tc.network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.addr)))
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			rc, err := srv.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			pktinfo := func(on int) {
				var serr error
				if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), tc.level, tc.opt, on) }); err != nil || serr != nil {
					t.Fatal(err, serr)
				}
			}
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
			if _, err := cli.Write([]byte{0}); err != nil {
				t.Fatal(err)
			}
			from := cli.LocalAddr().(*net.UDPAddr).AddrPort()
			srv.SetReadDeadline(time.Now().Add(10 * time.Second))
			// A read without packet info leaves the kernel's control
			// lengths at 0; the reads after it, with packet info on, must
			// still have room for it.
			if n, err := rr.readRuns(runs); err != nil || n != 1 || runs[0].nn != 0 {
				t.Fatalf("readRuns = %d, %v, control %d bytes; want one datagram without control messages", n, err, runs[0].nn)
			}
			pktinfo(1)
			sent := [][]byte{bytes.Repeat([]byte{1}, 1400), {2}, bytes.Repeat([]byte{3}, 60000)}
			for _, p := range sent {
				if _, err := cli.Write(p); err != nil {
					t.Fatal(err)
				}
			}
			var got int
			for got < len(sent) {
				n, err := rr.readRuns(runs)
				if err != nil {
					t.Fatalf("after %d datagrams: %v", got, err)
				}
				for _, r := range runs[:n] {
					if !bytes.Equal(r.buf[:r.n], sent[got]) {
						t.Errorf("datagram %d: %d bytes, want %d", got, r.n, len(sent[got]))
					}
					if r.from != from {
						t.Errorf("datagram %d: from %v, want %v", got, r.from, from)
					}
					if r.nn == 0 {
						t.Errorf("datagram %d: no control message", got)
					}
					got++
				}
			}
			allocs := testing.AllocsPerRun(50, func() {
				if _, err := cli.Write(sent[1]); err != nil {
					t.Fatal(err)
				}
				if n, err := rr.readRuns(runs); err != nil || n != 1 || runs[0].nn == 0 || runs[0].from != from {
					t.Fatalf("readRuns = %d, %v, control %d bytes, from %v; want 1 datagram from %v with its packet info", n, err, runs[0].nn, runs[0].from, from)
				}
			})
			if allocs != 0 {
				t.Fatalf("%.1f allocations a write and read, want none", allocs)
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
				n, err := pc.ReadBatch(msgs, 0)
				if err != nil {
					b.Fatal(err)
				}
				for _, m := range msgs[:n] {
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
				n, err := rr.readRuns(runs)
				if err != nil {
					b.Fatal(err)
				}
				got += n
			}
		}
	})
}
