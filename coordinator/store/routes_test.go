package store

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

var (
	office = netip.MustParsePrefix("192.168.10.0/24")
	lab    = netip.MustParsePrefix("10.20.0.0/16")
)

// registerGW registers the node "gw" with a reusable token "t" that
// grants tags, and returns its key and the token's secret.
func registerGW(t *testing.T, s Store, tags ...string) (crypto.PublicKey, string) {
	t.Helper()
	secret := addToken(t, s, "t", true, time.Now().Add(time.Hour), tags...)
	k := newKey(t)
	if _, err := register(s, "t", secret, k, "gw"); err != nil {
		t.Fatal(err)
	}
	return k, secret
}

// A node's advertised routes are stored as reported; it serves only the
// approved ones; approvals outlive the advertisement and keep their time.
func TestRoutesAdvertiseApproveReject(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, path string) {
		s := openTest(t, path)
		ctx := t.Context()
		k, secret := registerGW(t, s)
		t0 := time.UnixMilli(1_700_000_000_000)
		n, err := s.SetAdvertisedRoutes(ctx, k, []netip.Prefix{lab, office, wire.ExitRouteV4}, nil, t0)
		if err != nil || len(n.Serves()) != 0 {
			t.Fatalf("advertise = %v, serves %v; want nothing served before approval", err, n.Serves())
		}
		if !slices.Equal(n.Advertised, []netip.Prefix{wire.ExitRouteV4, lab, office}) {
			t.Fatalf("advertised %v, want them sorted", n.Advertised)
		}

		n, err = s.UpdateRoutes(ctx, "gw", []netip.Prefix{office, wire.ExitRouteV4}, nil, t0.Add(time.Minute))
		if err != nil || !slices.Equal(n.Serves(), []netip.Prefix{wire.ExitRouteV4, office}) {
			t.Fatalf("approve = %v, serves %v", err, n.Serves())
		}
		if _, err := s.UpdateRoutes(ctx, "gw", []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}, nil, t0); !errors.Is(err, ErrRouteUnknown) {
			t.Fatalf("approving a route not advertised: %v, want ErrRouteUnknown", err)
		}
		if _, err := s.UpdateRoutes(ctx, "nope", []netip.Prefix{office}, nil, t0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("approving for an unknown node: %v, want ErrNotFound", err)
		}

		// The node stops advertising office: it no longer serves it, but the
		// approval (and its time) stays for when it advertises it again.
		if n, err = s.SetAdvertisedRoutes(ctx, k, []netip.Prefix{wire.ExitRouteV4}, nil, t0); err != nil || slices.Contains(n.Serves(), office) {
			t.Fatalf("withdrawn = %v, serves %v", err, n.Serves())
		}
		s.Close()
		s = openTest(t, path)
		n, err = s.SetAdvertisedRoutes(ctx, k, []netip.Prefix{office, wire.ExitRouteV4}, nil, t0.Add(time.Hour))
		if err != nil || !slices.Contains(n.Serves(), office) {
			t.Fatalf("advertised again after a restart = %v, serves %v", err, n.Serves())
		}
		if since, ok := n.ApprovedSince(office); !ok || !since.Equal(t0.Add(time.Minute)) {
			t.Fatalf("approved since %v (%v), want the first approval's time", since, ok)
		}

		n, err = s.UpdateRoutes(ctx, "gw", nil, []netip.Prefix{wire.ExitRouteV4}, t0)
		if err != nil || !slices.Equal(n.Serves(), []netip.Prefix{office}) {
			t.Fatalf("reject = %v, serves %v", err, n.Serves())
		}
		if _, err := s.UpdateRoutes(ctx, "gw", nil, []netip.Prefix{lab}, t0); !errors.Is(err, ErrRouteUnknown) {
			t.Fatalf("rejecting a route neither advertised nor approved: %v, want ErrRouteUnknown", err)
		}
		if got, err := s.Node(ctx, k); err != nil || !slices.Equal(got.Serves(), []netip.Prefix{office}) {
			t.Fatalf("stored %v, %v", got.Serves(), err)
		}

		// A removed node's routes go with it; a new registration starts bare.
		if _, err := s.RemoveNode(ctx, "gw", time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetAdvertisedRoutes(ctx, k, []netip.Prefix{office}, nil, t0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("advertising from a removed node: %v, want ErrNotFound", err)
		}
		if _, err := s.Allow(ctx, "gw"); err != nil {
			t.Fatal(err)
		}
		if n, err := register(s, "t", secret, k, "gw"); err != nil || len(n.Approved)+len(n.Advertised) != 0 {
			t.Fatalf("registered again: %+v, %v; want no routes", n, err)
		}
	})
}

// Routes newly advertised by a node whose tags auto_approve_routes names
// are approved at once; a rejected one stays rejected while it is
// advertised.
func TestRoutesAutoApprove(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db string) {
		s := openTest(t, db)
		ctx := t.Context()
		k, _ := registerGW(t, s, "office")
		auto := func(tags []string, p netip.Prefix) bool {
			return slices.Contains(tags, "office") && netip.MustParsePrefix("192.168.0.0/16").Contains(p.Addr()) && p.Bits() >= 16
		}
		n, err := s.SetAdvertisedRoutes(ctx, k, []netip.Prefix{office, lab}, auto, time.Now())
		if err != nil || !slices.Equal(n.Serves(), []netip.Prefix{office}) {
			t.Fatalf("auto-approved %v, %v; want only %v", n.Serves(), err, office)
		}
		if _, err := s.UpdateRoutes(ctx, "gw", nil, []netip.Prefix{office}, time.Now()); err != nil {
			t.Fatal(err)
		}
		n, err = s.SetAdvertisedRoutes(ctx, k, []netip.Prefix{office, lab}, auto, time.Now())
		if err != nil || len(n.Serves()) != 0 {
			t.Fatalf("after a rejection, the same report serves %v, %v; want nothing", n.Serves(), err)
		}
	})
}
