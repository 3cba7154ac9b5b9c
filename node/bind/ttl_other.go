//go:build !linux

package bind

import "net/netip"

// ttlSockets is empty where the StdNetBind's sockets can't be found: the
// node sends no low-TTL packets there.
type ttlSockets struct{}

func findSockets(uint16) ttlSockets { return ttlSockets{} }

func (ttlSockets) any() bool { return false }

func (ttlSockets) close() {}

func (ttlSockets) send([]byte, netip.AddrPort, int) error { return ErrNoTTL }

func ttlControl(netip.AddrPort, int) ([]byte, error) { return nil, ErrNoTTL }
