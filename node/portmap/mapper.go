package portmap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Mapping timing.
const (
	// DefaultLifetime is the lifetime asked for: RFC 6886 §3.3's
	// recommended 7200 s. Mappings are renewed at half their granted
	// lifetime (§3.3, RFC 6887 §11.2.1).
	DefaultLifetime = 7200 * time.Second
	// DefaultMapTimeout bounds one request to the LAN gateway: five sends
	// (0, 0.25, 0.75, 1.75 and 3.75 s) before giving up.
	DefaultMapTimeout = 5 * time.Second
	// retryAfterFailure spaces attempts while the gateway refuses or is
	// silent: a newly enabled service or a rebooted gateway is noticed
	// within minutes, without chattering at networks that have none.
	retryAfterFailure = 5 * time.Minute
	// minRenewal keeps a gateway granting a tiny lifetime from turning
	// renewal into a busy loop.
	minRenewal = 2 * time.Second
	// unmapTimeout bounds the deletion on the way out: a courtesy (the
	// mapping expires anyway) that must not hold up shutdown.
	unmapTimeout = 2 * time.Second
)

// Mapper keeps one UDP port mapping on the gateway: NAT-PMP, or PCP when
// the gateway speaks only PCP. The external address may be private when
// the gateway itself sits behind another NAT; callers compare it with what
// STUN saw.
type Mapper struct {
	Gateway    netip.Addr
	ServerPort uint16        // zero: ServerPort (5351)
	Lifetime   time.Duration // asked for; zero: DefaultLifetime
	Timeout    time.Duration // per request; zero: DefaultMapTimeout
	Log        *slog.Logger  // nil discards

	// after waits between renewals; tests replace it to drive time.
	after func(time.Duration) <-chan time.Time

	mu  sync.Mutex // one request at a time: renewals and deletion don't race
	cur *mapping
}

// mapping is what the gateway granted, kept to renew and delete it.
type mapping struct {
	proto    string // protoNATPMP or protoPCP
	internal uint16
	external netip.AddrPort
	pcp      pcpMapping // PCP's nonce, which renewals and deletion repeat
}

// Map asks the gateway to forward UDP to internalPort (the node's WireGuard
// port), suggesting the same external port, or the one granted before when
// renewing. It returns the external address and the granted lifetime.
// Mapping another port replaces the previous mapping.
func (m *Mapper) Map(ctx context.Context, internalPort uint16) (netip.AddrPort, time.Duration, error) {
	if !m.Gateway.Is4() {
		return netip.AddrPort{}, 0, fmt.Errorf("port mapping: gateway %v is not an IPv4 address", m.Gateway)
	}
	if internalPort == 0 {
		return netip.AddrPort{}, 0, errors.New("port mapping: internal port 0; give the node's WireGuard port")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, orDefault(m.Timeout, DefaultMapTimeout))
	defer cancel()
	if m.cur != nil && m.cur.internal != internalPort {
		if err := m.unmapLocked(ctx); err != nil {
			m.log().Info("old port mapping not deleted; it expires by itself", "err", err)
		}
	}
	if m.cur == nil || m.cur.proto == protoNATPMP {
		ext, life, err := m.mapNATPMP(ctx, internalPort)
		if !unsupportedVersion(err) {
			return ext, life, err
		}
		m.cur = nil // a PCP-only gateway
	}
	return m.mapPCP(ctx, internalPort)
}

func (m *Mapper) mapNATPMP(ctx context.Context, internal uint16) (netip.AddrPort, time.Duration, error) {
	server := m.server()
	ip, err := ExternalAddress(ctx, server)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	if ip.IsUnspecified() {
		return netip.AddrPort{}, 0, fmt.Errorf("NAT-PMP at %s: the gateway has no external address yet", server)
	}
	suggested := internal
	if m.cur != nil {
		suggested = m.cur.external.Port()
	}
	port, life, err := natpmpMap(ctx, server, internal, suggested, seconds(m.lifetime()))
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	if life == 0 || port == 0 {
		return netip.AddrPort{}, 0, fmt.Errorf("NAT-PMP at %s granted port %d for %d s: no usable mapping", server, port, life)
	}
	ext := netip.AddrPortFrom(ip, port)
	m.cur = &mapping{proto: protoNATPMP, internal: internal, external: ext}
	return ext, time.Duration(life) * time.Second, nil
}

