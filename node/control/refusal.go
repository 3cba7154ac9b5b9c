package control

import (
	"log/slog"
	"time"
)

// refusalLogEvery bounds how often the coordinator's refusals are logged at
// warning level: a node whose message the coordinator refuses is likely to
// send it again after every reconnect, and its log must not fill with the
// same line.
const refusalLogEvery = time.Minute

// refusalLog logs refusals that end a session (the node keeps running) at
// most once per refusalLogEvery at warning level, and the rest at debug
// level, counted in the next warning. Run owns it: no locking.
type refusalLog struct {
	last time.Time // of the last warning
	held int       // refusals since then, logged at debug level only
}

func (l *refusalLog) log(log *slog.Logger, re *RejectedError, in time.Duration, now time.Time) {
	attrs := []any{"code", re.Code, "reason", re.Reason, "in", in.Round(time.Millisecond)}
	if !l.last.IsZero() && now.Sub(l.last) < refusalLogEvery {
		l.held++
		log.Debug("coordinator refused the session; reconnecting", attrs...)
		return
	}
	if l.held > 0 {
		attrs = append(attrs, "refusals_since_last_warning", l.held)
	}
	log.Warn("coordinator refused the session; reconnecting", attrs...)
	l.last, l.held = now, 0
}
