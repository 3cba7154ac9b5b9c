// Package natlab emulates UDP across NATs in process, without root, for
// tests of NAT traversal: hole punching, STUN, relays, mapping changes.
//
// # Model
//
// A Lab holds an internet (the 198.18.0.0/15 benchmarking range) and any
// number of NATs. Each NAT has a public address on its upstream network,
// which is the internet or, for double NAT and carrier-grade NAT, the inside
// LAN of another NAT. Hosts sit on the internet (Lab.NewHost) or on a NAT's
// LAN (NAT.NewHost) and open sockets with Host.ListenPacket.
//
// A packet is routed on its sender's network: to a host there (a LAN needs
// no NAT between its hosts), to a NAT whose public side is there (inbound),
// or up through the NAT whose LAN it is (outbound). Outbound, a NAT finds
// or creates a mapping per its Mapping behaviour and PortAlloc and rewrites
// the source. Inbound, it accepts a packet only if a live mapping owns the
// destination port and its Filtering lets the source in, then rewrites the
// destination. A packet to the NAT's own public address from inside is
// hairpinned (source translated, RFC 4787 §6) only with Hairpin set.
// Anything else is dropped and logged, except on a NAT with
// TrackUnsolicited, which keeps an unsolicited packet in its own stack and
// moves its host's later flow to that sender onto another port (Linux
// masquerade with no WAN input filter).
//
// Packets carry a TTL (DefaultTTL, or Conn.WriteToUDPAddrPortTTL's): each
// NAT and each of its uplink hops (NATConfig.UplinkHops) spends one and
// drops a packet with none left, so a low-TTL packet can open its own NAT
// without reaching the far one.
//
// Outbound and accepted inbound packets refresh a mapping. Expired mappings
// are removed lazily, when a packet, an allocation or MappingCount meets
// them, so no timer runs per mapping; poll MappingCount to wait for expiry.
//
// # Determinism
//
// With no latency on the sender, WriteToUDPAddrPort routes the packet
// through every hop before it returns: it is then in the receiver's queue
// (Conn.Queued) or counted as dropped (NAT.Stats, Host.Stats), so tests need
// no waiting to assert that something did not arrive. Random choices (ports,
// loss) come from RNGs seeded from names unless NATConfig.Seed or
// Host.SetLossSeed say otherwise, so a run repeats exactly.
//
// # Packet log
//
// New takes a printf-style func such as testing.T.Logf; each hop logs one
// line naming the sender, the addresses at that hop and what happened:
//
//	alice 192.168.1.2:41820 -> 198.18.0.1:3478: home-a maps 192.168.1.2:41820 as 198.18.1.1:41820 (new)
//	stun 198.18.0.1:3478 -> 198.18.1.1:41820: home-a filters: dropped (no mapping accepts 198.18.0.1:3478, address-and-port-dependent)
//
// # Injecting it into tests
//
// *Conn implements net.PacketConn and also offers ReadFromUDPAddrPort and
// WriteToUDPAddrPort, so a wireguard-go conn.Bind, a STUN server or a relay
// runs over it unchanged:
//
//	lab := natlab.New(t.Logf)
//	t.Cleanup(func() { lab.Close() })
//	stun := lab.NewHost("stun")
//	cfg := natlab.PortRestrictedCone()
//	cfg.Name = "home-a"
//	home, err := lab.NewNAT(cfg)
//	...
//	alice := home.NewHost("alice")
//	pc, err := alice.ListenPacket(netip.AddrPort{}) // 192.168.1.2, ephemeral port
//
// Close the Lab to close every Conn; blocked reads return net.ErrClosed.
package natlab