func (m *Mapper) mapPCP(ctx context.Context, internal uint16) (netip.AddrPort, time.Duration, error) {
	server := m.server()
	pm, suggested := pcpMapping{}, netip.AddrPortFrom(netip.Addr{}, internal)
	if m.cur != nil {
		pm, suggested = m.cur.pcp, m.cur.external
	} else {
		var err error
		if pm, err = newPCPMapping(internal); err != nil {
			return netip.AddrPort{}, 0, err
		}
	}
	ext, life, err := pcpMap(ctx, server, pm, suggested, seconds(m.lifetime()))
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	if life == 0 || ext.Port() == 0 || !ext.Addr().Is4() || ext.Addr().IsUnspecified() {
		return netip.AddrPort{}, 0, fmt.Errorf("PCP at %s granted %s for %d s: no usable mapping", server, ext, life)
	}
	m.cur = &mapping{proto: protoPCP, internal: internal, external: ext, pcp: pm}
	return ext, time.Duration(life) * time.Second, nil
}

// Unmap deletes the mapping with lifetime 0 (RFC 6886 §3.4, RFC 6887 §15).
// Without a mapping it does nothing. The mapping is forgotten even when the
// gateway doesn't answer: it then expires at the end of its lifetime.
func (m *Mapper) Unmap(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.unmapLocked(ctx)
}

func (m *Mapper) unmapLocked(ctx context.Context) error {
	c := m.cur
	if c == nil {
		return nil
	}
	m.cur = nil
	var err error
	switch c.proto {
	case protoNATPMP:
		_, _, err = natpmpMap(ctx, m.server(), c.internal, 0, 0)
	case protoPCP:
		_, _, err = pcpMap(ctx, m.server(), c.pcp, netip.AddrPort{}, 0)
	}
	return err
}

// Run keeps a mapping for internalPort until ctx ends: it maps, renews at
// half the granted lifetime, calls update whenever the external address
// changes (with the zero AddrPort when the mapping is lost) and deletes the
// mapping on the way out. It returns the deletion's error, if any.
func (m *Mapper) Run(ctx context.Context, internalPort uint16, update func(netip.AddrPort)) error {
	m.keep(ctx, internalPort, update)
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unmapTimeout)
	defer cancel()
	if err := m.Unmap(uctx); err != nil {
		return fmt.Errorf("delete port mapping: %w", err)
	}
	return nil
}

func (m *Mapper) keep(ctx context.Context, internalPort uint16, update func(netip.AddrPort)) {
	var last netip.AddrPort
	for {
		ext, life, err := m.Map(ctx, internalPort)
		wait := max(life/2, minRenewal)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.log().Info("port mapping failed; retrying later", "gateway", m.Gateway, "retry_in", retryAfterFailure, "err", err)
			ext, wait = netip.AddrPort{}, retryAfterFailure
		}
		if ext != last {
			last = ext
			update(ext)
		}
		select {
		case <-ctx.Done():
			return
		case <-m.wait(wait):
		}
	}
}

func (m *Mapper) wait(d time.Duration) <-chan time.Time {
	if m.after != nil {
		return m.after(d)
	}
	return time.After(d)
}

func (m *Mapper) server() netip.AddrPort {
	return netip.AddrPortFrom(m.Gateway, serverPort(m.ServerPort))
}

func (m *Mapper) lifetime() time.Duration { return orDefault(m.Lifetime, DefaultLifetime) }

func (m *Mapper) log() *slog.Logger {
	if m.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Log
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// seconds converts a lifetime for the wire, which counts whole seconds.
func seconds(d time.Duration) uint32 { return uint32(max(d/time.Second, 1)) }
