package registry

import (
	"errors"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// recorder is a consumer that keeps what it was told and fails on demand.
type recorder struct {
	peers map[crypto.PublicKey]wire.Node
	// fail makes the next call of the named kind ("upsert", "remove") fail.
	fail string
}

func newRecorder() *recorder { return &recorder{peers: map[crypto.PublicKey]wire.Node{}} }

var errInjected = errors.New("injected failure")

func (r *recorder) Upsert(n wire.Node, old *wire.Node) error {
	if r.fail == "upsert" {
		r.fail = ""
		return errInjected
	}
	if _, known := r.peers[n.PublicKey]; known != (old != nil) {
		return errors.New("told the wrong old record")
	}
	r.peers[n.PublicKey] = n
	return nil
}

func (r *recorder) Remove(n wire.Node) error {
	if r.fail == "remove" {
		r.fail = ""
		return errInjected
	}
	delete(r.peers, n.PublicKey)
	return nil
}

func node(t *testing.T, name string, addr string) wire.Node {
	t.Helper()
	k, err := crypto.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return wire.Node{PublicKey: k.Public(), Name: name, Addresses: []netip.Addr{netip.MustParseAddr(addr)}}
}

func snapshot(r *Registry) map[crypto.PublicKey]wire.Node {
	out := map[crypto.PublicKey]wire.Node{}
	for _, n := range r.All() {
		out[n.PublicKey] = n
	}
	return out
}

func same(a, b map[crypto.PublicKey]wire.Node) bool {
	return maps.EqualFunc(a, b, func(x, y wire.Node) bool { return x.Name == y.Name && x.Addresses[0] == y.Addresses[0] })
}

// A failure in the middle of any change leaves every consumer agreeing with
// the registry, and with each other, as if the change had not happened.
func TestFailureMidChangeLeavesEveryConsumerAgreeing(t *testing.T) {
	a := node(t, "a", "100.88.0.2")
	b := node(t, "b", "100.88.0.3")
	aMoved := a
	aMoved.Addresses = []netip.Addr{netip.MustParseAddr("100.88.0.9")}
	for _, tc := range []struct {
		name   string
		fail   string // what the middle consumer refuses
		change func(r *Registry) error
	}{
		{"add", "upsert", func(r *Registry) error { return r.Upsert(b) }},
		{"update", "upsert", func(r *Registry) error { return r.Upsert(aMoved) }},
		{"remove", "remove", func(r *Registry) error { return r.Remove(a.PublicKey) }},
		{"replace", "upsert", func(r *Registry) error { return r.Replace([]wire.Node{aMoved, b}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, middle, last := newRecorder(), newRecorder(), newRecorder()
			self := node(t, "self", "100.88.0.1")
			r := New(self.PublicKey, nil, Named{"first", first}, Named{"middle", middle}, Named{"last", last})
			if err := r.Upsert(a); err != nil {
				t.Fatal(err)
			}
			before := snapshot(r)
			middle.fail = tc.fail
			err := tc.change(r)
			if !errors.Is(err, errInjected) {
				t.Fatalf("change: %v, want the injected failure", err)
			}
			for name, c := range map[string]*recorder{"first": first, "middle": middle, "last": last} {
				if !same(c.peers, snapshot(r)) {
					t.Errorf("%s holds %v, registry %v", name, c.peers, snapshot(r))
				}
			}
			if tc.name != "replace" && !same(snapshot(r), before) {
				t.Errorf("the failed change took effect: %v, want %v", snapshot(r), before)
			}
		})
	}
}

func TestChangesReachEveryConsumerInOrder(t *testing.T) {
	var order []string
	self := node(t, "self", "100.88.0.1")
	mk := func(name string) Named {
		rec := newRecorder()
		return Named{name, orderRecorder{rec, name, &order}}
	}
	changes := 0
	r := New(self.PublicKey, func() { changes++ }, mk("wireguard"), mk("path"))
	a := node(t, "a", "100.88.0.2")
	if err := r.Upsert(a); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(a.PublicKey); err != nil {
		t.Fatal(err)
	}
	want := []string{"wireguard", "path", "wireguard", "path"}
	if !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	if changes != 2 {
		t.Errorf("changed ran %d times, want 2", changes)
	}
	if err := r.Upsert(self); !errors.Is(err, ErrSelf) || r.Len() != 0 {
		t.Errorf("upserting self: %v, %d peers; want ErrSelf and none", err, r.Len())
	}
}

type orderRecorder struct {
	*recorder
	name  string
	order *[]string
}

func (o orderRecorder) Upsert(n wire.Node, old *wire.Node) error {
	*o.order = append(*o.order, o.name)
	return o.recorder.Upsert(n, old)
}

func (o orderRecorder) Remove(n wire.Node) error {
	*o.order = append(*o.order, o.name)
	return o.recorder.Remove(n)
}

// Reapply tells every consumer a peer's record again, as an update; an
// unknown key changes nothing.
func TestReapply(t *testing.T) {
	rec := newRecorder()
	calls := 0
	r := New(crypto.PublicKey{}, nil, Named{"rec", rec}, Named{"count", counter{&calls}})
	a := node(t, "a", "100.88.0.1")
	if err := r.Upsert(a); err != nil {
		t.Fatal(err)
	}
	if err := r.Reapply(a.PublicKey); err != nil || calls != 2 {
		t.Fatalf("Reapply = %v after %d upserts; want a second one", err, calls)
	}
	if err := r.Reapply(node(t, "b", "100.88.0.2").PublicKey); err != nil || calls != 2 || len(rec.peers) != 1 {
		t.Fatalf("Reapply(unknown) = %v, %d upserts, %d peers", err, calls, len(rec.peers))
	}
}

// counter counts upserts.
type counter struct{ n *int }

func (c counter) Upsert(wire.Node, *wire.Node) error { *c.n++; return nil }
func (c counter) Remove(wire.Node) error             { return nil }
