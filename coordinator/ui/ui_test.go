package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshnode/meshnode/internal/wire"
)

// fakeBackend records the actions it is asked for.
type fakeBackend struct {
	mu      sync.Mutex
	view    View
	removed []string
	policy  *fakePolicy       // nil: none was ever set
	older   map[uint64]string // the texts of the versions before policy
}

func (f *fakeBackend) View(context.Context) (View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.view, nil
}
func (f *fakeBackend) Tokens(context.Context) (any, error) { return []string{"t1"}, nil }
func (f *fakeBackend) CreateToken(context.Context, TokenRequest) (string, error) {
	return "mntok1_x", nil
}
func (f *fakeBackend) RevokeToken(context.Context, string) error { return nil }
func (f *fakeBackend) RemoveNode(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, name)
	return nil
}

func (f *fakeBackend) Routes(context.Context) (any, error) { return []string{}, nil }
func (f *fakeBackend) SetRoutes(context.Context, string, RoutesRequest) error {
	return nil
}

func (f *fakeBackend) SetView(v View) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.view = v
}

// clock is a settable time, in Unix nanoseconds.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

type page struct {
	srv   *Server
	back  *fakeBackend
	clk   *clock
	url   string
	plain *http.Client // follows no redirects, keeps no cookies
}

func newPage(t *testing.T) *page {
	t.Helper()
	back := &fakeBackend{}
	return newPageOn(t, back, back)
}

// newPageOn serves b, whose view and actions fb holds.
func newPageOn(t *testing.T, b Backend, fb *fakeBackend) *page {
	t.Helper()
	p := &page{back: fb, clk: &clock{}}
	p.clk.ns.Store(time.Unix(1_800_000_000, 0).UnixNano())
	p.srv = New(b, Options{Every: 10 * time.Millisecond, Now: p.clk.now})
	hs := httptest.NewServer(p.srv)
	t.Cleanup(hs.Close)
	p.url = hs.URL
	p.plain = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return p
}

// login visits link and returns the session cookie it set, nil when refused.
func (p *page) login(t *testing.T, link string) *http.Cookie {
	t.Helper()
	resp, err := p.plain.Get(p.url + link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == CookieName {
			return c
		}
	}
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("refused login: status %d, want 403", resp.StatusCode)
	}
	return nil
}

func (p *page) do(t *testing.T, method, path string, c *http.Cookie, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	return p.send(t, method, path, "{}", c, hdr)
}

// send is do with body.
func (p *page) send(t *testing.T, method, path, body string, c *http.Cookie, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, p.url+path, strings.NewReader(body))
	if c != nil {
		req.AddCookie(c)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := p.plain.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out) //nolint:errcheck // some answers are lists
	return resp.StatusCode, out
}

func TestLoginLinkWorksOnceWithinItsExpiry(t *testing.T) {
	t.Parallel()
	p := newPage(t)
	link := p.srv.NewLink()
	c := p.login(t, link)
	if c == nil {
		t.Fatal("a fresh link did not log in")
	}
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
		t.Errorf("cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/", c)
	}
	if again := p.login(t, link); again != nil {
		t.Error("a used link logged in again")
	}
	old := p.srv.NewLink()
	p.clk.add(LinkExpiry)
	if p.login(t, old) != nil {
		t.Errorf("a link %v old logged in", LinkExpiry)
	}
	if p.login(t, "/login?t=guess") != nil || p.login(t, "/login") != nil {
		t.Error("an unknown link logged in")
	}
	if code, _ := p.do(t, "GET", "/api/session", c, nil); code != http.StatusOK {
		t.Errorf("session: %d, want 200", code)
	}
	p.clk.add(SessionExpiry)
	if code, _ := p.do(t, "GET", "/api/view", c, nil); code != http.StatusUnauthorized {
		t.Errorf("view after the session's expiry: %d, want 401", code)
	}
}

