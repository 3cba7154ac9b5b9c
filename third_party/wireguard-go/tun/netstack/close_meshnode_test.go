package netstack

import (
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

// meshnode: closing the device while the stack hands it a packet (a UDP
// send whose packet nobody reads) must not panic, and ends the send.
// Upstream closed the channel the blocked sender was sending on.
func TestCloseWhileTheStackWrites(t *testing.T) {
	dev, tnet, err := CreateNetTUN([]netip.Addr{netip.MustParseAddr("100.64.0.1")}, nil, 1420)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tnet.DialUDPAddrPort(netip.AddrPort{}, netip.MustParseAddrPort("100.64.0.2:9"))
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		c.Write([]byte("x")) //nolint:errcheck // the device closes under it
	}()
	// Wait until the send is parked in WriteNotify: nobody reads the device.
	deadline := time.Now().Add(10 * time.Second)
	for !parkedInWriteNotify() {
		if time.Now().After(deadline) {
			t.Fatal("the UDP send never reached WriteNotify")
		}
		time.Sleep(time.Millisecond)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	<-sent
	if _, err := dev.Read([][]byte{make([]byte, 1500)}, []int{0}, 0); err == nil {
		t.Fatal("Read after Close: no error")
	}
}

// parkedInWriteNotify reports whether a goroutine waits in WriteNotify.
func parkedInWriteNotify() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		head, _, _ := strings.Cut(g, "\n")
		if strings.Contains(g, "(*netTun).WriteNotify") && (strings.Contains(head, "[chan send") || strings.Contains(head, "[select")) {
			return true
		}
	}
	return false
}
