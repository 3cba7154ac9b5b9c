package tun

import wgtun "golang.zx2c4.com/wireguard/tun"

// createWireGuard opens a kernel TUN through wireguard-go. It sets the MTU but
// no addresses or routes; on Linux the device vanishes, together with its
// addresses and routes, when the last descriptor closes.
func createWireGuard(name string, mtu int) (Device, error) {
	return wgtun.CreateTUN(name, mtu)
}
