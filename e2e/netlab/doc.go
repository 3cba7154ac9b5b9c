// Package netlab builds a real-kernel NAT lab out of Linux network namespaces
// so that real meshnode binaries, with real TUN devices, can be tested across
// every kind of NAT. It needs root, iproute2, nftables and conntrack-tools.
//
// The topology, per lab:
//
//	              "internet" namespace: bridge br0, 198.18.0.0/15 (RFC 2544)
//	   ┌──────────────┬──────────────────┴───┬──────────────────────┐
//	coordinator     public host           router (NAT)          CGN router
//	198.18.0.1      198.18.i.10           wan0 198.18.i.1       wan0 198.18.i.1
//	198.18.0.2                            lan0 10.i.0.1/24      lan0 100.64.i.1/24
//	(RFC 5780                               │                     │
//	 second address)                      host 10.i.0.2 ...     home router 100.64.i.2
//	                                                            lan0 192.168.i.1/24
//	                                                              │
//	                                                            host 192.168.i.2
//
// IPv6 runs beside it on 2001:2::/48 (RFC 5180): the internet namespace
// routes the segment 2001:2::/64 (the coordinator is 2001:2::1, site i's
// router 2001:2::i:1) to each site's 2001:2:0:i::/64. A site with IPv6
// (SiteConfig.IPv6, or the kind ipv6only with no IPv4 at all) gives its
// hosts global addresses there, behind its router's stateful firewall: no
// translation, unsolicited inbound dropped (RFC 6092).
//
// Routers translate with nftables: Linux masquerade is a port-restricted cone
// (endpoint-independent mapping with port preservation, address-and-port-
// dependent filtering, RFC 4787), masquerade with fully-random ports is
// symmetric, a static snat+dnat of the node's UDP port is a full cone, and
// masquerade with no input filter remaps a flow whose peer's packet arrived
// first (EarlyRemap). A router on the internet also plays its ISP's first
// hop, dropping what arrives with its TTL spent, so a low-TTL packet that
// left one NAT dies before the next, as on the internet. The
// lab is isolated: no namespace has a route to the machine's own networks, so
// nothing a test sends can leave it.
//
// Every namespace name starts with the lab's prefix, the creating process's
// PID and a random suffix, so parallel runs never collide and Sweep can
// remove what a crashed run left behind without touching anyone else's.
// Processes run with a parent-death signal and are ended by PID only.
package netlab
