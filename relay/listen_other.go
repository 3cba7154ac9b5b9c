//go:build !linux

package relay

import "net"

// listenUDP opens one socket on addr, whatever n: only Linux spreads UDP
// over sockets that share a port.
func listenUDP(network, addr string, _ int) ([]net.PacketConn, error) {
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		return nil, err
	}
	if uc, ok := pc.(*net.UDPConn); ok {
		// Best effort, as on Linux.
		_ = uc.SetReadBuffer(socketBuffer)
		_ = uc.SetWriteBuffer(socketBuffer)
	}
	return []net.PacketConn{pc}, nil
}
