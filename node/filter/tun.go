package filter

import "github.com/meshnode/meshnode/tun"

// TUN wraps the overlay's device and filters what crosses it: what
// wireguard-go reads is on its way to peers (Outbound), what it writes
// came from peers (Inbound). With no policy in force it costs one atomic
// load a batch.
type TUN struct {
	tun.Device
	f *Filter
	// filterSends enforces the policy on outbound packets too. Off (tests
	// only, or a binary built with SendsUnfiltered), the node sends what
	// its policy denies, and the peers' filters must drop it.
	filterSends bool
}

// NewTUN wraps dev with f. filterSends is ignored in a binary built with
// SendsUnfiltered.
func NewTUN(dev tun.Device, f *Filter, filterSends bool) *TUN {
	return &TUN{Device: dev, f: f, filterSends: filterSends && !SendsUnfiltered}
}

// Read reads packets from the device and drops (size 0, which
// wireguard-go skips) those the policy denies.
func (t *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := t.Device.Read(bufs, sizes, offset)
	rs := t.f.rules.Load()
	if rs == nil || n == 0 {
		return n, err
	}
	now := t.f.clock()
	for i := range n {
		if sizes[i] > 0 && !t.f.check(rs, Outbound, bufs[i][offset:offset+sizes[i]], now, t.filterSends) {
			sizes[i] = 0
		}
	}
	return n, err
}

// Write writes to the device the packets the policy lets in. The ones it
// denies are left out of bufs, which is reordered in place: wireguard-go
// (one goroutine per peer) owns the buffers through its own list and
// reuses the slice only after Write returns.
func (t *TUN) Write(bufs [][]byte, offset int) (int, error) {
	rs := t.f.rules.Load()
	if rs == nil {
		return t.Device.Write(bufs, offset)
	}
	now := t.f.clock()
	kept := bufs[:0]
	for _, b := range bufs {
		if t.f.check(rs, Inbound, b[offset:], now, true) {
			kept = append(kept, b)
		}
	}
	if len(kept) == 0 {
		return 0, nil
	}
	return t.Device.Write(kept, offset)
}
