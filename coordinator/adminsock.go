package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/unixsock"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/policy"
)

// The admin socket speaks HTTP/1.1 with JSON bodies over a Unix socket in
// the data directory. File permissions are its access control.
const (
	adminSocketMode = 0o600
	adminNodes      = "/v1/nodes"
	adminTokens     = "/v1/tokens"
	adminBans       = "/v1/bans"
	adminRoutes     = "/v1/routes"
	adminPolicy     = "/v1/policy"
	adminUILogin    = "/v1/ui/login"
	// adminBase is a placeholder host: the transport always dials the socket.
	adminBase = "http://meshnode-coordinator"
	// adminTimeout bounds one admin request.
	adminTimeout = 30 * time.Second
)

// Admin error codes, beside wire's, so the client can rebuild sentinel errors.
const (
	adminCodeNotFound  = "not_found"
	adminCodeNoURL     = "no_public_url"
	adminCodeAmbiguous = "ambiguous"
	adminCodeRoute     = "route_unknown"
	adminCodeInvalid   = "invalid_policy"
	adminCodeNameTaken = "name_taken"
	adminCodeNoUI      = "no_ui"
)

// adminDialTimeout bounds probing the admin socket; a live coordinator
// accepts at once.
const adminDialTimeout = time.Second

// checkAlone refuses to start when another coordinator answers on the admin
// socket: two coordinators on one data dir would hand out the same
// addresses twice and fight over every node's stream.
func (s *Server) checkAlone() error {
	path := filepath.Join(s.cfg.DataDir, adminSocket)
	if c, err := net.DialTimeout("unix", path, adminDialTimeout); err == nil {
		c.Close()
		return fmt.Errorf("another coordinator is running on data dir %s (its admin socket %s answers); stop it first", s.cfg.DataDir, path)
	}
	return nil
}

// listenAdmin creates the admin socket, replacing a stale one left by a
// crash. The socket is the coordinator's whole admin API, so it is never
// reachable by others, not even for a moment (internal/unixsock), even in a
// data dir that others may enter.
func (s *Server) listenAdmin() (net.Listener, error) {
	path := filepath.Join(s.cfg.DataDir, adminSocket)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale admin socket: %w", err)
	}
	ln, err := unixsock.Listen(path, adminSocketMode, -1)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return ln, nil
}

// serveAdmin serves the admin API on ln until ctx is done.
func (s *Server) serveAdmin(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+adminNodes, func(w http.ResponseWriter, r *http.Request) {
		nodes, err := s.Nodes(r.Context())
		adminReply(w, nodes, err)
	})
	mux.HandleFunc("DELETE "+adminNodes+"/{name}", func(w http.ResponseWriter, r *http.Request) {
		n, err := s.RemoveNode(r.Context(), r.PathValue("name"))
		adminReply(w, n, err)
	})
	mux.HandleFunc("POST "+adminNodes+"/{name}/tags", posted(func(r *http.Request, req tagRequest) (any, error) {
		return s.TagNode(r.Context(), r.PathValue("name"), req.Add, req.Remove)
	}))
	mux.HandleFunc("POST "+adminNodes+"/{name}/rename", posted(func(r *http.Request, req renameRequest) (any, error) {
		return s.RenameNode(r.Context(), r.PathValue("name"), req.Name)
	}))
	mux.HandleFunc("GET "+adminBans, func(w http.ResponseWriter, r *http.Request) {
		list, err := s.Bans(r.Context())
		adminReply(w, list, err)
	})
	// The key or name travels in the body: base64 keys hold '/'.
	mux.HandleFunc("POST "+adminBans+"/allow", posted(func(r *http.Request, req allowRequest) (any, error) {
		return s.AllowNode(r.Context(), req.Node)
	}))
	mux.HandleFunc("GET "+adminRoutes, func(w http.ResponseWriter, r *http.Request) {
		list, err := s.Routes(r.Context())
		adminReply(w, list, err)
	})
	mux.HandleFunc("POST "+adminNodes+"/{name}/routes", posted(func(r *http.Request, req routesRequest) (any, error) {
		return s.updateRoutes(r.Context(), r.PathValue("name"), req.Approve, req.Reject)
	}))
	mux.HandleFunc("GET "+adminTokens, func(w http.ResponseWriter, r *http.Request) {
		toks, err := s.Tokens(r.Context())
		adminReply(w, toks, err)
	})
	mux.HandleFunc("POST "+adminTokens, posted(func(r *http.Request, opts TokenOptions) (any, error) {
		tok, err := s.CreateToken(r.Context(), opts)
		return tokenReply{Token: tok.String()}, err
	}))
	mux.HandleFunc("POST "+adminTokens+"/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		adminReply(w, struct{}{}, s.RevokeToken(r.Context(), r.PathValue("id")))
	})
	mux.HandleFunc("GET "+adminPolicy, func(w http.ResponseWriter, r *http.Request) {
		var version uint64
		if v := r.URL.Query().Get("version"); v != "" {
			var err error
			if version, err = strconv.ParseUint(v, 10, 64); err != nil {
				adminReply(w, nil, fmt.Errorf("version %q is not a number", v))
				return
			}
		}
		info, err := s.Policy(r.Context(), version)
		adminReply(w, info, err)
	})
	// The policy travels as the file's text; a JSON string would escape
	// it past the JSON body limit.
	mux.HandleFunc("PUT "+adminPolicy, func(w http.ResponseWriter, r *http.Request) {
		text, err := io.ReadAll(http.MaxBytesReader(w, r.Body, policy.MaxBytes))
		if err != nil {
			adminReply(w, nil, fmt.Errorf("%w: the policy is larger than %d bytes", ErrInvalidPolicy, policy.MaxBytes))
			return
		}
		if len(text) == 0 {
			adminReply(w, nil, fmt.Errorf("%w: the policy is empty; remove it with DELETE", ErrInvalidPolicy))
			return
		}
		info, err := s.SetPolicy(r.Context(), string(text))
		adminReply(w, info, err)
	})
	mux.HandleFunc("DELETE "+adminPolicy, func(w http.ResponseWriter, r *http.Request) {
		info, err := s.SetPolicy(r.Context(), "")
		adminReply(w, info, err)
	})
	mux.HandleFunc("POST "+adminUILogin, func(w http.ResponseWriter, _ *http.Request) {
		link, err := s.UILoginLink()
		adminReply(w, loginReply{URL: link}, err)
	})
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ErrorLog:          s.errorLog(),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if err := serveHTTP(ctx, hs, ln); err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	return nil
}

