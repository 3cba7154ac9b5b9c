package localapi

import (
	"fmt"
	"net/http"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"
)

// PathProfile serves the node's Go profiles (`meshnode debug profile`):
// ?kind=cpu&seconds=N records the CPU for N seconds; any other kind
// (heap, allocs, goroutine, mutex, block) is a snapshot.
const PathProfile = "/v1/debug/profile"

// maxProfileSeconds bounds one CPU profile: long enough to catch a
// transfer, short enough that a forgotten request ends by itself.
const maxProfileSeconds = 120

// profiler serves one CPU profile at a time: the runtime records only
// one, and a second request says so instead of waiting.
type profiler struct{ cpu sync.Mutex }

func (p *profiler) serve(w http.ResponseWriter, r *http.Request) {
	kind := r.URL.Query().Get("kind")
	if kind == "" {
		kind = "cpu"
	}
	if kind != "cpu" {
		prof := pprof.Lookup(kind)
		if prof == nil {
			writeJSON(w, http.StatusBadRequest, ErrorReply{Error: fmt.Sprintf("profile kind %q: want cpu, heap, allocs, goroutine, mutex or block", kind)})
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		prof.WriteTo(w, 0)
		return
	}
	secs, err := strconv.Atoi(r.URL.Query().Get("seconds"))
	if err != nil || secs < 1 || secs > maxProfileSeconds {
		writeJSON(w, http.StatusBadRequest, ErrorReply{Error: fmt.Sprintf("profile seconds %q: want 1 to %d", r.URL.Query().Get("seconds"), maxProfileSeconds)})
		return
	}
	if !p.cpu.TryLock() {
		writeJSON(w, http.StatusConflict, ErrorReply{Error: "a CPU profile is already being recorded; wait for it to end"})
		return
	}
	defer p.cpu.Unlock()
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := pprof.StartCPUProfile(w); err != nil {
		writeJSON(w, http.StatusConflict, ErrorReply{Error: "CPU profile: " + err.Error()})
		return
	}
	t := time.NewTimer(time.Duration(secs) * time.Second)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
	pprof.StopCPUProfile()
}
