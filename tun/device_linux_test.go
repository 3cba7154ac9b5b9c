package tun

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/testenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

const (
	testDevName = "meshtest0"
	testMTU     = 1400 // not DefaultMTU, so the test sees that it was set
)

var (
	overlay4 = netip.MustParsePrefix("100.88.0.5/16")
	overlay6 = netip.MustParsePrefix("fd6d:6573:686e::5/48")
	// extra4 and extra6 are routed networks no address implies, so Configure
	// must add (and Deconfigure remove) the routes itself.
	extra4 = netip.MustParsePrefix("100.89.0.0/16")
	extra6 = netip.MustParsePrefix("fd6d:6573:686f::/48")
)

// TestDeviceInNetns creates each driver's device in a namespace of its own,
// configures it and proves with real packets that the addresses and routes
// work in both directions, then takes the set-up down again.
func TestDeviceInNetns(t *testing.T) {
	for _, driver := range Drivers() {
		t.Run(driver, func(t *testing.T) {
			testenv.EnterNetns(t)
			testDevice(t, driver)
		})
	}
}

func testDevice(t *testing.T, driver string) {
	dev, err := Create(driver, testDevName, testMTU)
	if err != nil {
		t.Fatalf("Create(%q, %q, %d): %v", driver, testDevName, testMTU, err)
	}
	t.Cleanup(func() { dev.Close() })
	up := watchUp(dev)

	name, err := dev.Name()
	if err != nil || name != testDevName {
		t.Fatalf("Name() = %q, %v; want %q", name, err, testDevName)
	}
	if mtu, err := dev.MTU(); err != nil || mtu != testMTU {
		t.Fatalf("MTU() after Create = %d, %v; want %d", mtu, err, testMTU)
	}
	if driver == DriverWater && dev.BatchSize() != 1 {
		t.Errorf("water BatchSize() = %d, want 1", dev.BatchSize())
	}

	cfg := Config{
		Name:      name,
		MTU:       testMTU,
		Addresses: []netip.Prefix{overlay4, overlay6},
		Routes:    []netip.Prefix{overlay4.Masked(), overlay6.Masked(), extra4, extra6},
	}
	for i := range 2 { // the second run must be a no-op
		if err := Configure(cfg); err != nil {
			t.Fatalf("Configure #%d: %v", i+1, err)
		}
	}
	assertConfigured(t, cfg)

	// Binding right after Configure proves the IPv6 address skipped DAD:
	// a tentative address cannot be bound (EADDRNOTAVAIL).
	conn4 := listenUDP(t, overlay4.Addr())
	conn6 := listenUDP(t, overlay6.Addr())

	upTimeout := time.NewTimer(waitTimeout)
	defer upTimeout.Stop()
	select {
	case <-up:
	case <-upTimeout.C:
		t.Fatalf("no EventUp from the %s device within %v", driver, waitTimeout)
	}
	packets := readPackets(t, dev)

	// Outbound: the kernel must route each probe into the device.
	for _, dst := range []netip.Addr{
		netip.MustParseAddr("100.88.0.9"),        // overlay4's connected route
		netip.MustParseAddr("100.89.0.1"),        // extra4
		netip.MustParseAddr("fd6d:6573:686e::9"), // overlay6's connected route
		netip.MustParseAddr("fd6d:6573:686f::1"), // extra6
	} {
		conn, src := conn4, overlay4.Addr()
		if dst.Is6() {
			conn, src = conn6, overlay6.Addr()
		}
		token := []byte("meshnode-tun-probe " + dst.String())
		awaitPacket(t, packets, "UDP to "+dst.String(),
			func() error {
				_, err := conn.WriteToUDPAddrPort(token, netip.AddrPortFrom(dst, 9))
				return err
			},
			func(p ipPacket) bool {
				return p.proto == unix.IPPROTO_UDP && p.src == src && p.dst == dst && bytes.Contains(p.payload, token)
			})
	}

	// Inbound: an echo request written to the device must reach the kernel,
	// whose reply comes back out through the route to the peer.
	peer := netip.MustParseAddr("100.88.0.9")
	const echoID = 0x6d65
	awaitPacket(t, packets, "ICMP echo reply to "+peer.String(),
		func() error {
			n, err := dev.Write([][]byte{icmpEcho(peer, overlay4.Addr(), echoID, 1, []byte("meshnode"))}, readOffset)
			// wireguard-go's Linux device counts bytes, not packets, so
			// only the water adapter's count is checked.
			if err == nil && driver == DriverWater && n != 1 {
				err = fmt.Errorf("wrote %d packets, want 1", n)
			}
			return err
		},
		func(p ipPacket) bool {
			return p.proto == unix.IPPROTO_ICMP && p.src == overlay4.Addr() && p.dst == peer &&
				len(p.payload) >= 8 && p.payload[0] == 0 && // echo reply
				p.payload[4] == echoID>>8 && p.payload[5] == echoID&0xff
		})

	for i := range 2 { // the second run finds nothing to remove
		if err := Deconfigure(cfg); err != nil {
			t.Fatalf("Deconfigure #%d: %v", i+1, err)
		}
	}
	assertDeconfigured(t, cfg)

	if err := dev.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	eventually(t, "device removed after Close", func() error {
		if _, err := netlink.LinkByName(name); err == nil {
			return fmt.Errorf("link %s still exists", name)
		}
		return nil
	})
	if err := Deconfigure(cfg); err != nil {
		t.Fatalf("Deconfigure after Close: %v", err)
	}
}

