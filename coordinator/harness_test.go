package coordinator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/meshnode/meshnode/internal/wait"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/metricvalue"
	"github.com/meshnode/meshnode/internal/wire"
)

// Polling: generous deadlines for -race on a loaded machine.
const (
	waitFor   = 15 * time.Second
	pollEvery = 20 * time.Millisecond
)

// eventually polls cond until it holds or waitFor passes.
func eventually(t testing.TB, cond func() bool, format string, args ...any) {
	t.Helper()
	wait.For(t, waitFor, fmt.Sprintf(format, args...), cond)
}

func testConfig(t testing.TB) config.Coordinator {
	cfg := config.DefaultCoordinator()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.STUNListen = "127.0.0.1:0"
	cfg.MetricsListen = "127.0.0.1:0"
	cfg.UIListen = "127.0.0.1:0"
	return cfg
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// harness is a coordinator serving HTTPS on a loopback port.
type harness struct {
	t      testing.TB
	cfg    config.Coordinator
	srv    *coordinator.Server
	reg    *prometheus.Registry
	url    string
	client *http.Client
	stop   func()
}

// start serves a coordinator on cfg.DataDir until the test ends or h.stop;
// each tune runs on the server before it serves.
func start(t testing.TB, cfg config.Coordinator, tune ...func(*coordinator.Server)) *harness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = "https://" + ln.Addr().String()
	}
	reg := prometheus.NewRegistry()
	srv, err := coordinator.New(coordinator.Options{Config: cfg, Logger: testLogger(t), Registry: reg})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	for _, f := range tune {
		f(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	h := &harness{t: t, cfg: cfg, srv: srv, reg: reg, url: "https://" + ln.Addr().String(), client: pinnedClient(t, srv.Fingerprint())}
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			h.client.CloseIdleConnections()
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if err := srv.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

// pinnedClient trusts only the certificate with pin, as nodes do.
func pinnedClient(t testing.TB, pin string) *http.Client {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: crypto.PinnedTLSConfig(pin)}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func (h *harness) token(opts coordinator.TokenOptions) string {
	h.t.Helper()
	tok, err := h.srv.CreateToken(context.Background(), opts)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok.String()
}

// post sends body to the register endpoint and decodes the answer.
func (h *harness) post(body []byte) (int, wire.RegisterResponse, wire.ErrorResponse, error) {
	var ok wire.RegisterResponse
	var fail wire.ErrorResponse
	resp, err := h.client.Post(h.url+wire.PathRegister, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, ok, fail, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		err = json.NewDecoder(resp.Body).Decode(&ok)
	} else {
		err = json.NewDecoder(resp.Body).Decode(&fail)
	}
	return resp.StatusCode, ok, fail, err
}

// challenge fetches a registration challenge.
func (h *harness) challenge() wire.RegisterChallenge {
	h.t.Helper()
	var ch wire.RegisterChallenge
	resp, err := h.client.Get(h.url + wire.PathRegisterChallenge)
	if err != nil {
		h.t.Fatalf("registration challenge: %v", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&ch); err != nil || resp.StatusCode != http.StatusOK {
		h.t.Fatalf("registration challenge: %s, %v", resp.Status, err)
	}
	return ch
}

// request is a registration of priv's key that proves it, as a node sends.
func (h *harness) request(token string, priv crypto.PrivateKey, name string) wire.RegisterRequest {
	h.t.Helper()
	ch := h.challenge()
	proof, err := crypto.Proof(priv, ch.CoordinatorKey, wire.RegisterProofLabel, ch.Challenge)
	if err != nil {
		h.t.Fatal(err)
	}
	return wire.RegisterRequest{Token: token, PublicKey: priv.Public(), Name: name, Challenge: ch.Challenge, Proof: proof}
}

func (h *harness) register(token string, priv crypto.PrivateKey, name string) (int, wire.RegisterResponse, wire.ErrorResponse) {
	h.t.Helper()
	body, _ := json.Marshal(h.request(token, priv, name))
	status, ok, fail, err := h.post(body)
	if err != nil {
		h.t.Fatalf("register %s: %v", name, err)
	}
	return status, ok, fail
}

// metric returns a metric's value by name and label, 0 if absent.
func (h *harness) metric(name, label, value string) float64 {
	h.t.Helper()
	v, err := metricvalue.Of(h.reg, name, label, value)
	if err != nil {
		h.t.Fatal(err)
	}
	return v
}

// node is a test node: a key and, once registered, its registration.
type node struct {
	t    testing.TB
	h    *harness
	priv crypto.PrivateKey
	reg  wire.RegisterResponse
	// holds is the map the node says it holds when it dials (nil:
	// none), and held that map's peers, which a resumed welcome updates.
	holds *wire.MapVersion
	held  map[crypto.PublicKey]wire.Node
}

func newNode(t testing.TB, h *harness) *node {
	t.Helper()
	priv, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &node{t: t, h: h, priv: priv}
}

func (n *node) key() crypto.PublicKey { return n.priv.Public() }

// join registers the node with token and fails the test otherwise.
func (n *node) join(token, name string) *node {
	n.t.Helper()
	status, ok, fail := n.h.register(token, n.priv, name)
	if status != http.StatusOK {
		n.t.Fatalf("register %s: %d %s: %s", name, status, fail.Code, fail.Error)
	}
	n.reg = ok
	return n
}

// stream is a node's live stream with the map it has assembled.
type stream struct {
	key     crypto.PublicKey
	srv     *coordinator.Server
	conn    *websocket.Conn
	welcome wire.StreamMsg
	cancel  context.CancelFunc
	done    chan struct{}
	reading chan struct{} // closed when the stream starts reading
	updates chan struct{} // capacity 1: signalled after each message

	mu    sync.Mutex
	peers map[crypto.PublicKey]wire.Node
	// relays is every relay address the stream was offered per peer, in
	// the welcome or a delta.
	relays map[crypto.PublicKey][]string
	// upserts counts the deltas that carried each peer.
	upserts map[crypto.PublicKey]int
	punches []wire.StreamMsg
	// staleCues counts cues whose candidates are an older list than the
	// map's at the time (one the map has since replaced): a node takes a
	// cue's list as the peer's. A cue may carry a newer list than the map
	// (a report applied but not yet pushed).
	staleCues int
	// lists is every candidate list the map held for each peer, oldest
	// first.
	lists   map[crypto.PublicKey][][]wire.Endpoint
	final   *wire.StreamMsg // an error message from the coordinator
	version uint64
	// self is the node's own record, from the welcome and later deltas.
	self wire.Node
	// filter is the node's access filter, from the welcome and later
	// deltas (nil: no policy).
	filter *wire.Filter
	// pairs are the relay pairs last received (a relay node's).
	pairs *wire.RelayPairs
	// coordinators are the mesh's coordinators last received.
	coordinators []crypto.Coordinator
	// meshRelay is the mesh's relay, from the welcome and later deltas.
	meshRelay *wire.MeshRelay
}

// dial opens the stream and answers the challenge with proof (nil: the
// correct one). It returns the first message after auth and, for a
// welcome, the running stream.
func (n *node) dial(proof func(challenge []byte) []byte) (wire.StreamMsg, *stream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	url := "wss" + strings.TrimPrefix(n.h.url, "https") + wire.PathStream
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: n.h.client})
	if err != nil {
		cancel()
		return wire.StreamMsg{}, nil, err
	}
	fail := func(err error) (wire.StreamMsg, *stream, error) {
		c.CloseNow()
		cancel()
		return wire.StreamMsg{}, nil, err
	}
	var ch wire.StreamMsg
	if err := readJSON(ctx, c, &ch); err != nil || ch.Type != wire.MsgChallenge || len(ch.Challenge) != 32 {
		return fail(fmt.Errorf("challenge: %+v, %v", ch, err))
	}
	var p []byte
	if proof != nil {
		p = proof(ch.Challenge)
	} else if p, err = crypto.Proof(n.priv, n.reg.CoordinatorKey, wire.ProofLabel, ch.Challenge); err != nil {
		return fail(err)
	}
	key := n.key()
	if err := writeJSON(ctx, c, wire.StreamMsg{Type: wire.MsgAuth, PublicKey: &key, Proof: p, Holds: n.holds}); err != nil {
		return fail(err)
	}
	var first wire.StreamMsg
	if err := readJSON(ctx, c, &first); err != nil {
		return fail(err)
	}
	if first.Type != wire.MsgWelcome {
		c.CloseNow()
		cancel()
		return first, nil, nil
	}
	s := &stream{key: key, srv: n.h.srv, conn: c, welcome: first, cancel: cancel, done: make(chan struct{}), updates: make(chan struct{}, 1),
		peers: map[crypto.PublicKey]wire.Node{}, relays: map[crypto.PublicKey][]string{}, upserts: map[crypto.PublicKey]int{}, lists: map[crypto.PublicKey][][]wire.Endpoint{},
		version: first.Version, reading: make(chan struct{})}
	if first.Resumed {
		maps.Copy(s.peers, n.held)
		for _, k := range first.Remove {
			delete(s.peers, k)
		}
	}
	for _, p := range append(first.Peers, first.Upsert...) {
		s.peers[p.PublicKey] = p
		s.lists[p.PublicKey] = [][]wire.Endpoint{p.Endpoints}
		s.noteRelay(p)
	}
	if first.Self != nil {
		s.self = *first.Self
	}
	s.filter, s.pairs, s.coordinators, s.meshRelay = first.Filter, first.RelayPairs, first.Coordinators, first.MeshRelay
	go s.run(ctx)
	return first, s, nil
}

// connect dials with the right proof and fails the test without a welcome.
func (n *node) connect() *stream {
	n.t.Helper()
	s := n.connectPaused()
	s.resume()
	return s
}

// connectPaused is connect for a node that reads nothing after its
// welcome until resume: a slow consumer.
func (n *node) connectPaused() *stream {
	n.t.Helper()
	first, s, err := n.dial(nil)
	if err != nil || s == nil {
		n.t.Fatalf("stream: %+v, %v", first, err)
	}
	n.t.Cleanup(s.close)
	return s
}

// resume starts reading the stream.
func (s *stream) resume() { close(s.reading) }

func (s *stream) run(ctx context.Context) {
	defer close(s.done)
	select {
	case <-s.reading:
	case <-ctx.Done():
		return
	}
	for {
		var m wire.StreamMsg
		if err := readJSON(ctx, s.conn, &m); err != nil {
			return
		}
		s.mu.Lock()
		switch m.Type {
		case wire.MsgPeers:
			for _, p := range m.Upsert {
				s.peers[p.PublicKey] = p
				s.upserts[p.PublicKey]++
				s.lists[p.PublicKey] = append(s.lists[p.PublicKey], p.Endpoints)
				s.noteRelay(p)
			}
			for _, k := range m.Remove {
				delete(s.peers, k)
			}
			if m.Self != nil {
				s.self = *m.Self
			}
			if m.Filter != nil {
				s.filter = m.Filter
			}
			if m.RelayPairs != nil {
				s.pairs = m.RelayPairs
			}
			if m.Coordinators != nil {
				s.coordinators = m.Coordinators
			}
			if m.MeshRelay != nil {
				s.meshRelay = m.MeshRelay
			}
			s.version = m.Version
		case wire.MsgPunch:
			s.punches = append(s.punches, m)
			seen := s.lists[*m.Peer]
			if i := slices.IndexFunc(seen, func(l []wire.Endpoint) bool { return slices.Equal(l, m.Endpoints) }); i >= 0 && i < len(seen)-1 {
				s.staleCues++
			}
		case wire.MsgError:
			s.final = &m
		}
		s.mu.Unlock()
		select {
		case s.updates <- struct{}{}:
		default:
		}
	}
}

// coordinatorList is the mesh's coordinators as the stream last heard
// them.
func (s *stream) coordinatorList() []crypto.Coordinator {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.coordinators)
}

