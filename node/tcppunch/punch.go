package tcppunch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/meshnode/meshnode/crypto"
)

// Punch timing.
const (
	// retryInterval spaces connect attempts: a NAT or host that answers a
	// SYN with a reset fails an attempt at once, and the next one waits for
	// the rest of this interval ("retry after about a second").
	retryInterval = time.Second
	// dialAttemptTimeout bounds one connect attempt whose SYN is silently
	// dropped (the usual NAT filter). Until then the socket stays open in
	// SYN-SENT, its NAT mapping stays open, and the kernel resends the SYN
	// (after 1 s, then 2 s more: RFC 6298 initial RTO 1 s), so the peer's SYN
	// crosses into it; after it a fresh socket starts over.
	dialAttemptTimeout = 5 * time.Second
	// handshakeTimeout bounds authenticating one connection: three short
	// messages each way, a few round trips even on a slow link.
	handshakeTimeout = 5 * time.Second
	// punchTimeout bounds a punch even when ctx does not: two cone NATs
	// open within a few retries once both sides punch, and past this the
	// path manager should use the TCP relay and try again with backoff.
	punchTimeout = 30 * time.Second
	// maxCandidates bounds connections being authenticated at once; more
	// from the peer's address are closed unread.
	maxCandidates = 4
)

// Options configure one punch.
type Options struct {
	Priv crypto.PrivateKey
	Peer crypto.PublicKey
	// LocalPort is the port this node's coordinator connection uses (see
	// Dialer); the peer punches its public mapping.
	LocalPort uint16
	// Remote is the peer's public TCP mapping, as the coordinator saw it.
	Remote netip.AddrPort
	// Log may be nil.
	Log *slog.Logger
	// Deliver takes every received data frame (bind.Bind.DeliverFrame).
	// Each frame is a fresh slice the callee may keep.
	Deliver func(frame []byte)
	// RetryInterval spaces connect attempts (zero: retryInterval, 1 s).
	// Tests on loopback, where a connect is refused at once, shorten it.
	RetryInterval time.Duration
	// DialAttemptTimeout bounds one connect attempt (zero:
	// dialAttemptTimeout, 5 s). The NAT lab shortens it to reach the
	// attempt after it within a short test.
	DialAttemptTimeout time.Duration
}

func (o Options) validate() error {
	var errs []error
	if o.Priv.IsZero() {
		errs = append(errs, errors.New("tcp punch: Priv is unset; pass the node's private key"))
	}
	if o.Peer.IsZero() {
		errs = append(errs, errors.New("tcp punch: Peer is unset; pass the peer's public key"))
	} else if !o.Priv.IsZero() && o.Peer == o.Priv.Public() {
		errs = append(errs, fmt.Errorf("tcp punch: Peer %s is this node's own key; pass the peer's key", o.Peer.Short()))
	}
	if o.LocalPort == 0 {
		errs = append(errs, errors.New("tcp punch: LocalPort is 0; pass the port of the coordinator connection, whose mapping the peer punches"))
	}
	if !o.Remote.IsValid() || o.Remote.Port() == 0 || o.Remote.Addr().Unmap().IsUnspecified() {
		errs = append(errs, fmt.Errorf("tcp punch: Remote %s is not an address and port; pass the peer's public TCP mapping", o.Remote))
	}
	if o.Deliver == nil {
		errs = append(errs, errors.New("tcp punch: Deliver is nil; pass the Bind's DeliverFrame"))
	}
	return errors.Join(errs...)
}

// puncher is one Punch in progress.
type puncher struct {
	ctx     context.Context // ends with the punch
	o       Options
	self    crypto.PublicKey
	remote  netip.AddrPort // o.Remote, unmapped
	chooser bool           // this node picks the connection (lower key)

	wg   sync.WaitGroup
	slot chan struct{} // maxCandidates tokens
	turn chan struct{} // chooser: one decision at a time
	won  chan *Path    // the first connection both ends agreed on

	mu       sync.Mutex
	lastErr  error
	rejected error // the last connection that proved the wrong key
	attempts int
}

// Punch opens a direct TCP path to o.Peer: it listens on o.LocalPort and
// repeatedly connects from it to o.Remote until a connection with the peer's
// mapping (accepted, dialed or a simultaneous open) authenticates o.Peer.
// It stops when ctx ends or after punchTimeout, and leaves no socket or
// goroutine behind on failure. Run the returned Path's read loop.
//
// Punch listens for itself: run one at a time per port, or punch through
// one Listener to punch several peers from a port at once.
func Punch(ctx context.Context, o Options) (*Path, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	l, err := NewListener(ctx, o.LocalPort)
	if err != nil {
		return nil, fmt.Errorf("tcp punch to %s: %w", o.Remote, err)
	}
	defer l.Close()
	return l.Punch(ctx, o)
}