func assertConfigured(t *testing.T, cfg Config) {
	t.Helper()
	link, err := netlink.LinkByName(cfg.Name)
	if err != nil {
		t.Fatalf("find %s: %v", cfg.Name, err)
	}
	if got := link.Attrs().MTU; got != cfg.MTU {
		t.Errorf("%s MTU = %d, want %d", cfg.Name, got, cfg.MTU)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("%s is not up (flags %v)", cfg.Name, link.Attrs().Flags)
	}
	addrs, err := linkAddrs(cfg.Name)
	if err != nil {
		t.Fatalf("list addresses of %s: %v", cfg.Name, err)
	}
	for _, p := range cfg.Addresses {
		a, ok := addrs[p]
		if !ok {
			t.Errorf("%s lacks address %s; has %v", cfg.Name, p, addrs)
			continue
		}
		if a.Flags&unix.IFA_F_TENTATIVE != 0 {
			t.Errorf("%s address %s is tentative (flags %#x): not usable yet", cfg.Name, p, a.Flags)
		}
	}
	routes, err := linkRoutes(cfg.Name)
	if err != nil {
		t.Fatalf("list routes of %s: %v", cfg.Name, err)
	}
	for _, p := range cfg.Routes {
		if !routes[p] {
			t.Errorf("%s lacks route %s; has %v", cfg.Name, p, routes)
		}
	}
}

func assertDeconfigured(t *testing.T, cfg Config) {
	t.Helper()
	addrs, err := linkAddrs(cfg.Name)
	if err != nil {
		t.Fatalf("list addresses of %s after Deconfigure: %v", cfg.Name, err)
	}
	for _, p := range cfg.Addresses {
		if _, ok := addrs[p]; ok {
			t.Errorf("%s still has address %s after Deconfigure", cfg.Name, p)
		}
	}
	routes, err := linkRoutes(cfg.Name)
	if err != nil {
		t.Fatalf("list routes of %s after Deconfigure: %v", cfg.Name, err)
	}
	for _, p := range cfg.Routes {
		if routes[p] {
			t.Errorf("%s still has route %s after Deconfigure", cfg.Name, p)
		}
	}
}

// TestCreateWithoutCapNetAdmin drops CAP_NET_ADMIN from the test's (locked,
// namespaced) thread and checks that Create says how to grant it.
func TestCreateWithoutCapNetAdmin(t *testing.T) {
	for _, driver := range Drivers() {
		t.Run(driver, func(t *testing.T) {
			testenv.EnterNetns(t)
			dropThreadCapability(t, unix.CAP_NET_ADMIN)
			dev, err := Create(driver, testDevName, DefaultMTU)
			if err == nil {
				dev.Close()
				t.Fatalf("Create(%q) without CAP_NET_ADMIN succeeded", driver)
			}
			if !errors.Is(err, ErrPermission) {
				t.Errorf("Create(%q) error %q is not ErrPermission", driver, err)
			}
			for _, s := range []string{"CAP_NET_ADMIN", "root", "setcap cap_net_admin+ep", "AmbientCapabilities", testDevName} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Create(%q) error %q does not mention %q", driver, err, s)
				}
			}
		})
	}
}

// dropThreadCapability removes capability from the calling thread's effective
// set. Capabilities are per thread in Linux, and enterTestNetns locked this
// thread to the test goroutine, so the runtime discards it afterwards.
func dropThreadCapability(t *testing.T, capability int) {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatalf("capget: %v", err)
	}
	data[capability/32].Effective &^= 1 << (capability % 32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		t.Fatalf("capset: %v", err)
	}
}

// watchUp drains dev's events, as wireguard-go's device does, and closes the
// returned channel at the first EventUp. It stops when dev is closed.
func watchUp(dev Device) <-chan struct{} {
	up := make(chan struct{})
	go func() {
		seen := false
		for ev := range dev.Events() {
			if ev&wgtun.EventUp != 0 && !seen {
				close(up)
				seen = true
			}
		}
	}()
	return up
}

func listenUDP(t *testing.T, addr netip.Addr) *net.UDPConn {
	t.Helper()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		t.Fatalf("bind UDP to %s right after Configure: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