func TestSessionsAreBounded(t *testing.T) {
	t.Parallel()
	p := newPage(t)
	first := p.login(t, p.srv.NewLink())
	for range MaxSessions {
		p.clk.add(time.Second)
		p.login(t, p.srv.NewLink())
	}
	if code, _ := p.do(t, "GET", "/api/view", first, nil); code != http.StatusUnauthorized {
		t.Errorf("the oldest of %d sessions: %d, want 401 (evicted)", MaxSessions+1, code)
	}
}

func TestActionsNeedCSRFTokenAndOrigin(t *testing.T) {
	t.Parallel()
	p := newPage(t)
	c := p.login(t, p.srv.NewLink())
	_, sess := p.do(t, "GET", "/api/session", c, nil)
	csrf, _ := sess["csrf"].(string)
	if csrf == "" {
		t.Fatalf("no CSRF token in %v", sess)
	}
	origin := p.url
	for _, tc := range []struct {
		name string
		c    *http.Cookie
		hdr  map[string]string
		want int
	}{
		{"no session", nil, map[string]string{"Origin": origin, CSRFHeader: csrf}, http.StatusUnauthorized},
		{"no token", c, map[string]string{"Origin": origin}, http.StatusForbidden},
		{"wrong token", c, map[string]string{"Origin": origin, CSRFHeader: csrf[1:] + "A"}, http.StatusForbidden},
		{"no origin", c, map[string]string{CSRFHeader: csrf}, http.StatusForbidden},
		{"other origin", c, map[string]string{"Origin": "http://evil.example", CSRFHeader: csrf}, http.StatusForbidden},
		{"token and origin", c, map[string]string{"Origin": origin, CSRFHeader: csrf}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := p.do(t, "POST", "/api/nodes/laptop/remove", tc.c, tc.hdr); code != tc.want {
				t.Errorf("remove: %d %v, want %d", code, body, tc.want)
			}
		})
	}
	if got := p.back.removed; len(got) != 1 || got[0] != "laptop" {
		t.Errorf("removed %v, want [laptop] once", got)
	}
}

func TestEventsCarryTheViewAndItsChanges(t *testing.T) {
	t.Parallel()
	p := newPage(t)
	p.back.SetView(View{Nodes: []wire.Node{{Name: "a"}, {Name: "b"}}})
	sc, resp := p.events(t)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	next := func() View { t.Helper(); return nextView(t, sc) }
	if v := next(); len(v.Nodes) != 2 || len(v.Paths) != 0 {
		t.Fatalf("first view %+v", v)
	}
	p.back.SetView(View{Nodes: []wire.Node{{Name: "a"}, {Name: "b"}}, Paths: []Path{{A: "a", B: "b", Kind: "direct_udp"}}})
	if v := next(); len(v.Paths) != 1 || v.Paths[0].Kind != "direct_udp" {
		t.Fatalf("changed view %+v", v)
	}
}

// events logs in and opens the event stream.
func (p *page) events(t *testing.T) (*bufio.Scanner, *http.Response) {
	t.Helper()
	c := p.login(t, p.srv.NewLink())
	req, _ := http.NewRequest("GET", p.url+"/api/events", nil)
	req.AddCookie(c)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	return sc, resp
}

// nextView reads the stream until its next view.
func nextView(t *testing.T, sc *bufio.Scanner) View {
	t.Helper()
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var v View
			if err := json.Unmarshal([]byte(d), &v); err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("stream ended: %v", sc.Err())
	return View{}
}

func TestPageLoadsNothingFromElsewhere(t *testing.T) {
	t.Parallel()
	p := newPage(t)
	resp, err := http.Get(p.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if rp := resp.Header.Get("Referrer-Policy"); rp != "no-referrer" {
		t.Errorf("Referrer-Policy %q: the login link would leak", rp)
	}
	for _, f := range []string{"/static/d3.min.js", "/static/app.js", "/static/d3-LICENSE"} {
		r, err := http.Get(p.url + f)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", f, r.Status)
		}
	}
}
