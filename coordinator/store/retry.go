package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Riding out a lost connection: PostgreSQL restarting (a few seconds), a
// failover of a managed database (tens of seconds, beyond what a caller
// waits for), or one pooled connection the server ended while it was idle
// (pg_terminate_backend, idle_session_timeout; pgx's pool pings only
// connections idle for over a second). An operation that failed on one
// before it could commit applied nothing (its transaction died with the
// connection), so it runs again, whole, after a pause that doubles from
// First to Max (defaultRetry), ±50 % jitter so that coordinators sharing the
// database don't come back in step, for at most its Within and never
// past the caller's deadline.
var defaultRetry = Retry{First: 100 * time.Millisecond, Max: 2 * time.Second, Within: 15 * time.Second}

// Retry is how a store rides out a lost connection: pauses that double
// from First to Max, for at most Within (see retry).
type Retry struct{ First, Max, Within time.Duration }

// SetRetry replaces the store's defaults (100 ms doubling to 2 s, for at
// most 15 s): for tests that take the database down and wait on the store
// giving up or coming back, at a pace they choose. Safe while the store
// is in use; an operation already retrying keeps its schedule.
func (s *sqlDB) SetRetry(r Retry) { s.retryAt.Store(&r) }

// retrySchedule is the store's Retry: SetRetry's, else defaultRetry.
func (s *sqlDB) retrySchedule() Retry {
	if r := s.retryAt.Load(); r != nil {
		return *r
	}
	return defaultRetry
}

// ErrUnavailable marks an operation that failed because the database
// stayed unreachable for as long as it was retried: nothing was applied,
// and doing it again later is safe.
var ErrUnavailable = errors.New("database unreachable")

// unavailableError is an operation given up on a lost connection.
type unavailableError struct {
	err      error
	attempts int
	elapsed  time.Duration
}

func (e *unavailableError) Error() string {
	return fmt.Sprintf("%v (the connection was lost; %d attempts in %v: is PostgreSQL running and reachable?)",
		e.err, e.attempts, e.elapsed.Round(time.Millisecond))
}

func (e *unavailableError) Unwrap() error { return e.err }

func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// commitError is a connection lost during COMMIT: whether the server
// committed is unknown, so the operation is not run again (it might be
// applied twice) and its caller must not acknowledge it.
type commitError struct{ err error }

func (e *commitError) Error() string {
	return fmt.Sprintf("connection lost during COMMIT (%v): the change may or may not have been made; read it back before doing it again", e.err)
}

func (e *commitError) Unwrap() error { return e.err }

// lostConnection reports whether err means the connection to the database
// failed, rather than the database refusing the operation. A lost COMMIT
// is not one: see commitError.
func lostConnection(err error) bool {
	if _, ok := errors.AsType[*commitError](err); ok || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch pe.Code {
		case "57P01", "57P02", "57P03": // admin_shutdown (terminated, or a fast shutdown), crash_shutdown, cannot_connect_now
			return true
		}
		return pe.Code[:2] == "08" // connection_exception
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	for _, target := range []error{driver.ErrBadConn, io.EOF, io.ErrUnexpectedEOF, syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE} {
		if errors.Is(err, target) {
			return true
		}
	}
	return pgconn.SafeToRetry(err)
}

// retry runs op, and runs it again while it fails on a lost connection
// (see Retry). op must be one whole transaction, or only read.
func retry[T any](ctx context.Context, s *sqlDB, op func() (T, error)) (T, error) {
	start := time.Now()
	sched := s.retrySchedule()
	wait := sched.First
	for attempt := 1; ; attempt++ {
		v, err := op()
		if err == nil || !lostConnection(err) || ctx.Err() != nil {
			return v, err
		}
		pause := jittered(wait)
		elapsed := time.Since(start)
		if deadline, ok := ctx.Deadline(); elapsed+pause > sched.Within || ok && time.Now().Add(pause).After(deadline) {
			return v, &unavailableError{err, attempt, elapsed}
		}
		select {
		case <-ctx.Done():
			return v, &unavailableError{err, attempt, time.Since(start)}
		case <-time.After(pause):
		}
		wait = min(2*wait, sched.Max)
	}
}

// jittered is d ±50 %, drawn at random: coordinators that lost the
// database together don't come back to it in step.
func jittered(d time.Duration) time.Duration { return d/2 + rand.N(d) }

// retryErr is retry for an operation with no result.
func retryErr(ctx context.Context, s *sqlDB, op func() error) error {
	_, err := retry(ctx, s, func() (struct{}, error) { return struct{}{}, op() })
	return err
}