// punch runs one punch with l routing it the connections from its peer.
func (l *Listener) punch(ctx context.Context, o Options) (*Path, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, punchTimeout)
	defer cancel()
	self := o.Priv.Public()
	pn := &puncher{
		ctx:     ctx,
		o:       o,
		self:    self,
		remote:  netip.AddrPortFrom(o.Remote.Addr().Unmap(), o.Remote.Port()),
		chooser: bytes.Compare(self[:], o.Peer[:]) < 0,
		slot:    make(chan struct{}, maxCandidates),
		turn:    make(chan struct{}, 1),
		won:     make(chan *Path, 1),
	}
	l.add(pn)
	pn.wg.Go(pn.dialLoop)

	var p *Path
	select {
	case p = <-pn.won:
	case <-ctx.Done():
	}
	cancel()
	l.remove(pn) // after it, l hands pn no more connections
	pn.wg.Wait()
	if p == nil {
		// A candidate may have won while ctx ended; the caller gave up,
		// so it is not handed out.
		select {
		case late := <-pn.won:
			late.Close()
		default:
		}
		pn.mu.Lock()
		defer pn.mu.Unlock()
		err := fmt.Errorf("tcp punch to %s from port %d: no authenticated connection (%d connect attempts): %w",
			pn.remote, o.LocalPort, pn.attempts, ctx.Err())
		if pn.lastErr != nil {
			err = fmt.Errorf("%w (last failure: %v)", err, pn.lastErr)
		}
		if pn.rejected != nil && pn.rejected != pn.lastErr {
			err = fmt.Errorf("%w (last rejected connection: %v)", err, pn.rejected)
		}
		return nil, err
	}
	o.Log.Info("tcp punch connected", "peer", o.Peer.Short(), "remote", p.remote, "attempts", pn.attempts)
	return p, nil
}

func (pn *puncher) fail(err error) {
	if errors.Is(err, errWrongPeer) {
		pn.o.Log.Warn("tcp punch rejected a connection", "peer", pn.o.Peer.Short(), "err", err)
	} else {
		pn.o.Log.Debug("tcp punch attempt failed", "peer", pn.o.Peer.Short(), "err", err)
	}
	pn.mu.Lock()
	pn.lastErr = err
	if errors.Is(err, errWrongPeer) {
		pn.rejected = err
	}
	pn.mu.Unlock()
}

// dialLoop connects from the local port to the peer's mapping, a fresh
// socket per attempt, until ctx ends.
func (pn *puncher) dialLoop() {
	ctx := pn.ctx
	d := Dialer(pn.o.LocalPort)
	d.Timeout = pn.dialAttemptTimeout()
	for ctx.Err() == nil {
		start := time.Now()
		pn.mu.Lock()
		pn.attempts++
		pn.mu.Unlock()
		c, err := d.DialContext(ctx, "tcp", pn.remote.String())
		if err != nil {
			if ctx.Err() == nil {
				pn.fail(fmt.Errorf("connect: %w", err))
			}
		} else {
			// Its 4-tuple is taken until the handshake ends: the next
			// attempt waits for it to fail.
			select {
			case <-pn.candidate(c, "connect", nil):
			case <-ctx.Done():
				return
			}
		}
		t := time.NewTimer(time.Until(start.Add(pn.retryInterval())))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (pn *puncher) retryInterval() time.Duration {
	if pn.o.RetryInterval <= 0 {
		return retryInterval
	}
	return pn.o.RetryInterval
}

func (pn *puncher) dialAttemptTimeout() time.Duration {
	if pn.o.DialAttemptTimeout <= 0 {
		return dialAttemptTimeout
	}
	return pn.o.DialAttemptTimeout
}

// candidate authenticates c in the background, or closes it when too many
// are in progress. theirs is the hello already read from c, or nil. The
// channel closes if c fails; it stays open once c is the path.
func (pn *puncher) candidate(c net.Conn, how string, theirs *hello) <-chan struct{} {
	ctx := pn.ctx
	failed := make(chan struct{})
	select {
	case pn.slot <- struct{}{}:
	default:
		c.Close()
		pn.fail(fmt.Errorf("%s from %s: %d connections already authenticating", how, c.RemoteAddr(), maxCandidates))
		close(failed)
		return failed
	}
	pn.wg.Go(func() {
		defer func() { <-pn.slot }()
		if err := pn.settle(ctx, c, theirs); err != nil {
			close(failed)
			c.Close()
			if ctx.Err() == nil {
				pn.fail(fmt.Errorf("%s from %s: %w", how, c.RemoteAddr(), err))
			}
			return
		}
		p := newPath(c, pn.self, pn.o.Peer, pn.o.Deliver, pn.o.Log)
		select {
		case pn.won <- p:
			pn.o.Log.Debug("tcp punch path chosen", "how", how, "remote", p.remote)
		default:
			c.Close()
		}
	})
	return failed
}

// settle authenticates c and agrees with the peer to use it. On success c
// has no deadline and ctx no longer affects it.
func (pn *puncher) settle(ctx context.Context, c net.Conn, theirs *hello) error {
	if err := c.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return err
	}
	// Ending ctx unblocks the handshake; stop tells whether it did.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	err := authenticate(c, pn.o.Priv, pn.o.Peer, theirs)
	if err == nil {
		err = pn.agree(ctx, c)
	}
	if !stop() {
		return errors.Join(err, ctx.Err())
	}
	if err != nil {
		return err
	}
	return c.SetDeadline(time.Time{})
}

// agree settles which authenticated connection is the path. The chooser
// offers one at a time and keeps its turn once the peer agrees, so only one
// connection ever wins; the other node takes what it is offered.
func (pn *puncher) agree(ctx context.Context, c net.Conn) error {
	if !pn.chooser {
		return follow(c)
	}
	select {
	case pn.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	// The turn may have waited on another candidate: give this one a full
	// exchange, unless ctx ended and its deadline was cut short meanwhile.
	if err := c.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		<-pn.turn
		return err
	}
	if err := ctx.Err(); err != nil {
		<-pn.turn
		return err
	}
	if err := choose(c); err != nil {
		<-pn.turn
		return err
	}
	return nil
}
