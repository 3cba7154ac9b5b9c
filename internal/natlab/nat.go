package natlab

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"
)

// NAT translates between its inside LAN and its upstream network (the
// internet or another NAT's LAN).
type NAT struct {
	lab    *Lab
	cfg    NATConfig // defaults resolved; PublicIP is the current one
	up     *network  // where the public side sits
	inside *network
	rng    *rand.Rand
	next   int // PortSequential cursor

	byKey  map[mapKey]*mapping
	byPort map[uint16]*mapping
	// tracked holds unsolicited packets kept by the NAT's own stack
	// (TrackUnsolicited), by sender and public port: last packet's time.
	tracked map[trackKey]time.Time
	stats   NATStats
}

// NATStats counts what a NAT did with packets, for tests to assert on.
type NATStats struct {
	MappingsCreated  uint64
	MappingsExpired  uint64 // removed after IdleTimeout without traffic
	Outbound         uint64 // translated inside to outside (hairpinned included)
	Inbound          uint64 // let in by the filter and translated to the inside
	Hairpinned       uint64 // reflected back inside (RFC 4787 §6)
	DroppedNoMapping uint64 // inbound to a port with no live mapping
	DroppedFiltered  uint64 // inbound refused by the Filtering behaviour
	DroppedBlocked   uint64 // outbound dropped by BlockUDP
	DroppedHairpin   uint64 // to the NAT's own public address with Hairpin off
	DroppedNoPort    uint64 // no free external port for a new mapping
	DroppedTTL       uint64 // died at the NAT or its uplink hops, TTL spent
	// Tracked counts unsolicited packets kept by the NAT's own stack
	// (TrackUnsolicited); Remapped counts flows moved to another port
	// because such a packet took theirs.
	Tracked  uint64
	Remapped uint64
}

// NewNAT adds a NAT. Its inside LAN gets automatic host addresses from
// 192.168.N.2, N counting NATs from 1. It returns an error naming each bad
// field.
func (l *Lab) NewNAT(cfg NATConfig) (*NAT, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("natlab: NewNAT %q: %w", cfg.Name, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errClosedLab(fmt.Sprintf("NewNAT %q", cfg.Name))
	}
	up := l.internet
	if cfg.Upstream != nil {
		if cfg.Upstream.lab != l {
			return nil, fmt.Errorf("natlab: NewNAT %q: bad Upstream %q: it belongs to another Lab", cfg.Name, cfg.Upstream.cfg.Name)
		}
		up = cfg.Upstream.inside
	}
	if cfg.PublicIP.IsValid() {
		cfg.PublicIP = cfg.PublicIP.Unmap()
		if up.inUse(cfg.PublicIP) {
			return nil, fmt.Errorf("natlab: NewNAT %q: bad PublicIP %v: already in use on the %s; pick another or leave it zero", cfg.Name, cfg.PublicIP, up.name)
		}
	} else {
		cfg.PublicIP = up.alloc(up.natBase)
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.PortAlloc == PortSequential && cfg.PortStep == 0 {
		cfg.PortStep = 1
	}
	if cfg.Seed == 0 {
		cfg.Seed = nameSeed(cfg.Name)
	}
	n := &NAT{
		lab:     l,
		cfg:     cfg,
		up:      up,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed)),
		byKey:   make(map[mapKey]*mapping),
		byPort:  make(map[uint16]*mapping),
		tracked: make(map[trackKey]time.Time),
	}
	n.next = natFirstPort + n.rng.IntN(natPortSpan)
	l.nats = append(l.nats, n)
	lan := netip.AddrFrom4([4]byte{192, 168, byte(len(l.nats)), 2})
	n.inside = newNetwork(cfg.Name+" LAN", n, lan, lan)
	up.nats[cfg.PublicIP] = n
	extra := ""
	if cfg.TrackUnsolicited {
		extra += ", tracks unsolicited packets"
	}
	if cfg.UplinkHops > 0 {
		extra += fmt.Sprintf(", %d uplink hops", cfg.UplinkHops)
	}
	l.logEvent("%s: up at %v on the %s (%v mapping, %v filtering, %v ports%s)",
		cfg.Name, cfg.PublicIP, up.name, cfg.Mapping, cfg.Filtering, cfg.PortAlloc, extra)
	return n, nil
}

