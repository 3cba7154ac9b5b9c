//go:build !linux

package relay

import "net"

// oobSize is 0: without UDP offloads a read has no control message.
const oobSize = 0

// offloads reports none: UDP_SEGMENT and UDP_GRO are Linux's.
func offloads(*net.UDPConn) (gso, gro bool) { return false, false }

// segmentSize is 0: every read holds one datagram.
func segmentSize([]byte) int { return 0 }

// putSegment is never called without gso; it writes no control message.
func putSegment(oob []byte, _ int) []byte { return oob[:0] }
