package natlab

import "fmt"

// logPacket writes one hop of a packet's path, as
// "<sender> <src> -> <dst>: <what happened>", with src and dst as they are
// at this hop. Callers hold l.mu, so lines come out in processing order.
func (l *Lab) logPacket(p *packet, format string, args ...any) {
	if l.logf == nil {
		return
	}
	l.logf("%s %v -> %v: %s", p.from.name, p.src, p.dst, fmt.Sprintf(format, args...))
}

// logEvent writes a line about the lab itself (a NAT up, mappings expired).
func (l *Lab) logEvent(format string, args ...any) {
	if l.logf == nil {
		return
	}
	l.logf(format, args...)
}
