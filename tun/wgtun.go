package tun

import wgtun "golang.zx2c4.com/wireguard/tun"

// createWireGuard opens a kernel TUN through wireguard-go. It sets the MTU but
// no addresses or routes; on Linux the device vanishes, together with its
// addresses and routes, when the last descriptor closes.
//
// What the node writes to the device is authentic: packets WireGuard
// decrypted (their Poly1305 tags checked) and packets the node made itself.
// So its GRO coalesces them without summing each to check its checksum, as
// the kernel's WireGuard marks what it decrypted CHECKSUM_UNNECESSARY.
func createWireGuard(name string, mtu int) (Device, error) {
	d, err := wgtun.CreateTUN(name, mtu)
	if err != nil {
		return nil, err
	}
	if t, ok := d.(interface{ TrustChecksums() }); ok {
		t.TrustChecksums()
	}
	return d, nil
}
