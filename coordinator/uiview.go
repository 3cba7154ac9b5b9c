package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/meshnode/meshnode/coordinator/store"
	"github.com/meshnode/meshnode/coordinator/ui"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// ErrNoUI means a login link was asked for while the web page is off.
var ErrNoUI = errors.New("the coordinator serves no web page: set ui_listen (e.g. 127.0.0.1:9481) and restart it")

// ServeUI serves the web page (package ui) over plain HTTP on ln (the
// ui_listen address) until ctx is done. Login links (UILoginLink) name
// ln's address.
func (s *Server) ServeUI(ctx context.Context, ln net.Listener) error {
	page := ui.New(uiBackend{s}, ui.Options{Logger: s.log.With("part", "ui")})
	s.mu.Lock()
	s.ui, s.uiAddr = page, ln.Addr()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.ui, s.uiAddr = nil, nil
		s.mu.Unlock()
	}()
	hs := &http.Server{
		Handler:           page,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          s.errorLog(),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if err := serveHTTP(ctx, hs, ln); err != nil {
		return fmt.Errorf("web page on %v: %w", ln.Addr(), err)
	}
	return nil
}

// UILoginLink returns a one-time login link to the web page, valid for
// ui.LinkExpiry.
func (s *Server) UILoginLink() (string, error) {
	s.mu.Lock()
	page, addr := s.ui, s.uiAddr
	s.mu.Unlock()
	if page == nil {
		return "", ErrNoUI
	}
	return "http://" + addr.String() + page.NewLink(), nil
}

// uiBackend gives the page the coordinator's own admin functions.
type uiBackend struct{ s *Server }

// View is the mesh as this coordinator knows it: the path reports and
// software of the nodes it holds, from memory, and on a shared database
// those the other coordinators recorded (pathshare.go).
func (b uiBackend) View(ctx context.Context) (ui.View, error) {
	nodes := b.s.hub.list()
	names := make(map[crypto.PublicKey]string, len(nodes))
	online := make(map[crypto.PublicKey]bool, len(nodes))
	for _, n := range nodes {
		names[n.PublicKey], online[n.PublicKey] = n.Name, n.Online
	}
	reports, changes := b.s.paths.snapshot(), b.s.paths.history()
	// What each node reports on its stream, else what it last reported.
	software := make(map[crypto.PublicKey]wire.Software)
	for _, n := range nodes {
		if sess := b.s.hub.session(n.PublicKey); sess != nil && sess.reportedSoftware() != (wire.Software{}) {
			software[n.PublicKey] = sess.reportedSoftware()
		} else if sw, ok := b.s.software.get(n.PublicKey); ok {
			software[n.PublicKey] = sw
		}
	}
	if b.s.shared {
		var err error
		if reports, changes, err = b.s.sharedPaths(ctx, reports, software); err != nil {
			return ui.View{}, err
		}
	}
	pairs := pickPairs(reports)
	v := ui.View{Nodes: nodes, Paths: make([]ui.Path, 0, len(pairs)), Software: make(map[string]wire.Software)}
	for key, sw := range software {
		if names[key] != "" && sw != (wire.Software{}) {
			v.Software[names[key]] = sw
		}
	}
	for k, p := range pairs {
		e := p.entry
		// A report outlives its peer's stream for up to a report's gap:
		// only pairs of online nodes have a path.
		if e.Kind == wire.PathNone || !online[k[0]] || !online[k[1]] {
			continue
		}
		path := ui.Path{A: names[k[0]], B: names[k[1]], Kind: e.Kind.String(), RTTMillis: float64(e.RTT) / float64(time.Millisecond), Reported: p.at}
		if e.Kind.Relayed() {
			path.Why = e.Why.String()
			path.Via = "coordinator"
			if e.Via == wire.ViaRelayNode && p.relay != nil {
				path.Via = names[*p.relay]
			}
		}
		v.Paths = append(v.Paths, path)
	}
	for _, c := range changes {
		if names[c.From] != "" && names[c.Peer] != "" {
			v.Changes = append(v.Changes, ui.PathChange{At: c.At, Node: names[c.From], Peer: names[c.Peer], Was: c.Was.String(), Now: c.Now.String()})
		}
	}
	return v, nil
}