// NewHost adds a host on the NAT's inside LAN. With no ips it gets the next
// free 192.168.N.x. It panics like Lab.NewHost.
func (n *NAT) NewHost(name string, ips ...netip.Addr) *Host {
	return n.lab.newHost(n.inside, name, ips)
}

// Name returns the NAT's name.
func (n *NAT) Name() string { return n.cfg.Name }

// PublicIP returns the NAT's current address on its upstream network.
func (n *NAT) PublicIP() netip.Addr {
	n.lab.mu.Lock()
	defer n.lab.mu.Unlock()
	return n.cfg.PublicIP
}

// Config returns the configuration with defaults resolved (IdleTimeout,
// PortStep, Seed, an automatic PublicIP) and the current PublicIP.
func (n *NAT) Config() NATConfig {
	n.lab.mu.Lock()
	defer n.lab.mu.Unlock()
	return n.cfg
}

// Stats returns the NAT's counters.
func (n *NAT) Stats() NATStats {
	n.lab.mu.Lock()
	defer n.lab.mu.Unlock()
	return n.stats
}

// MappingCount returns the number of live mappings, removing expired ones.
func (n *NAT) MappingCount() int {
	n.lab.mu.Lock()
	defer n.lab.mu.Unlock()
	now := time.Now()
	for _, m := range n.byPort {
		if n.expired(m, now) {
			n.expire(m)
		}
	}
	return len(n.byPort)
}

// TrackedCount returns the number of live tracked unsolicited pairs
// (TrackUnsolicited), removing expired ones.
func (n *NAT) TrackedCount() int {
	n.lab.mu.Lock()
	defer n.lab.mu.Unlock()
	n.sweepTracked(time.Now())
	return len(n.tracked)
}

// TrackedFrom returns the number of live tracked unsolicited pairs
// (TrackUnsolicited) whose sender is remote.
func (n *NAT) TrackedFrom(remote netip.Addr) int {
	n.lab.mu.Lock()
	defer n.lab.mu.Unlock()
	n.sweepTracked(time.Now())
	count := 0
	for k := range n.tracked {
		if k.remote.Addr() == remote {
			count++
		}
	}
	return count
}

// Flush drops every mapping, like conntrack -F or a NAT reboot.
func (n *NAT) Flush() {
	n.lab.mu.Lock()
	defer n.lab.mu.Unlock()
	n.flush("flushed")
}

// SetPublicIP moves the NAT to a new upstream address, losing every mapping
// (a DHCP or PPPoE renumbering). It panics if ip is unusable or taken by
// another host or NAT on the upstream network.
func (n *NAT) SetPublicIP(ip netip.Addr) {
	ip = ip.Unmap()
	n.lab.mu.Lock()
	defer n.lab.mu.Unlock()
	if !usableIP(ip) {
		panic(fmt.Sprintf("natlab: %s: SetPublicIP(%v): use a unicast address", n.cfg.Name, ip))
	}
	if ip != n.cfg.PublicIP && n.up.inUse(ip) {
		panic(fmt.Sprintf("natlab: %s: SetPublicIP(%v): already in use on the %s", n.cfg.Name, ip, n.up.name))
	}
	delete(n.up.nats, n.cfg.PublicIP)
	n.up.nats[ip] = n
	n.lab.logEvent("%s: public address %v -> %v", n.cfg.Name, n.cfg.PublicIP, ip)
	n.cfg.PublicIP = ip
	n.flush("lost on address change")
}

func (n *NAT) flush(why string) {
	n.lab.logEvent("%s: %d mappings %s", n.cfg.Name, len(n.byPort), why)
	clear(n.byKey)
	clear(n.byPort)
	clear(n.tracked)
}

