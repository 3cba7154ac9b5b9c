// Package ui is the coordinator's web page: the mesh's topology, live, and
// its nodes and join tokens, for the administrator. It serves the page and
// its API on the ui_listen address, behind one-time login links
// (auth.go); the coordinator provides what it shows and does (Backend).
package ui

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/meshnode/meshnode/internal/wire"
)

//go:embed static
var static embed.FS

// Backend is what the page shows and does: the coordinator's own admin
// functions.
type Backend interface {
	View(ctx context.Context) (View, error)
	// Tokens lists the join tokens, without their secrets, as JSON with
	// the fields the page shows (id, created, expires, reusable, uses,
	// revoked, tags).
	Tokens(ctx context.Context) (any, error)
	CreateToken(ctx context.Context, req TokenRequest) (string, error)
	RevokeToken(ctx context.Context, id string) error
	RemoveNode(ctx context.Context, name string) error
	// Routes lists every node's advertised and approved routes, as JSON
	// (node, prefix, advertised, approved, primary, online).
	Routes(ctx context.Context) (any, error)
	// SetRoutes approves, then withdraws approval of, routes of the named
	// node.
	SetRoutes(ctx context.Context, name string, req RoutesRequest) error
	// Policy is a version of the access policy as JSON (version, text as
	// set, created), the one in force for 0; null when none was ever set.
	Policy(ctx context.Context, version uint64) (any, error)
	// CheckPolicy checks text as SetPolicy would, without setting it.
	CheckPolicy(ctx context.Context, text string) PolicyCheck
	// SetPolicy checks text and makes it the access policy, as the admin
	// socket's set does ("" removes the policy, as 'meshnode policy
	// clear'); it returns the new version as Policy does, with its
	// warnings.
	SetPolicy(ctx context.Context, text string) (any, error)
	// AskPolicy answers whether node src may reach target
	// (DST[:PORT][/PROTO]) under the policy in force, as one line, as
	// 'meshnode policy test' does.
	AskPolicy(ctx context.Context, src, target string) (string, error)
	// AskDraftPolicy answers as AskPolicy does, under the policy text
	// (checked as CheckPolicy does) instead of the one in force.
	AskDraftPolicy(ctx context.Context, text, src, target string) (string, error)
}

// View is the mesh as the page draws it.
type View struct {
	Nodes   []wire.Node  `json:"nodes"`
	Paths   []Path       `json:"paths"`
	Changes []PathChange `json:"changes"` // the latest, oldest first
	// Software is what each online node (by name) reported running.
	Software map[string]wire.Software `json:"software"`
}

// PathChange is a node's path to a peer changing kind between two of its
// reports.
type PathChange struct {
	At   time.Time `json:"at"`
	Node string    `json:"node"`
	Peer string    `json:"peer"`
	Was  string    `json:"was"` // wire.PathKind's names
	Now  string    `json:"now"`
}

// RoutesRequest is the page's approve or reject of a node's routes.
type RoutesRequest struct {
	Approve []netip.Prefix `json:"approve,omitempty"`
	Reject  []netip.Prefix `json:"reject,omitempty"`
}

// Path is how a pair of online nodes talks, from the newer of their two
// path reports. Pairs without a path are left out.
type Path struct {
	A    string `json:"a"` // node names
	B    string `json:"b"`
	Kind string `json:"kind"` // wire.PathKind's name
	// Via is the relay of a relayed path: "coordinator" or the relay
	// node's name; Why says why it is relayed (wire.RelayWhy's name).
	Via       string    `json:"via,omitempty"`
	Why       string    `json:"why,omitempty"`
	RTTMillis float64   `json:"rtt_ms,omitempty"` // 0: not measured
	Reported  time.Time `json:"reported"`
}

// TokenRequest is the page's "create token" form.
type TokenRequest struct {
	Reusable bool     `json:"reusable"`
	Expiry   string   `json:"expiry"` // a Go duration; "" is the coordinator's default
	Tags     []string `json:"tags,omitempty"`
}

// Duration parses Expiry.
func (r TokenRequest) Duration() (time.Duration, error) {
	if r.Expiry == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(r.Expiry)
	if err != nil {
		return 0, errors.New("expiry " + r.Expiry + " is not a duration such as 24h or 30m")
	}
	return d, nil
}

// Options tune a Server.
type Options struct {
	Logger *slog.Logger // nil discards
	// Every spaces the checks for a changed view on each event stream;
	// 0 is DefaultEvery.
	Every time.Duration
	Now   func() time.Time // nil is time.Now
}

// DefaultEvery: nodes report path changes within wire.PathReportGap (5 s),
// so a second's delay on the page is small beside it.
const DefaultEvery = time.Second

// maxBody bounds an action's JSON body.
const maxBody = 16 << 10

// Server serves the page.
type Server struct {
	b       Backend
	log     *slog.Logger
	every   time.Duration
	auth    *auth
	streams chan struct{} // one slot per open event stream
	feed    *feed
	mux     *http.ServeMux
}

