package main

import (
	"io"
	"log/slog"
)

// newLogger returns a text logger at the configured level (validated by
// config: debug, info, warn or error).
func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