// outbound translates a packet leaving the inside LAN and forwards it
// upstream, or back inside when it is addressed to this NAT (hairpin).
func (n *NAT) outbound(p *packet) {
	name := n.cfg.Name
	if n.cfg.BlockUDP {
		n.stats.DroppedBlocked++
		n.lab.logPacket(p, "%s: dropped (UDP blocked)", name)
		return
	}
	hairpin := p.dst.Addr() == n.cfg.PublicIP
	if hairpin && !n.cfg.Hairpin {
		n.stats.DroppedHairpin++
		n.lab.logPacket(p, "%s: dropped (hairpin to its own public address is off)", name)
		return
	}
	// Routers check the TTL before translating (Linux: ip_forward before
	// POSTROUTING), so a packet that dies here leaves no mapping.
	if !p.forward() {
		n.stats.DroppedTTL++
		n.lab.logPacket(p, "%s: dropped (TTL spent)", name)
		return
	}
	now := time.Now()
	m, isNew := n.mappingFor(p.src, p.dst, now)
	if m == nil {
		n.stats.DroppedNoPort++
		n.lab.logPacket(p, "%s: dropped (no free external port)", name)
		return
	}
	tag := ""
	if isNew {
		tag = " (new)"
	}
	n.lab.logPacket(p, "%s maps %v as %v%s", name, p.src, m.external, tag)
	m.lastUsed = now
	m.sentTo[p.dst] = struct{}{}
	m.sentToIP[p.dst.Addr()] = struct{}{}
	p.src = m.external
	n.stats.Outbound++
	if hairpin {
		n.stats.Hairpinned++
		n.lab.logPacket(p, "%s hairpins it back inside", name)
		n.inbound(p, false)
		return
	}
	if !n.uplink(p) {
		return
	}
	n.lab.route(p, n.up)
}

// uplink takes p across the routers between the NAT and its upstream
// network (UplinkHops), either way; it reports false when p dies there.
func (n *NAT) uplink(p *packet) bool {
	for i := range n.cfg.UplinkHops {
		if !p.forward() {
			n.stats.DroppedTTL++
			n.lab.logPacket(p, "%s's uplink hop %d: dropped (TTL spent)", n.cfg.Name, i+1)
			return false
		}
	}
	return true
}

// fromUpstream takes a packet addressed to the NAT's public IP from its
// upstream network: across the uplink hops, then in.
func (n *NAT) fromUpstream(p *packet) {
	if n.uplink(p) {
		n.inbound(p, true)
	}
}

// inbound filters a packet addressed to the NAT's public IP and, when a live
// mapping accepts its source, translates it to the inside endpoint. hop is
// false for a hairpinned packet, whose one hop through the NAT outbound
// already spent.
func (n *NAT) inbound(p *packet, hop bool) {
	name := n.cfg.Name
	now := time.Now()
	m := n.byPort[p.dst.Port()]
	if m != nil && n.expired(m, now) {
		n.expire(m)
		m = nil
	}
	accepted := m != nil && m.accepts(p.src, n.cfg.Filtering)
	switch {
	case !accepted && n.cfg.TrackUnsolicited:
		n.track(p, now)
		return
	case m == nil:
		n.stats.DroppedNoMapping++
		n.lab.logPacket(p, "%s filters: dropped (no mapping for port %d)", name, p.dst.Port())
		return
	case !accepted:
		n.stats.DroppedFiltered++
		n.lab.logPacket(p, "%s filters: dropped (no mapping accepts %v, %v)", name, p.src, n.cfg.Filtering)
		return
	case hop && !p.forward():
		n.stats.DroppedTTL++
		n.lab.logPacket(p, "%s: dropped (TTL spent)", name)
		return
	}
	m.lastUsed = now // a reply refreshes the entry, as conntrack does
	n.stats.Inbound++
	n.lab.logPacket(p, "%s translates to %v", name, m.key.internal)
	p.dst = m.key.internal
	n.lab.route(p, n.inside)
}