// sharedPaths adds to local, the reports this coordinator holds, those
// the others recorded for nodes it doesn't hold, and their software to
// software; the changes are the recorded ones, every coordinator's.
func (s *Server) sharedPaths(ctx context.Context, local []reportOf, software map[crypto.PublicKey]wire.Software) ([]reportOf, []store.PathChange, error) {
	stored, changes, err := s.store.Paths(ctx)
	if err != nil {
		return nil, nil, err
	}
	mine := make(map[crypto.PublicKey]bool, len(local))
	for _, r := range local {
		mine[r.key] = true
	}
	for _, r := range stored {
		if mine[r.Key] || s.hub.session(r.Key) != nil {
			continue
		}
		local = append(local, reportOf{key: r.Key, np: nodePaths{at: r.At, relay: r.Relay, entries: r.Entries}})
		if r.Software != (wire.Software{}) {
			software[r.Key] = r.Software
		}
	}
	return local, changes, nil
}

func (b uiBackend) Tokens(ctx context.Context) (any, error) { return b.s.Tokens(ctx) }

func (b uiBackend) CreateToken(ctx context.Context, req ui.TokenRequest) (string, error) {
	d, err := req.Duration()
	if err != nil {
		return "", err
	}
	tok, err := b.s.CreateToken(ctx, TokenOptions{Reusable: req.Reusable, Expiry: d, Tags: req.Tags})
	if err != nil {
		return "", err
	}
	return tok.String(), nil
}

func (b uiBackend) RevokeToken(ctx context.Context, id string) error { return b.s.RevokeToken(ctx, id) }

func (b uiBackend) RemoveNode(ctx context.Context, name string) error {
	_, err := b.s.RemoveNode(ctx, name)
	return err
}

func (b uiBackend) Routes(ctx context.Context) (any, error) { return b.s.Routes(ctx) }

func (b uiBackend) SetRoutes(ctx context.Context, name string, req ui.RoutesRequest) error {
	_, err := b.s.updateRoutes(ctx, name, req.Approve, req.Reject)
	return err
}

func (b uiBackend) Policy(ctx context.Context, version uint64) (any, error) {
	info, err := b.s.Policy(ctx, version)
	switch {
	case errors.Is(err, ErrNotFound) && version != 0:
		return nil, fmt.Errorf("there is no access policy version %d", version)
	case errors.Is(err, ErrNotFound):
		return nil, nil
	}
	return info, err
}

func (b uiBackend) CheckPolicy(_ context.Context, text string) ui.PolicyCheck {
	pol, warnings, err := b.s.CheckPolicy(text)
	if err != nil {
		return ui.PolicyCheck{Errors: policyErrors(err)}
	}
	return ui.PolicyCheck{Valid: true, Rules: pol.Rules(), Warnings: warnings}
}

func (b uiBackend) AskPolicy(_ context.Context, src, target string) (string, error) {
	return b.s.AskPolicy(src, target)
}

func (b uiBackend) AskDraftPolicy(_ context.Context, text, src, target string) (string, error) {
	return b.s.AskDraftPolicy(text, src, target)
}

func (b uiBackend) SetPolicy(ctx context.Context, text string) (any, error) {
	return b.s.SetPolicy(ctx, text)
}

// policyErrors lists err's problems one by one: the leaves of the joined
// errors checkPolicy returns, each a policy.Error naming its line and
// column, without the ErrInvalidPolicy that heads them.
func policyErrors(err error) []string {
	if err == ErrInvalidPolicy {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, policyErrors(e)...)
		}
		return out
	}
	return []string{err.Error()}
}
