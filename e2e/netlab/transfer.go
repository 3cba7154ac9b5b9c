package netlab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
)

const (
	// chunk is the transfer's write and read size.
	chunk = 32 << 10
	// dialTimeout bounds a TCP connect over the overlay; SYN retries
	// cover a handshake or a path that is still being set up.
	dialTimeout = 15 * time.Second
)

// Transfer is a TCP transfer across the overlay.
type Transfer struct {
	From, To *Netns
	Addr     netip.Addr // the receiver listens here, in To
	Size     int64
	// Rate paces the sender in bytes/s; 0 sends as fast as TCP goes.
	Rate int64
	// StallTimeout, when set, fails the transfer once the receiver has
	// had no data for that long: a dead path fails fast, not at ctx's end.
	StallTimeout time.Duration
	// Received, when set, counts the bytes received so far.
	Received *atomic.Int64
}

// TransferResult describes a finished TCP transfer.
type TransferResult struct {
	Bytes   int64
	Elapsed time.Duration
	// MaxStall is the longest time the receiver went without data.
	MaxStall time.Duration
}

// Rate is the transfer's goodput in bytes per second.
func (r TransferResult) Rate() float64 { return float64(r.Bytes) / r.Elapsed.Seconds() }

// received is the receiver's account of a transfer.
type received struct {
	n     int64
	sum   []byte
	stall time.Duration
	err   error
}

// Run sends Size pseudo-random bytes over TCP and checks the receiver got
// exactly those bytes (count and SHA-256).
func (tr Transfer) Run(ctx context.Context) (TransferResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var ln net.Listener
	if err := tr.To.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(tr.Addr, 0).String())
		return err
	}); err != nil {
		return TransferResult{}, fmt.Errorf("listen on %v in %s: %w", tr.Addr, tr.To.Name, err)
	}
	context.AfterFunc(ctx, func() { ln.Close() })
	got := make(chan received, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			got <- received{err: fmt.Errorf("accept: %w", err)}
			return
		}
		defer conn.Close()
		stopOnDone(ctx, conn)
		got <- tr.receive(ctx, conn)
	}()

	start := time.Now()
	var conn net.Conn
	if err := tr.From.Do(func() (err error) {
		d := net.Dialer{Timeout: dialTimeout}
		conn, err = d.DialContext(ctx, "tcp", ln.Addr().String())
		return err
	}); err != nil {
		return TransferResult{}, fmt.Errorf("connect from %s to %s: %w", tr.From.Name, ln.Addr(), err)
	}
	defer conn.Close()
	stopOnDone(ctx, conn)
	h := sha256.New()
	sent := make(chan error, 1)
	go func() {
		err := send(ctx, io.MultiWriter(conn, h), tr.Size, tr.Rate)
		if err == nil {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		sent <- err
	}()
	r := <-got
	cancel() // unblocks a sender still writing into a dead path
	sendErr := <-sent
	res := TransferResult{Bytes: r.n, Elapsed: time.Since(start), MaxStall: r.stall}
	if r.err != nil {
		return res, fmt.Errorf("transfer of %d bytes: %w (sender: %v)", tr.Size, r.err, sendErr)
	}
	if sendErr != nil {
		return res, fmt.Errorf("transfer of %d bytes: %w", tr.Size, sendErr)
	}
	if r.n != tr.Size || !bytes.Equal(r.sum, h.Sum(nil)) {
		return res, fmt.Errorf("transfer: received %d bytes with SHA-256 %x, sent %d with %x", r.n, r.sum[:8], tr.Size, h.Sum(nil)[:8])
	}
	return res, nil
}

// receive reads conn to its end, hashing, counting and timing the gaps.
func (tr Transfer) receive(ctx context.Context, conn net.Conn) received {
	h := sha256.New()
	buf := make([]byte, chunk)
	var r received
	last := time.Now()
	for {
		if tr.StallTimeout > 0 {
			if err := conn.SetReadDeadline(time.Now().Add(tr.StallTimeout)); err != nil {
				r.err = err
				break
			}
		}
		k, err := conn.Read(buf)
		if k > 0 {
			now := time.Now()
			r.stall = max(r.stall, now.Sub(last))
			last = now
			h.Write(buf[:k])
			r.n += int64(k)
			if tr.Received != nil {
				tr.Received.Add(int64(k))
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			switch {
			case ctx.Err() != nil:
				r.err = fmt.Errorf("only %d bytes arrived before the deadline: %w", r.n, context.Cause(ctx))
			case errors.Is(err, os.ErrDeadlineExceeded) && tr.StallTimeout > 0:
				r.err = fmt.Errorf("no data for %v after %d bytes: the path stopped carrying the stream", tr.StallTimeout, r.n)
			default:
				r.err = fmt.Errorf("receive after %d bytes: %w", r.n, err)
			}
			break
		}
	}
	r.sum = h.Sum(nil)
	return r
}

// send writes size deterministic pseudo-random bytes to w, paced at rate.
func send(ctx context.Context, w io.Writer, size, rate int64) error {
	src := rand.NewChaCha8([32]byte{'m', 'e', 's', 'h', 'l', 'a', 'b'})
	buf := make([]byte, chunk)
	start := time.Now()
	for sent := int64(0); sent < size; {
		n := min(int64(len(buf)), size-sent)
		_, _ = src.Read(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			return fmt.Errorf("write at byte %d: %w", sent, err)
		}
		sent += n
		if rate <= 0 {
			continue
		}
		// Pacing: wait until the time at which this many bytes are due.
		due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
		t := time.NewTimer(time.Until(due))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// stopOnDone unblocks conn's reads and writes when ctx ends.
func stopOnDone(ctx context.Context, conn net.Conn) {
	context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
}