type tokenReply struct {
	Token string `json:"token"`
}

type loginReply struct {
	URL string `json:"url"`
}

type tagRequest struct {
	Add    []string `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

type routesRequest struct {
	Approve []netip.Prefix `json:"approve,omitempty"`
	Reject  []netip.Prefix `json:"reject,omitempty"`
}

type renameRequest struct {
	Name string `json:"name"` // the new name
}

type allowRequest struct {
	Node string `json:"node"` // a key or the name the node had
}

// posted serves POSTs whose JSON body is a Req with do's answer.
func posted[Req any](do func(r *http.Request, req Req) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if !decodeAdmin(w, r, &req) {
			return
		}
		v, err := do(r, req)
		adminReply(w, v, err)
	}
}

// decodeAdmin reads a JSON request body into v, or answers bad_request.
func decodeAdmin(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, wire.MaxRequestBody)).Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, wire.ErrorResponse{Code: wire.ErrCodeBadRequest, Error: "malformed JSON: " + err.Error()})
		return false
	}
	return true
}

func adminReply(w http.ResponseWriter, v any, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, v)
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusNotFound, wire.ErrorResponse{Code: adminCodeNotFound, Error: err.Error()})
	case errors.Is(err, ErrNoPublicURL):
		writeJSON(w, http.StatusConflict, wire.ErrorResponse{Code: adminCodeNoURL, Error: err.Error()})
	case errors.Is(err, ErrAmbiguous):
		writeJSON(w, http.StatusConflict, wire.ErrorResponse{Code: adminCodeAmbiguous, Error: err.Error()})
	case errors.Is(err, ErrRouteUnknown):
		writeJSON(w, http.StatusConflict, wire.ErrorResponse{Code: adminCodeRoute, Error: err.Error()})
	case errors.Is(err, ErrInvalidPolicy):
		writeJSON(w, http.StatusBadRequest, wire.ErrorResponse{Code: adminCodeInvalid, Error: err.Error()})
	case errors.Is(err, ErrNameTaken):
		writeJSON(w, http.StatusConflict, wire.ErrorResponse{Code: adminCodeNameTaken, Error: err.Error()})
	case errors.Is(err, ErrNoUI):
		writeJSON(w, http.StatusConflict, wire.ErrorResponse{Code: adminCodeNoUI, Error: err.Error()})
	default:
		writeJSON(w, http.StatusBadRequest, wire.ErrorResponse{Code: wire.ErrCodeBadRequest, Error: err.Error()})
	}
}

// adminClient is Admin over the admin socket.
type adminClient struct {
	hc *http.Client
}

func newAdminClient(sock string) *adminClient {
	var d net.Dialer
	return &adminClient{hc: &http.Client{
		Timeout: adminTimeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", sock)
			},
		},
	}}
}

func (c *adminClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case rawBody:
		rd = strings.NewReader(string(b))
	default:
		j, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, adminBase+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("coordinator admin socket: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e wire.ErrorResponse
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			return fmt.Errorf("coordinator answered %s", resp.Status)
		}
		switch e.Code {
		case adminCodeNotFound:
			return fmt.Errorf("%s: %w", e.Error, ErrNotFound)
		case adminCodeNoURL:
			return ErrNoPublicURL
		case adminCodeAmbiguous:
			return fmt.Errorf("%s: %w", e.Error, ErrAmbiguous)
		case adminCodeRoute:
			return fmt.Errorf("%s: %w", e.Error, ErrRouteUnknown)
		case adminCodeInvalid:
			return invalidPolicyError(e.Error)
		case adminCodeNameTaken:
			return fmt.Errorf("%s: %w", e.Error, ErrNameTaken)
		case adminCodeNoUI:
			return ErrNoUI
		}
		return errors.New(e.Error)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("coordinator admin socket: bad answer: %w", err)
	}
	return nil
}

func (c *adminClient) CreateToken(ctx context.Context, opts TokenOptions) (crypto.Token, error) {
	var r tokenReply
	if err := c.do(ctx, http.MethodPost, adminTokens, opts, &r); err != nil {
		return crypto.Token{}, err
	}
	return crypto.ParseToken(r.Token)
}

func (c *adminClient) Tokens(ctx context.Context) ([]TokenInfo, error) {
	var toks []TokenInfo
	return toks, c.do(ctx, http.MethodGet, adminTokens, nil, &toks)
}

func (c *adminClient) RevokeToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, adminTokens+"/"+url.PathEscape(id)+"/revoke", nil, &struct{}{})
}

func (c *adminClient) Nodes(ctx context.Context) ([]wire.Node, error) {
	var nodes []wire.Node
	return nodes, c.do(ctx, http.MethodGet, adminNodes, nil, &nodes)
}

func (c *adminClient) RemoveNode(ctx context.Context, name string) (wire.Node, error) {
	var n wire.Node
	return n, c.do(ctx, http.MethodDelete, adminNodes+"/"+url.PathEscape(name), nil, &n)
}

func (c *adminClient) TagNode(ctx context.Context, name string, add, remove []string) (wire.Node, error) {
	var n wire.Node
	return n, c.do(ctx, http.MethodPost, adminNodes+"/"+url.PathEscape(name)+"/tags", tagRequest{Add: add, Remove: remove}, &n)
}

func (c *adminClient) RenameNode(ctx context.Context, name, newName string) (wire.Node, error) {
	var n wire.Node
	return n, c.do(ctx, http.MethodPost, adminNodes+"/"+url.PathEscape(name)+"/rename", renameRequest{Name: newName}, &n)
}

func (c *adminClient) Bans(ctx context.Context) ([]Ban, error) {
	var list []Ban
	return list, c.do(ctx, http.MethodGet, adminBans, nil, &list)
}

func (c *adminClient) AllowNode(ctx context.Context, keyOrName string) (Ban, error) {
	var b Ban
	return b, c.do(ctx, http.MethodPost, adminBans+"/allow", allowRequest{Node: keyOrName}, &b)
}

func (c *adminClient) Routes(ctx context.Context) ([]RouteInfo, error) {
	var list []RouteInfo
	return list, c.do(ctx, http.MethodGet, adminRoutes, nil, &list)
}

func (c *adminClient) ApproveRoutes(ctx context.Context, name string, prefixes []netip.Prefix) ([]RouteInfo, error) {
	var list []RouteInfo
	return list, c.do(ctx, http.MethodPost, adminNodes+"/"+url.PathEscape(name)+"/routes", routesRequest{Approve: prefixes}, &list)
}

func (c *adminClient) RejectRoutes(ctx context.Context, name string, prefixes []netip.Prefix) ([]RouteInfo, error) {
	var list []RouteInfo
	return list, c.do(ctx, http.MethodPost, adminNodes+"/"+url.PathEscape(name)+"/routes", routesRequest{Reject: prefixes}, &list)
}

// rawBody is a request body sent as it is, not as JSON.
type rawBody string

// invalidPolicyError rebuilds ErrInvalidPolicy from the coordinator's
// answer, which already starts with its text.
func invalidPolicyError(text string) error {
	return fmt.Errorf("%w%s", ErrInvalidPolicy, strings.TrimPrefix(text, ErrInvalidPolicy.Error()))
}

func (c *adminClient) SetPolicy(ctx context.Context, text string) (PolicyInfo, error) {
	var info PolicyInfo
	if text == "" {
		return info, c.do(ctx, http.MethodDelete, adminPolicy, nil, &info)
	}
	return info, c.do(ctx, http.MethodPut, adminPolicy, rawBody(text), &info)
}

func (c *adminClient) Policy(ctx context.Context, version uint64) (PolicyInfo, error) {
	var info PolicyInfo
	return info, c.do(ctx, http.MethodGet, adminPolicy+"?version="+strconv.FormatUint(version, 10), nil, &info)
}

func (c *adminClient) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// UILoginLink asks the coordinator running on cfg.DataDir for a one-time
// link to its web page, through the admin socket: only who may use the
// socket may log in.
func UILoginLink(ctx context.Context, cfg config.Coordinator) (string, error) {
	sock := filepath.Join(cfg.DataDir, adminSocket)
	c := newAdminClient(sock)
	defer c.Close()
	var r loginReply
	if err := c.do(ctx, http.MethodPost, adminUILogin, nil, &r); err != nil {
		if _, dial := errors.AsType[*net.OpError](err); dial {
			return "", fmt.Errorf("no coordinator answers on data dir %s (%w); the web page's login needs it running", cfg.DataDir, err)
		}
		return "", err
	}
	return r.URL, nil
}
