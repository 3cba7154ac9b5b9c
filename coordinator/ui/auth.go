package ui

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// Login without a password database: the administrator, on the
// coordinator's host, asks the admin socket for a one-time link (file
// permissions are its access control). Visiting the link trades it for a
// session cookie. Every action also needs the session's CSRF token.
const (
	// LinkExpiry bounds how long a login link works: long enough to paste
	// it into a browser, short enough that one left in a terminal's
	// scrollback soon stops working.
	LinkExpiry = 5 * time.Minute
	// SessionExpiry is a session's life from its login.
	SessionExpiry = 12 * time.Hour
	// MaxLinks bounds the links not yet used, MaxSessions the live
	// sessions: the oldest goes when a new one needs its room.
	MaxLinks    = 16
	MaxSessions = 16
	// secretLen is the random bytes of a link, session or CSRF token.
	secretLen = 32
	// CookieName is the session cookie; CSRFHeader carries the session's
	// CSRF token on every action.
	CookieName = "meshnode_session"
	CSRFHeader = "X-CSRF-Token"
)

// session is one logged-in browser.
type session struct {
	csrf    string
	expires time.Time
}

// auth holds the login links and sessions. Its lock is a leaf.
type auth struct {
	now      func() time.Time
	mu       sync.Mutex
	links    map[string]time.Time // link secret → expiry
	sessions map[string]session   // cookie secret → session
}

func newAuth(now func() time.Time) *auth {
	return &auth{now: now, links: make(map[string]time.Time), sessions: make(map[string]session)}
}

func secret() string {
	b := make([]byte, secretLen)
	rand.Read(b) //nolint:errcheck // crypto/rand never fails (Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newLink returns a fresh one-time link secret.
func (a *auth) newLink() string {
	t := secret()
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	expireOld(a.links, now, func(exp time.Time) time.Time { return exp })
	dropOldest(a.links, MaxLinks-1, func(exp time.Time) time.Time { return exp })
	a.links[t] = now.Add(LinkExpiry)
	return t
}

// login spends a link: a valid one, once, starts a session.
func (a *auth) login(link string) (cookie string, s session, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	exp, found := a.links[link]
	delete(a.links, link)
	if !found || !now.Before(exp) {
		return "", session{}, false
	}
	expireOld(a.sessions, now, func(s session) time.Time { return s.expires })
	dropOldest(a.sessions, MaxSessions-1, func(s session) time.Time { return s.expires })
	cookie = secret()
	s = session{csrf: secret(), expires: now.Add(SessionExpiry)}
	a.sessions[cookie] = s
	return cookie, s, true
}

// session returns the live session of r's cookie.
func (a *auth) session(r *http.Request) (session, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return session{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[c.Value]
	if !ok || !a.now().Before(s.expires) {
		delete(a.sessions, c.Value)
		return session{}, false
	}
	return s, true
}

// logout ends r's session.
func (a *auth) logout(r *http.Request) {
	if c, err := r.Cookie(CookieName); err == nil {
		a.mu.Lock()
		delete(a.sessions, c.Value)
		a.mu.Unlock()
	}
}

// validCSRF compares r's CSRF header with the session's in constant time.
func validCSRF(r *http.Request, s session) bool {
	got := r.Header.Get(CSRFHeader)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// sameOrigin requires the Origin header browsers send on every POST to be
// this page's own: a page elsewhere can't act even with a stolen token.
func sameOrigin(r *http.Request) bool {
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	o := r.Header.Get("Origin")
	return o != "" && o == scheme+r.Host
}

func expireOld[V any](m map[string]V, now time.Time, exp func(V) time.Time) {
	for k, v := range m {
		if !now.Before(exp(v)) {
			delete(m, k)
		}
	}
}

// dropOldest removes the entries expiring first until m holds at most n.
func dropOldest[V any](m map[string]V, n int, exp func(V) time.Time) {
	for len(m) > n {
		var oldest string
		var at time.Time
		for k, v := range m {
			if oldest == "" || exp(v).Before(at) {
				oldest, at = k, exp(v)
			}
		}
		delete(m, oldest)
	}
}
