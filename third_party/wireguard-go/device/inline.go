package device

import "runtime"

// meshnode: the inline data path (third_party/README.md).
//
// Upstream hands each batch from the goroutine that read it (the TUN
// reader, a socket's receiver) to a crypto worker and to the peer's
// sequential sender or receiver: two hand-offs per batch each way, each
// able to wake a parked goroutine on another thread, and queues that hold
// whatever the stages have not caught up with. That spreads one flow over
// many cores. With few cores the stages compete for the same ones: two
// nodes on 2 cores under one TCP stream spent a quarter of their CPU in
// the scheduler (futex wakes, context switches, sysmon retaking Ps from
// long syscalls), and their queues held thousands of packets (a 200 MB
// heap of 64 KiB buffers, and that much delay). So with at most
// inlineMaxProcs Ps, the goroutine that reads a batch also encrypts and
// sends it (SendStagedPackets), or decrypts and writes it to the TUN
// (RoutineReceiveIncoming): no hand-off, no queue, and the kernel's
// buffers push back on the sender. Above that, the stages spread over the
// cores as upstream. Either way a peer's batches are received one at a
// time (Peer.rxMu), as its one sequential receiver did.
const inlineMaxProcs = 2

// inlineData reports whether a new device takes the inline path; tests
// replace it to run both paths.
var inlineData = func() bool { return runtime.GOMAXPROCS(0) <= inlineMaxProcs }