// noteRelay records a relay offered with p. Caller holds mu (or owns s).
func (s *stream) noteRelay(p wire.Node) {
	if p.Relay != "" {
		s.relays[p.PublicKey] = append(s.relays[p.PublicKey], p.Relay)
	}
}

// mesh is the mesh's relay as the stream last described it; zero: none.
func (s *stream) mesh() wire.MeshRelay {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.meshRelay == nil {
		return wire.MeshRelay{}
	}
	return *s.meshRelay
}

// ownTags are the node's tags as its stream last described them.
func (s *stream) ownTags() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.self.Tags)
}

// offered lists the relay addresses the stream was ever offered for k.
func (s *stream) offered(k crypto.PublicKey) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.relays[k])
}

func (s *stream) close() {
	s.conn.CloseNow()
	s.cancel()
	<-s.done
}

// send sends m as a node does. Before an endpoints report, the coordinator
// is shown evidence for each candidate, as a node's signed STUN requests
// from those addresses would (see sendUnseen).
func (s *stream) send(m wire.StreamMsg) error {
	if m.Type == wire.MsgEndpoints {
		for _, ep := range m.Endpoints {
			coordinator.Observe(s.srv, s.key, ep.Addr)
		}
	}
	return s.sendUnseen(m)
}

// sendUnseen sends m with no evidence shown first.
func (s *stream) sendUnseen(m wire.StreamMsg) error {
	return writeJSON(context.Background(), s.conn, m)
}

