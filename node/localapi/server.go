package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/meshnode/meshnode/internal/unixsock"
)

// Backend is the running node as the socket sees it.
type Backend interface {
	Status() Status
	Ping(ctx context.Context, peer string) (PingReply, error)
	Down()
	// SetPrefs changes the user's choices (the exit node) and returns
	// them; they last until the node stops.
	SetPrefs(req PrefsRequest) (Prefs, error)
}

// Socket modes: root only, or root and one group.
const (
	modeOwner = 0o600
	modeGroup = 0o660
)

// pingTimeout bounds one user ping.
const pingTimeout = 3 * time.Second

// maxBody bounds request bodies.
const maxBody = 4 << 10

// Listen opens the control socket at path, usable by its owner only or,
// with group, by that group too, from the moment it appears (see
// internal/unixsock). A stale socket from a crashed run is replaced; a live
// one (another node running) is an error.
func Listen(path, group string) (net.Listener, error) {
	mode, gid := os.FileMode(modeOwner), -1
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("socket_group %q: %w", group, err)
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return nil, fmt.Errorf("socket_group %q: group ID %q: %w", group, g.Gid, err)
		}
		mode = modeGroup
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket directory %s: %w", filepath.Dir(path), err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := unixsock.Listen(path, mode, gid)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return ln, nil
}

// removeStale removes a socket at path that nobody listens on. Anything
// else there is left alone: a live socket belongs to another node, and a
// path that is not a socket (a mistyped --socket) is not ours to delete.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s: it exists and is not a socket; move it away, or set --socket", path)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("control socket %s is in use: is another meshnode running? stop it, or set --socket", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket %s: remove the stale socket: %w", path, err)
	}
	return nil
}

// Serve answers on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, b Backend, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, b.Status())
	})
	mux.HandleFunc("POST "+PathPing, func(w http.ResponseWriter, r *http.Request) {
		var req PingRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil || req.Peer == "" {
			writeJSON(w, http.StatusBadRequest, ErrorReply{Error: "want {\"peer\": NAME|IP|KEY}"})
			return
		}
		pctx, cancel := context.WithTimeout(r.Context(), pingTimeout)
		defer cancel()
		rep, err := b.Ping(pctx, req.Peer)
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %v", pingTimeout)
		}
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, ErrorReply{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("POST "+PathPrefs, func(w http.ResponseWriter, r *http.Request) {
		var req PrefsRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, ErrorReply{Error: "want {\"exit_node\": NAME, \"exit_node_allow_lan_access\": BOOL}"})
			return
		}
		p, err := b.SetPrefs(req)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, ErrorReply{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, p)
	})
	var prof profiler
	mux.HandleFunc("GET "+PathProfile, prof.serve)
	mux.HandleFunc("POST "+PathDown, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, struct{}{})
		b.Down()
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	log.Error("control socket stopped", "err", err)
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