// New returns the page's server for b.
func New(b Backend, opts Options) *Server {
	s := &Server{b: b, log: opts.Logger, every: opts.Every, streams: make(chan struct{}, 2*MaxSessions)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.every <= 0 {
		s.every = DefaultEvery
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	s.auth = newAuth(now)
	s.feed = newFeed(b.View, s.every, s.log)
	s.routes()
	return s
}

// NewLink returns a one-time login link's path and query (/login?t=...),
// valid for LinkExpiry.
func (s *Server) NewLink() string { return "/login?t=" + s.auth.newLink() }

func (s *Server) routes() {
	sub, _ := fs.Sub(static, "static")
	s.mux = http.NewServeMux()
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(sub)))
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, sub, "index.html")
	})
	s.mux.HandleFunc("GET /login", s.login)
	s.mux.HandleFunc("GET /api/session", s.read(func(_ *http.Request, ss session) (any, error) {
		return map[string]string{"csrf": ss.csrf}, nil
	}))
	s.mux.HandleFunc("GET /api/view", s.read(func(r *http.Request, _ session) (any, error) { return s.b.View(r.Context()) }))
	s.mux.HandleFunc("GET /api/tokens", s.read(func(r *http.Request, _ session) (any, error) { return s.b.Tokens(r.Context()) }))
	s.mux.HandleFunc("GET /api/events", s.events)
	s.mux.HandleFunc("POST /api/logout", s.act(func(r *http.Request) (any, error) {
		s.auth.logout(r)
		return struct{}{}, nil
	}))
	s.mux.HandleFunc("POST /api/tokens", s.act(func(r *http.Request) (any, error) {
		var req TokenRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		tok, err := s.b.CreateToken(r.Context(), req)
		return map[string]string{"token": tok}, err
	}))
	s.mux.HandleFunc("POST /api/tokens/{id}/revoke", s.act(func(r *http.Request) (any, error) {
		return struct{}{}, s.b.RevokeToken(r.Context(), r.PathValue("id"))
	}))
	s.mux.HandleFunc("GET /api/routes", s.read(func(r *http.Request, _ session) (any, error) { return s.b.Routes(r.Context()) }))
	s.mux.HandleFunc("POST /api/nodes/{name}/routes", s.act(func(r *http.Request) (any, error) {
		var req RoutesRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		return struct{}{}, s.b.SetRoutes(r.Context(), r.PathValue("name"), req)
	}))
	s.mux.HandleFunc("POST /api/nodes/{name}/remove", s.act(func(r *http.Request) (any, error) {
		return struct{}{}, s.b.RemoveNode(r.Context(), r.PathValue("name"))
	}))
	s.policyRoutes()
}

// ServeHTTP serves the page, with headers that keep it from being framed,
// from loading anything not its own, and from leaking the login link.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

// login trades a one-time link for a session cookie.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	cookie, ss, ok := s.auth.login(r.URL.Query().Get("t"))
	if !ok {
		http.Error(w, "This login link is not valid: it was used already, it expired, or it is not one. Run 'meshnode admin login' on the coordinator's host for a new one.", http.StatusForbidden)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: cookie, Path: "/", Expires: ss.expires,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	s.log.Info("administrator logged in to the web page", "from", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// read serves a GET that needs a session.
func (s *Server) read(do func(*http.Request, session) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss, ok := s.auth.session(r)
		if !ok {
			reply(w, http.StatusUnauthorized, nil, errors.New("not logged in: run 'meshnode admin login' on the coordinator's host"))
			return
		}
		v, err := do(r, ss)
		reply(w, http.StatusBadRequest, v, err)
	}
}

// act serves an action: it needs a session, the session's CSRF token and
// a request from this page's origin.
func (s *Server) act(do func(*http.Request) (any, error)) http.HandlerFunc {
	return s.actW(func(_ http.ResponseWriter, r *http.Request) (any, error) { return do(r) })
}

// actW is act for an action that bounds its body with http.MaxBytesReader,
// which needs the response: a body over the bound is refused with 413.
func (s *Server) actW(do func(http.ResponseWriter, *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss, ok := s.auth.session(r)
		switch {
		case !ok:
			reply(w, http.StatusUnauthorized, nil, errors.New("not logged in: run 'meshnode admin login' on the coordinator's host"))
			return
		case !sameOrigin(r) || !validCSRF(r, ss):
			s.log.Warn("web page action refused: wrong CSRF token or origin", "path", r.URL.Path, "origin", r.Header.Get("Origin"))
			reply(w, http.StatusForbidden, nil, errors.New("refused: the request lacks this session's CSRF token or comes from another origin"))
			return
		}
		v, err := do(w, r)
		status := http.StatusBadRequest
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		reply(w, status, v, err)
	}
}

// decode reads an action's JSON body into v.
func decode(r *http.Request, v any) error {
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody)).Decode(v); err != nil {
		return errors.New("malformed JSON: " + err.Error())
	}
	return nil
}

// reply writes v as JSON, or err with status.
func reply(w http.ResponseWriter, status int, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(status)
		v = map[string]string{"error": err.Error()}
	}
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the browser went away
}
