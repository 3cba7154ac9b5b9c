package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/control"
)

// probe is what the clients watch for while one event spreads: a peer's
// record with the given candidate port, or the given presence.
type probe struct {
	peer   int    // the changed node's index
	port   uint16 // non-zero: wait for a candidate with this port
	online bool   // port zero: wait for this presence
}

func (p *probe) matches(n wire.Node) bool {
	if p.port == 0 {
		return n.Online == p.online
	}
	for _, e := range n.Endpoints {
		if e.Addr.Port() == p.port {
			return true
		}
	}
	return false
}

// mesh is what every client shares: the nodes by key, the probe, and the
// byte counter.
type mesh struct {
	index map[crypto.PublicKey]int // read-only once the nodes registered
	probe atomic.Pointer[probe]
	start atomic.Int64 // the probe's start, in Unix nanoseconds
	bytes atomic.Int64
	// reasons counts why streams dropped, by error text.
	reasonsMu sync.Mutex
	reasons   map[string]int
}

// maxReasons bounds the distinct drop reasons kept; more count as other.
const maxReasons = 32

func (m *mesh) dropped(err error) {
	why := "no error"
	if err != nil {
		why = err.Error()
	}
	m.reasonsMu.Lock()
	defer m.reasonsMu.Unlock()
	if _, ok := m.reasons[why]; !ok && len(m.reasons) >= maxReasons {
		why = "other"
	}
	m.reasons[why]++
}

// topReasons are the most frequent drop reasons, with their counts.
func (m *mesh) topReasons(n int) []string {
	m.reasonsMu.Lock()
	defer m.reasonsMu.Unlock()
	keys := slices.Collect(maps.Keys(m.reasons))
	slices.SortFunc(keys, func(a, b string) int { return m.reasons[b] - m.reasons[a] })
	out := make([]string, 0, n)
	for _, k := range keys[:min(n, len(keys))] {
		out = append(out, fmt.Sprintf("%d× %s", m.reasons[k], k))
	}
	return out
}

// client is one simulated node: the real stream (control.Stream, as the
// node runs it) and what it has learnt of its peers' presence, a bit per
// node index, so even an open mesh of 10,000 costs 1.25 KB per client.
type client struct {
	idx    int
	priv   crypto.PrivateKey
	name   string
	group  int
	mesh   *mesh
	hc     *http.Client
	stream *control.Stream

	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	welcomed    bool
	welcomes    int
	disconnects int
	online      []uint64
	nOnline     int
	// held is the map the client holds (control.Resumer); resumed
	// counts the welcomes that resumed it.
	held    wire.MapVersion
	resumed int
	// welcomeBytes is the size of the welcomes' JSON.
	welcomeBytes int
	// seen is when the probe's event reached this client, in
	// nanoseconds since mesh.start; 0: not yet.
	seen atomic.Int64
}

func (c *client) setOnline(i int, on bool) {
	w, b := i/64, uint64(1)<<(i%64)
	was := c.online[w]&b != 0
	switch {
	case on && !was:
		c.online[w] |= b
		c.nOnline++
	case !on && was:
		c.online[w] &^= b
		c.nOnline--
	}
}

// saw records the probe's event when n is its peer in the awaited state.
func (c *client) saw(n wire.Node, i int) {
	p := c.mesh.probe.Load()
	if p == nil || p.peer != i || !p.matches(n) || c.seen.Load() != 0 {
		return
	}
	c.seen.Store(max(time.Now().UnixNano()-c.mesh.start.Load(), 1))
}

// OnWelcome implements control.Handler: the full map, or what changed
// since the one it holds.
func (c *client) OnWelcome(msg wire.StreamMsg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if msg.Resumed {
		c.applyLocked(msg)
		c.resumed++
	} else {
		clear(c.online)
		c.nOnline = 0
		for _, p := range msg.Peers {
			if i, ok := c.mesh.index[p.PublicKey]; ok {
				c.setOnline(i, p.Online)
				c.saw(p, i)
			}
		}
	}
	c.held = wire.MapVersion{Epoch: msg.Epoch, Version: msg.Version}
	if b, err := json.Marshal(msg); err == nil {
		c.welcomeBytes += len(b)
	}
	c.welcomed = true
	c.welcomes++
}

// Holds implements control.Resumer.
func (c *client) Holds() *wire.MapVersion {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held.Epoch == 0 {
		return nil
	}
	held := c.held
	return &held
}

// OnPeers implements control.Handler.
func (c *client) OnPeers(msg wire.StreamMsg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applyLocked(msg)
	if c.held.Epoch != 0 {
		c.held.Version = max(c.held.Version, msg.Version)
	}
}

// applyLocked applies a delta's upserts and removals; c.mu is held.
func (c *client) applyLocked(msg wire.StreamMsg) {
	for _, p := range msg.Upsert {
		if i, ok := c.mesh.index[p.PublicKey]; ok {
			c.setOnline(i, p.Online)
			c.saw(p, i)
		}
	}
	for _, k := range msg.Remove {
		if i, ok := c.mesh.index[k]; ok {
			c.setOnline(i, false)
		}
	}
}

// OnPunch implements control.Handler.
func (c *client) OnPunch(wire.StreamMsg) {}

// OnDisconnect implements control.Handler.
func (c *client) OnDisconnect(err error) {
	c.mesh.dropped(err)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.welcomed = false
	c.disconnects++
}

// converged reports whether the client has its map with want peers
// online.
func (c *client) converged(want int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcomed && c.nOnline == want
}

func (c *client) counts() (welcomes, disconnects, resumed, welcomeBytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcomes, c.disconnects, c.resumed, c.welcomeBytes
}

// start runs the client's stream until stop.
func (c *client) start(url string, coordKey crypto.PublicKey) {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.done = make(chan struct{})
	// One coordinator, whose pin c.hc checks already.
	hc := c.hc
	c.stream = &control.Stream{Coordinators: []crypto.Coordinator{{URL: url}}, Client: func(string) *http.Client { return hc }, Priv: c.priv, CoordKey: coordKey, Log: discard}
	go func() {
		defer close(c.done)
		c.stream.Run(ctx, c) //nolint:errcheck // ends with ctx; a refusal shows as no convergence
	}()
}

// stop ends the client's stream and waits for it.
func (c *client) stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	<-c.done
	c.cancel = nil
	c.mu.Lock()
	c.welcomed = false
	c.mu.Unlock()
}

// countingConn counts the bytes the coordinator sends.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// httpClient is a client that trusts pin, dials from src (invalid: any
// source) and counts what it reads into n.
func httpClient(pin string, src net.IP, n *atomic.Int64) *http.Client {
	d := &net.Dialer{Timeout: 15 * time.Second}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return countingConn{c, n}, nil
			},
			TLSClientConfig:     crypto.PinnedTLSConfig(pin),
			TLSHandshakeTimeout: 30 * time.Second,
		},
	}
}
