// Package ratelog bounds how often a log line is written. Failures that
// others cause (a stranger's failed handshakes, a node's refused messages)
// are worth logging, but a flood of them must not fill the disk or drown
// the log: past a budget, records are counted instead of written, and the
// next record written says how many were dropped.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Logger writes at most Burst records at once and one per Every after that.
// It is safe for concurrent use.
type Logger struct {
	log *slog.Logger
	lim *rate.Limiter

	mu         sync.Mutex
	suppressed int
}

// New returns a Logger writing to log at most burst records at once and
// one per every on average.
func New(log *slog.Logger, every time.Duration, burst int) *Logger {
	return &Logger{log: log, lim: rate.NewLimiter(rate.Every(every), burst)}
}

// Log writes a record unless the budget is spent. Levels the handler
// doesn't write cost no budget.
func (l *Logger) Log(ctx context.Context, level slog.Level, msg string, args ...any) {
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.mu.Lock()
	if !l.lim.Allow() {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Log(ctx, level, msg, args...)
}

// Debug logs at debug level.
func (l *Logger) Debug(msg string, args ...any) {
	l.Log(context.Background(), slog.LevelDebug, msg, args...)
}

// Info logs at info level.
func (l *Logger) Info(msg string, args ...any) {
	l.Log(context.Background(), slog.LevelInfo, msg, args...)
}

// Warn logs at warn level.
func (l *Logger) Warn(msg string, args ...any) {
	l.Log(context.Background(), slog.LevelWarn, msg, args...)
}
