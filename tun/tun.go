// Package tun creates the node's TUN device and does the operating-system
// set-up around it (MTU, overlay addresses, routes) on Linux and macOS.
//
// The node engine only sees [Device], which is wireguard-go's tun.Device, so
// the kernel driver (wireguard-go), the portable driver (songgao/water) and
// wireguard-go's userspace netstack in root-free tests are interchangeable.
package tun

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.zx2c4.com/wireguard/device"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// Device is the seam between the engine and the packet source: a kernel TUN
// from wireguard-go, a water TUN, or a netstack device in tests.
type Device = wgtun.Device

// Driver names accepted by [Create].
const (
	// DriverWireGuard uses wireguard-go's TUN: on Linux it enables
	// IFF_VNET_HDR with TSO/USO offload and batches of conn.IdealBatchSize;
	// on macOS it opens a utun with batch size 1.
	DriverWireGuard = "wireguard"
	// DriverWater uses github.com/songgao/water: one packet per call and no
	// offload, for kernels or sandboxes where the vnet header is unavailable.
	DriverWater = "water"
)

// Header sizes that bound the overlay MTU.
const (
	ethernetMTU   = 1500 // RFC 894: the MTU nearly every underlay path offers
	ipv6HeaderLen = 40   // RFC 8200 §3: the outer header when peers talk over IPv6
	udpHeaderLen  = 8    // RFC 768
)

// MTU limits for the TUN device.
const (
	// DefaultMTU is 1420: an Ethernet-sized underlay packet minus the outer
	// IPv6 header, the UDP header and WireGuard's transport framing (16-byte
	// data header + 16-byte Poly1305 tag, device.MessageTransportSize), which
	// is 80 bytes in all. It matches wireguard-go's device.DefaultMTU.
	DefaultMTU = ethernetMTU - ipv6HeaderLen - udpHeaderLen - device.MessageTransportSize
	// MinMTU is the IPv6 minimum link MTU (RFC 8200 §5). The overlay always
	// carries IPv6, and Linux drops a link's IPv6 addresses below this.
	MinMTU = 1280
	// MaxMTU is the largest packet wireguard-go can encrypt into one UDP
	// datagram (device.MaxContentSize); the device caps larger MTUs anyway.
	MaxMTU = device.MaxContentSize
)

// Drivers returns the driver names [Create] accepts.
func Drivers() []string {
	return []string{DriverWireGuard, DriverWater}
}

// Create creates the TUN device name with driver and sets its MTU. The name
// must be valid for the OS (see [DefaultName]); on macOS "utun" asks the
// kernel for the next free unit, and the device's Name reports the one it got.
// Addresses and routes are set by [Configure].
func Create(driver, name string, mtu int) (Device, error) {
	if err := validateCreate(driver, name, mtu); err != nil {
		return nil, err
	}
	var (
		dev Device
		err error
	)
	switch driver {
	case DriverWireGuard:
		dev, err = createWireGuard(name, mtu)
	case DriverWater:
		dev, err = createWater(name, mtu)
	}
	if err != nil {
		return nil, createError(driver, name, err, cloneDevicePath)
	}
	return dev, nil
}

func validateCreate(driver, name string, mtu int) error {
	var errs []error
	if !slices.Contains(Drivers(), driver) {
		errs = append(errs, fmt.Errorf("%w %q: use one of %s",
			ErrUnknownDriver, driver, strings.Join(Drivers(), ", ")))
	}
	if err := validateName(name); err != nil {
		errs = append(errs, err)
	}
	if err := validateMTU(mtu); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func validateMTU(mtu int) error {
	if mtu < MinMTU || mtu > MaxMTU {
		return fmt.Errorf("%w %d: use a value from %d to %d (default %d)",
			ErrInvalidMTU, mtu, MinMTU, MaxMTU, DefaultMTU)
	}
	return nil
}
