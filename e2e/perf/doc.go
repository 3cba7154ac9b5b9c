// Package perf is the real-kernel data-plane comparison that `make perf`
// runs (issue 16): one iperf3 TCP stream between two hosts behind two
// port-restricted NATs (Linux masquerade) in the netlab lab. Each
// contender has its own host behind each of the same two NATs: a tunnel's
// interface on a host is a LAN address to the next tunnel there, which
// would then run inside it. The contenders:
//
//   - the raw path, no tunnel: iperf3 from host A to router B's public
//     address, which forwards the port (and ICMP echo requests, for the
//     idle RTT) to host B (a home router's port forward: a plain server
//     can't punch, and this keeps both NATs on the path, as for every
//     tunnel);
//   - stock wireguard-go, the upstream module at the version in go.mod
//     (go.mod replaces it with third_party/wireguard-go; this one is built
//     outside the module, from the module proxy, into a temporary
//     directory), MTU 1420, configured through its UAPI socket. It can't
//     punch: each side's endpoint is the other NAT's public address and
//     the port it keeps (masquerade preserves ports), and both sides send
//     at once (a persistent keepalive), so the second side's handshake
//     finds the first side's mapping open: a hole punched by hand;
//   - meshnode (the binary under test: a coordinator and two `meshnode
//     up` nodes, MTU 1420), once both nodes report the direct path;
//   - Nebula, when its binary is at hand (NEBULA_BIN): a CA, two hosts and
//     a lighthouse on a public host, MTU 1300, an allow-all firewall.
//
// Before each iperf3 run, the same client pings the same target 30 times,
// 10 ms apart, over the contender's path: the median is the idle
// round-trip time, and the latency table shows each contender's overhead
// over the raw path and that overhead over stock wireguard-go's.
//
// Every contender runs on both wires: the "offload wire" keeps veth's
// defaults (UDP segmentation offload, GRO), the "packet wire" turns off
// tx-udp-segmentation, GSO and GRO on every veth of the lab (ethtool), so
// the wire carries MTU-sized datagrams, as a physical network does. Runs
// are interleaved: each round measures every contender on both wires, so
// all see the same machine; the table shows the median of the rounds, the
// ratio to Nebula and to stock wireguard-go, and the CPU time of the
// contender's two processes over the run.
//
// Then the time to first ping, for meshnode on three NAT pairs: a first
// node is up and has learned its public address; the clock starts when
// the second node starts, and a ping loop from the first node (an echo
// every 50 ms, from the moment the second node has its overlay address)
// runs until the first reply. Nebula is timed the same way on the cone
// pair (it has no relay here for the others): a mesh of its own with a
// lighthouse on a public site; the first node is up and has reached the
// lighthouse; each run starts a second node on a new site with its own
// certificate and address, and the first node pings it from its start.
//
// Environment:
//
//	MESHNODE_PERF=1        run TestPerf, the full comparison (make perf)
//	MESHNODE_PERF_OUT=PATH also write its report as Markdown to PATH
//	PERF_SECONDS=N         each iperf3 run's length (default 5, 1-20)
//	PERF_RUNS=N            rounds, the median's sample, and the runs of
//	                       each first-ping pair (default 3, 1-9)
//	NEBULA_BIN=PATH        Nebula (default ../shared/peers/nebula beside the
//	                       repository); nebula-cert is looked for beside it
//	MESHNODE_E2E=1         run TestPerfSmoke, the harness's quick check in
//	                       make e2e (raw path and meshnode, 1 s, one round)
//	MESHNODE_BIN=PATH      the meshnode binary (default ../../bin/meshnode)
//	PERF_BEFORE=PATH       another meshnode binary, measured beside it as
//	                       "meshnode before" (make perf BEFORE=REV builds
//	                       git revision REV there)
//	PERF_PROFILE=DIR       CPU profiles of both meshnode nodes during the
//	                       last round's run on each wire, into DIR
//	MESHNODE_E2E_KEEP=1    keep the lab directory (logs, configs)
package perf
