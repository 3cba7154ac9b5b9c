package natlab

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"syscall"
	"time"
)

// Ephemeral ports for ListenPacket with port 0: Linux's default
// ip_local_port_range.
const (
	ephemeralFirst = 32768
	ephemeralLast  = 60999
	ephemeralSpan  = ephemeralLast - ephemeralFirst + 1
)

// Host is a machine on one network, with sockets bound to its addresses.
type Host struct {
	lab  *Lab
	name string
	ips  []netip.Addr
	net  *network

	// Guarded by lab.mu.
	conns   map[netip.AddrPort]*Conn
	latency time.Duration
	loss    float64
	lossRNG *rand.Rand
	portRNG *rand.Rand
	stats   HostStats
}

// HostStats counts a host's packets.
type HostStats struct {
	Sent      uint64 // written by its Conns
	Lost      uint64 // dropped by SetLoss
	Received  uint64 // queued on one of its Conns
	NoSocket  uint64 // arrived for a port nothing listens on
	QueueFull uint64 // arrived at a Conn whose receive queue was full
}

func (l *Lab) newHost(n *network, name string, ips []netip.Addr) *Host {
	if name == "" {
		panic("natlab: NewHost: empty name; name every host, the packet log uses it")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	h := &Host{
		lab:     l,
		name:    name,
		net:     n,
		conns:   make(map[netip.AddrPort]*Conn),
		lossRNG: newNameRNG(name + "/loss"),
		portRNG: newNameRNG(name + "/ports"),
	}
	for _, ip := range ips {
		ip = ip.Unmap()
		if !usableIP(ip) {
			panic(fmt.Sprintf("natlab: NewHost %q: bad address %v: use a unicast address", name, ip))
		}
		if n.inUse(ip) || slices.Contains(h.ips, ip) {
			panic(fmt.Sprintf("natlab: NewHost %q: address %v is already in use on the %s", name, ip, n.name))
		}
		h.ips = append(h.ips, ip)
	}
	if len(h.ips) == 0 {
		h.ips = append(h.ips, n.alloc(n.hostBase))
	}
	for _, ip := range h.ips {
		n.hosts[ip] = h
	}
	l.hosts = append(l.hosts, h)
	return h
}

func newNameRNG(name string) *rand.Rand {
	seed := nameSeed(name)
	return rand.New(rand.NewPCG(seed, seed))
}

// Name returns the host's name.
func (h *Host) Name() string { return h.name }

// IPs returns the host's addresses; the first is its default.
func (h *Host) IPs() []netip.Addr { return slices.Clone(h.ips) }

// Stats returns the host's counters.
func (h *Host) Stats() HostStats {
	h.lab.mu.Lock()
	defer h.lab.mu.Unlock()
	return h.stats
}

// ListenPacket opens a UDP socket. An unspecified (or zero) IP means the
// host's first address; port 0 picks a free ephemeral port. It fails if the
// address is not the host's or the port is taken (syscall.EADDRINUSE).
func (h *Host) ListenPacket(addr netip.AddrPort) (*Conn, error) {
	ip := addr.Addr().Unmap()
	if !ip.IsValid() || ip.IsUnspecified() {
		ip = h.ips[0]
	}
	if !slices.Contains(h.ips, ip) {
		return nil, fmt.Errorf("natlab: listen %v on %s: %v is not one of its addresses %v", addr, h.name, ip, h.ips)
	}
	h.lab.mu.Lock()
	defer h.lab.mu.Unlock()
	if h.lab.closed {
		return nil, errClosedLab(fmt.Sprintf("listen %v on %s", addr, h.name))
	}
	local := netip.AddrPortFrom(ip, addr.Port())
	if local.Port() == 0 {
		port, ok := h.ephemeralPort(ip)
		if !ok {
			return nil, fmt.Errorf("natlab: listen %v on %s: no free ephemeral port: %w", addr, h.name, syscall.EADDRINUSE)
		}
		local = netip.AddrPortFrom(ip, port)
	} else if h.conns[local] != nil {
		return nil, fmt.Errorf("natlab: listen %v on %s: %w", local, h.name, syscall.EADDRINUSE)
	}
	c := newConn(h, local)
	h.conns[local] = c
	return c, nil
}

// ephemeralPort picks a free port from a random start, like Linux.
func (h *Host) ephemeralPort(ip netip.Addr) (uint16, bool) {
	start := h.portRNG.IntN(ephemeralSpan)
	for i := range ephemeralSpan {
		port := uint16(ephemeralFirst + (start+i)%ephemeralSpan)
		if h.conns[netip.AddrPortFrom(ip, port)] == nil {
			return port, true
		}
	}
	return 0, false
}

// SetLatency delays every packet the host sends by d (one way). Packets
// with equal delays keep their order. It panics if d is negative.
func (h *Host) SetLatency(d time.Duration) {
	if d < 0 {
		panic(fmt.Sprintf("natlab: %s: SetLatency(%v): use a duration >= 0", h.name, d))
	}
	h.lab.mu.Lock()
	defer h.lab.mu.Unlock()
	h.latency = d
}

// SetLoss drops each packet the host sends with probability p. The draw is
// repeatable: the RNG is seeded from the host's name (see SetLossSeed). It
// panics if p is not in [0, 1].
func (h *Host) SetLoss(p float64) {
	if !validLoss(p) {
		panic(fmt.Sprintf("natlab: %s: SetLoss(%v): use a probability in [0, 1]", h.name, p))
	}
	h.lab.mu.Lock()
	defer h.lab.mu.Unlock()
	h.loss = p
}

// SetLossSeed reseeds the RNG behind SetLoss, to vary a lossy run.
func (h *Host) SetLossSeed(seed uint64) {
	h.lab.mu.Lock()
	defer h.lab.mu.Unlock()
	h.lossRNG = rand.New(rand.NewPCG(seed, seed))
}