// accessFilter is the node's access filter as the coordinator last sent it.
func (s *stream) accessFilter() *wire.Filter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.filter
}

// relayPairs are the relay pairs the stream last received.
func (s *stream) relayPairs() *wire.RelayPairs {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pairs
}

// peerNames lists the names in the stream's map, sorted.
func (s *stream) peerNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range s.peers {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

// me returns the node's own record as the coordinator last sent it.
func (s *stream) me() wire.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.self
}

// peer returns the stream's current view of a peer.
func (s *stream) peer(k crypto.PublicKey) (wire.Node, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.peers[k]
	return p, ok
}

func (s *stream) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func readJSON(ctx context.Context, c *websocket.Conn, v any) error {
	_, b, err := c.Read(ctx)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func writeJSON(ctx context.Context, c *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Write(ctx, websocket.MessageText, b)
}

// punchesFrom counts the punch cues naming k.
func (s *stream) punchesFrom(k crypto.PublicKey) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.punches {
		if *p.Peer == k {
			n++
		}
	}
	return n
}

// deltasOf counts the deltas that carried k.
func (s *stream) deltasOf(k crypto.PublicKey) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upserts[k]
}

// errorCode is the code of the error message the stream got, if any.
func (s *stream) errorCode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.final == nil {
		return ""
	}
	return s.final.Code
}

// errorText is the text of the error message the stream got, if any.
func (s *stream) errorText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.final == nil {
		return ""
	}
	return s.final.Error
}
