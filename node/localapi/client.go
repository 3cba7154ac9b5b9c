package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
)

// Client talks to a node's control socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client of the socket at path.
func NewClient(path string) *Client {
	return &Client{path: path, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// Status fetches the node's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, http.MethodGet, PathStatus, nil, &s)
}

// Ping asks for one discovery ping to peer.
func (c *Client) Ping(ctx context.Context, peer string) (PingReply, error) {
	var r PingReply
	return r, c.do(ctx, http.MethodPost, PathPing, PingRequest{Peer: peer}, &r)
}

// SetPrefs changes the node's choices (nil fields stay) and returns them.
func (c *Client) SetPrefs(ctx context.Context, req PrefsRequest) (Prefs, error) {
	var p Prefs
	return p, c.do(ctx, http.MethodPost, PathPrefs, req, &p)
}

// Down asks the node to leave and exit.
func (c *Client) Down(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, PathDown, nil, nil)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request to %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("control socket %s: bad answer to %s: %w", c.path, path, err)
	}
	return nil
}

// send makes one request and returns the node's answer when it is 200 OK;
// otherwise the error says why.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://meshnode"+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.explain(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, refused(resp)
	}
	return resp, nil
}

// refused is the node's reason for a failed request; an answer that is not
// an ErrorReply (a node too old for the request) is shown as it came.
func refused(resp *http.Response) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("node answered HTTP %d; reading why: %w", resp.StatusCode, err)
	}
	var er ErrorReply
	if json.Unmarshal(b, &er) == nil && er.Error != "" {
		return errors.New(er.Error)
	}
	return fmt.Errorf("node answered HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
}

// explain turns a dial failure into advice.
func (c *Client) explain(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("no meshnode running at %s: start it with 'meshnode up', or pass --socket", c.path)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EACCES):
		return fmt.Errorf("control socket %s: permission denied: run as root, or set socket_group on the node and join that group", c.path)
	}
	return fmt.Errorf("control socket %s: %w", c.path, err)
}

// Profile writes the node's Go profile of kind (cpu, recorded for
// seconds; or a snapshot: heap, allocs, goroutine, mutex, block) to w,
// in pprof's format.
func (c *Client) Profile(ctx context.Context, kind string, seconds int, w io.Writer) error {
	q := url.Values{"kind": {kind}, "seconds": {strconv.Itoa(seconds)}}
	resp, err := c.send(ctx, http.MethodGet, PathProfile+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("control socket %s: reading the profile: %w", c.path, err)
	}
	return nil
}
