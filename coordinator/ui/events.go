package ui

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// events streams the view as server-sent events (HTML Living Standard
// §9.2): the whole view at once, then again each time it changed. The
// view comes from the feed, built once every s.every for all streams; the
// number of open streams is bounded, and a stream ends with its session.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.auth.session(r); !ok {
		reply(w, http.StatusUnauthorized, nil, errors.New("not logged in: run 'meshnode admin login' on the coordinator's host"))
		return
	}
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		reply(w, http.StatusTooManyRequests, nil, fmt.Errorf("%d live pages already; close one", cap(s.streams)))
		return
	}
	unsubscribe := s.feed.subscribe()
	defer unsubscribe()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	// The session is checked again every interval: a logout ends the stream.
	check := time.NewTicker(s.every)
	defer check.Stop()
	var sent uint64
	for {
		b, version, changed := s.feed.current()
		if b != nil && version != sent {
			sent = version
			if _, err := fmt.Fprintf(w, "event: view\ndata: %s\n\n", b); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-check.C:
			if _, ok := s.auth.session(r); !ok {
				return
			}
		}
	}
}
