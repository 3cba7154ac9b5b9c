package portmap

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/internal/underlay"
)

// SSDPGroup is SSDP's multicast address and port (UPnP Device
// Architecture 1.1 §1.1.2).
const SSDPGroup = "239.255.255.250:1900"

// igdType is the device type every UPnP Internet Gateway Device announces.
const igdType = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"

// ssdpMX is the M-SEARCH's MX: devices delay their answer by up to this
// many seconds, so a probe waits at least that long.
const ssdpMX = 1

// mSearch builds the M-SEARCH for an IGD (UPnP DA 1.1 §1.3.2). HOST names
// the address searched: the multicast group, or a unicast target.
func mSearch(target netip.AddrPort) []byte {
	return fmt.Appendf(nil, "M-SEARCH * HTTP/1.1\r\nHOST: %s\r\nMAN: \"ssdp:discover\"\r\nMX: %d\r\nST: %s\r\n\r\n", target, ssdpMX, igdType)
}

// DiscoverIGD searches for a UPnP Internet Gateway Device by sending an
// M-SEARCH to target (normally SSDPGroup) and returns the address of the
// first device that answers with 200 OK.
func DiscoverIGD(ctx context.Context, target netip.AddrPort) (netip.AddrPort, error) {
	return discoverIGD(ctx, target, retransmitInitial)
}

// discoverIGD is DiscoverIGD retransmitting first after rto.
func discoverIGD(ctx context.Context, target netip.AddrPort, rto time.Duration) (netip.AddrPort, error) {
	// Unconnected: answers come from the device's unicast address, not
	// from the group.
	c, err := underlay.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("UPnP: listen: %w", err)
	}
	defer c.Close()
	req := mSearch(target)
	var igd netip.AddrPort
	err = exchange(ctx, c, rto, func() error { _, err := c.WriteToUDPAddrPort(req, target); return err }, func(b []byte, from netip.AddrPort) error {
		if !ssdpOK(b) {
			return errNotResponse
		}
		igd = from
		return nil
	})
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("UPnP IGD search via %s: %w", target, err)
	}
	return igd, nil
}

// ssdpOK reports whether b is an HTTP-over-UDP answer with status 200.
func ssdpOK(b []byte) bool {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
