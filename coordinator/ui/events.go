package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// events streams the view as server-sent events (HTML Living Standard
// §9.2): the whole view at once, then again each time it changed. The
// view is compared every s.every; the number of open streams is bounded,
// and a stream ends with its session.
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
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	var last []byte
	for {
		if _, ok := s.auth.session(r); !ok {
			return
		}
		v, err := s.b.View(r.Context())
		if err != nil {
			s.log.Warn("web page view", "err", err)
			return
		}
		b, err := json.Marshal(v)
		if err != nil {
			s.log.Warn("web page view", "err", err)
			return
		}
		if !bytes.Equal(b, last) {
			last = b
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
		case <-tick.C:
		}
	}
}
