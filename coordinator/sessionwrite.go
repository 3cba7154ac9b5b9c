package coordinator

import (
	"context"
	"sync"
	"time"

	"github.com/meshnode/meshnode/internal/wire"
)

// onDemand is the state of a session's work that runs only while there is
// some: writing what is queued (a flush), and applying endpoint reports.
// A session is mostly idle, and a goroutine parked for each, as before,
// cost two stacks a stream: at 10,000 streams about 160 MB, a third of the
// coordinator's memory (bench/RESULTS.md, issue 14). Now the only
// goroutine a stream keeps is its reader; a flush runs in a timer's
// goroutine or one started for it, and ends when nothing is left. Guarded
// by the session's mu.
type onDemand struct {
	// ctx and w are the session's, set by ready; nothing is written
	// before (the welcome goes first).
	ctx context.Context
	w   *writer
	// closed: the session ended; nothing more starts.
	closed bool
	// flushing: a flush runs; again: something was queued meanwhile.
	flushing, again bool
	// timer, while armed, starts a flush at timerAt: the end of the
	// coalescing window, or when a held cue is due.
	timer   *time.Timer
	timerAt time.Time
	// applying: the report applier runs; reportWaits: a report came
	// since it last looked.
	applying, reportWaits bool
	// apply is the report applier (Server.applyReports), set by
	// applyWith.
	apply func()
	// work counts the flushes and appliers running, for close.
	work sync.WaitGroup
}

// ready starts the session's writes once its welcome is out: from now on
// what is queued is written, within deltaCoalesce.
func (s *session) ready(ctx context.Context, w *writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.run.ctx, s.run.w = ctx, w
	s.scheduleLocked(time.Now())
}

// applyWith starts applying the node's endpoint reports with apply, which
// runs in a goroutine of its own while reports come (nextReport).
func (s *session) applyWith(apply func()) {
	s.mu.Lock()
	s.run.apply = apply
	var start func()
	if s.run.reportWaits {
		start = s.startApplierLocked()
	}
	s.mu.Unlock()
	if start != nil {
		go start()
	}
}

// close stops the session's on-demand work, then waits for what runs
// (its ctx is done, so a write in progress fails at once).
func (s *session) close() {
	s.mu.Lock()
	s.run.closed = true
	if s.run.timer != nil && s.run.timer.Stop() {
		s.run.timer = nil
	}
	s.mu.Unlock()
	s.run.work.Wait()
}

// signal schedules a flush of what was just queued.
func (s *session) signal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scheduleLocked(time.Now())
}

// scheduleLocked makes sure what is queued goes out: at once if it is
// urgent, else at the end of a coalescing window of deltaCoalesce, which
// gathers a burst of changes into one message. s.mu is held.
func (s *session) scheduleLocked(now time.Time) {
	r := &s.run
	switch {
	case r.ctx == nil || r.closed:
	case r.flushing:
		r.again = true
	case s.urgentLocked(now):
		if r.timer == nil || r.timer.Stop() {
			r.timer = nil
			r.flushing = true
			r.work.Add(1)
			go s.flush()
		}
		// Otherwise the timer fired and its flush, waiting for mu, takes
		// this too.
	case r.timer == nil:
		s.armLocked(now, deltaCoalesce)
	case r.timerAt.After(now.Add(deltaCoalesce)) && r.timer.Stop():
		// Armed for a held cue, later than a delta may wait.
		s.armLocked(now, deltaCoalesce)
	}
}

// armLocked arms the timer to flush in d. s.mu is held.
func (s *session) armLocked(now time.Time, d time.Duration) {
	s.run.timer = time.AfterFunc(d, s.fire)
	s.run.timerAt = now.Add(d)
}

// fire is the timer's: it flushes, in the timer's goroutine.
func (s *session) fire() {
	s.mu.Lock()
	r := &s.run
	r.timer = nil
	if r.closed || r.flushing {
		s.mu.Unlock()
		return
	}
	r.flushing = true
	r.work.Add(1)
	s.mu.Unlock()
	s.flush()
}

// urgentLocked reports whether something must go out without coalescing:
// the end, a cue that is due, or the node's own record. That one changes
// the node's role (a relay designated or withdrawn), and its peers hear of
// the change in a coalesced delta: sent at once, it reaches the node
// first, so a newly designated relay serves by the time peers bind to it.
// s.mu is held.
func (s *session) urgentLocked(now time.Time) bool {
	if s.final != nil || s.self != nil {
		return true
	}
	for p := range s.cues {
		if now.Sub(s.lastCue[p]) >= s.limits.cueGap {
			return true
		}
	}
	return false
}

// flush sends the delta, then the cues that are due, then the closing if
// the session was stopped; again while something urgent was queued
// meanwhile. A failed write or the closing ends the session. Before it
// returns it arms the timer for what waits: changes queued meanwhile, or
// a held cue.
func (s *session) flush() {
	defer s.run.work.Done()
	for {
		delta, cues, next, final := s.take(time.Now())
		if !s.send(delta, cues, final) {
			s.cancel()
			s.mu.Lock()
			s.run.flushing = false
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		r := &s.run
		now := time.Now()
		if r.again && !r.closed && s.urgentLocked(now) {
			r.again = false
			s.mu.Unlock()
			continue
		}
		r.flushing = false
		wait := next
		if r.again {
			r.again = false
			wait = deltaCoalesce
			if next > 0 {
				wait = min(wait, next)
			}
		}
		if wait > 0 && !r.closed {
			s.armLocked(now, wait)
		}
		s.mu.Unlock()
		return
	}
}

// send writes one flush's messages; false when the session must end (a
// write failed, or final was sent).
func (s *session) send(delta *outgoing, cues []wire.StreamMsg, final *closing) bool {
	ctx, w := s.run.ctx, s.run.w
	// The delta goes first: a punch may name a peer the delta adds.
	if delta != nil {
		if w.writeOut(ctx, s.conn, *delta) != nil {
			return false
		}
	}
	for _, m := range cues {
		if w.write(ctx, s.conn, m) != nil {
			return false
		}
	}
	if final != nil {
		if final.msg != nil {
			w.write(ctx, s.conn, *final.msg) //nolint:errcheck // closing anyway
		}
		s.conn.Close(final.code, final.reason) //nolint:errcheck // the stream is over either way
		return false
	}
	return true
}

// startApplierLocked returns the report applier for the caller to start
// in a goroutine when the session is ready and none runs; else nil. s.mu
// is held.
func (s *session) startApplierLocked() func() {
	r := &s.run
	if r.apply == nil || r.closed || r.applying {
		return nil
	}
	r.applying = true
	r.work.Add(1)
	return r.apply
}

// nextReport reports whether a report came since the applier last looked;
// when none did, the applier ends.
func (s *session) nextReport() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.run
	if !r.reportWaits || r.closed {
		r.applying = false
		return false
	}
	r.reportWaits = false
	return true
}
