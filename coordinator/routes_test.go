package coordinator_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/internal/wire"
)

var officeLAN = netip.MustParsePrefix("192.168.10.0/24")

// advertise reports routes with an endpoint; seeing the endpoint at a peer
// proves the coordinator handled the whole report.
func advertise(t *testing.T, s *stream, port uint16, routes ...netip.Prefix) wire.Endpoint {
	t.Helper()
	ep := wire.Endpoint{Addr: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.9"), port), Kind: wire.EndpointSTUN}
	if err := s.send(wire.StreamMsg{Type: wire.MsgEndpoints, Endpoints: []wire.Endpoint{ep}, Routes: routes}); err != nil {
		t.Fatal(err)
	}
	return ep
}

// routesOf waits until observer sees n serve routes and be primary for
// primary.
func routesOf(t *testing.T, observer *stream, n *node, routes, primary []netip.Prefix) {
	t.Helper()
	eventually(t, func() bool {
		p, _ := observer.peer(n.key())
		return slices.Equal(p.Routes, routes) && slices.Equal(p.PrimaryRoutes, primary)
	}, "peer sees routes %v, primary %v", routes, primary)
}

// Advertised routes reach nobody until the administrator approves them;
// then every peer sees them within moments, and the router itself learns
// what it serves; a rejection withdraws them the same way.
func TestRoutesApproveAndReject(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	tok := h.token(coordinator.TokenOptions{Reusable: true})
	gw, _, sg, sh := joinTwo(t, h, tok, "gw", "home")

	handled(t, sh, gw, advertise(t, sg, 1001, officeLAN, wire.ExitRouteV4, wire.ExitRouteV6))
	// The report's candidates are pushed before its routes are stored.
	var list []coordinator.RouteInfo
	var err error
	eventually(t, func() bool {
		list, err = h.srv.Routes(t.Context())
		return err == nil && len(list) == 3
	}, "gw's three routes stored")
	if list[0].Approved || !list[0].Advertised {
		t.Fatalf("routes list = %+v; want three advertised, none approved", list)
	}
	if p, _ := sh.peer(gw.key()); len(p.Routes)+len(p.PrimaryRoutes) != 0 {
		t.Fatalf("unapproved routes reached a peer: %+v", p)
	}

	if _, err := h.srv.ApproveRoutes(t.Context(), "gw", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}); !errors.Is(err, coordinator.ErrRouteUnknown) {
		t.Fatalf("approving a route gw does not advertise: %v, want ErrRouteUnknown", err)
	}
	list, err = h.srv.ApproveRoutes(t.Context(), "gw", []netip.Prefix{officeLAN, wire.ExitRouteV4, wire.ExitRouteV6})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range list {
		if !r.Approved || r.Primary != (r.Prefix == officeLAN) {
			t.Errorf("after approval: %+v; want approved, primary for the LAN only", r)
		}
	}
	all := []netip.Prefix{wire.ExitRouteV4, officeLAN, wire.ExitRouteV6}
	routesOf(t, sh, gw, all, []netip.Prefix{officeLAN})
	eventually(t, func() bool { return slices.Equal(sg.me().Routes, all) }, "gw learns the routes it serves")

	if _, err := h.srv.RejectRoutes(t.Context(), "gw", []netip.Prefix{officeLAN}); err != nil {
		t.Fatal(err)
	}
	routesOf(t, sh, gw, []netip.Prefix{wire.ExitRouteV4, wire.ExitRouteV6}, nil)

	// A node that connects now gets the same in its welcome.
	late := newNode(t, h).join(tok, "late")
	sl := late.connect()
	if p, ok := sl.peer(gw.key()); !ok || len(p.Routes) != 2 || len(p.PrimaryRoutes) != 0 {
		t.Fatalf("welcome shows gw as %+v", p)
	}
}

// Routes that no node may serve (the overlay, loopback) are refused
// without closing the stream; the node's candidates still count.
func TestRoutesInvalidRefused(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	tok := h.token(coordinator.TokenOptions{Reusable: true})
	gw, _, sg, sh := joinTwo(t, h, tok, "gw", "home")
	handled(t, sh, gw, advertise(t, sg, 1001, netip.MustParsePrefix("100.88.0.0/24"), netip.MustParsePrefix("127.0.0.0/8")))
	if list, err := h.srv.Routes(t.Context()); err != nil || len(list) != 0 {
		t.Fatalf("routes list = %+v, %v; want the invalid routes not stored", list, err)
	}
	if sg.closed() {
		t.Fatal("the stream was closed")
	}
}

// Two routers serve one prefix: peers route it through the one approved
// first; when it goes offline they move to the other, and stay there when
// the first comes back (live connections keep their router).
func TestRoutesFailover(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	tok := h.token(coordinator.TokenOptions{Reusable: true})
	gw1 := newNode(t, h).join(tok, "gw1")
	gw2 := newNode(t, h).join(tok, "gw2")
	home := newNode(t, h).join(tok, "home")
	s1, s2, sh := gw1.connect(), gw2.connect(), home.connect()
	handled(t, sh, gw1, advertise(t, s1, 1001, officeLAN))
	handled(t, sh, gw2, advertise(t, s2, 1002, officeLAN))
	for _, name := range []string{"gw1", "gw2"} {
		if _, err := h.srv.ApproveRoutes(t.Context(), name, []netip.Prefix{officeLAN}); err != nil {
			t.Fatal(err)
		}
	}
	lan := []netip.Prefix{officeLAN}
	routesOf(t, sh, gw1, lan, lan)
	routesOf(t, sh, gw2, lan, nil)

	s1.close()
	routesOf(t, sh, gw2, lan, lan)
	routesOf(t, sh, gw1, lan, nil)

	s1 = gw1.connect()
	handled(t, sh, gw1, advertise(t, s1, 1003, officeLAN))
	routesOf(t, sh, gw2, lan, lan)
	if p, _ := sh.peer(gw1.key()); len(p.PrimaryRoutes) != 0 {
		t.Fatalf("gw1 took the prefix back on its return: %+v", p.PrimaryRoutes)
	}
	eventually(t, func() bool { return slices.Equal(s2.me().PrimaryRoutes, lan) }, "gw2 learns it is primary")
}

// auto_approve_routes approves what a tagged node advertises within the
// named prefix at once, and when a node gets the tag later; the rest waits
// for the administrator.
func TestRoutesAutoApprove(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.AutoApproveRoutes = []string{"office=192.168.0.0/16", "gw=exit"}
	h := start(t, cfg)
	gw := newNode(t, h).join(h.token(coordinator.TokenOptions{Tags: []string{"office"}}), "gw")
	home := newNode(t, h).join(h.token(coordinator.TokenOptions{}), "home")
	sg, sh := gw.connect(), home.connect()
	handled(t, sh, gw, advertise(t, sg, 1001, officeLAN, wire.ExitRouteV4))
	routesOf(t, sh, gw, []netip.Prefix{officeLAN}, []netip.Prefix{officeLAN})

	if _, err := h.srv.TagNode(context.Background(), "gw", []string{"gw"}, nil); err != nil {
		t.Fatal(err)
	}
	routesOf(t, sh, gw, []netip.Prefix{wire.ExitRouteV4, officeLAN}, []netip.Prefix{officeLAN})
}

// Routes approved through the admin socket reach the running hub; its
// refusals keep their meaning across the socket; with no coordinator
// running, the data directory is changed directly.
func TestRoutesThroughAdminSocket(t *testing.T) {
	t.Parallel()
	r, admin, h, tok := runWithAdmin(t, testConfig(t))
	ctx := context.Background()
	gw, _, sg, so := joinTwo(t, h, tok, "gw", "obs")
	handled(t, so, gw, advertise(t, sg, 3001, officeLAN))

	list, err := admin.ApproveRoutes(ctx, "gw", []netip.Prefix{officeLAN})
	if err != nil || len(list) != 1 || !list[0].Approved || !list[0].Primary || !list[0].Online {
		t.Fatalf("ApproveRoutes = %+v, %v", list, err)
	}
	routesOf(t, so, gw, []netip.Prefix{officeLAN}, []netip.Prefix{officeLAN})
	if _, err := admin.RejectRoutes(ctx, "gw", []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}); !errors.Is(err, coordinator.ErrRouteUnknown) {
		t.Fatalf("RejectRoutes(unknown route) = %v, want ErrRouteUnknown", err)
	}
	if _, err := admin.ApproveRoutes(ctx, "nobody", []netip.Prefix{officeLAN}); !errors.Is(err, coordinator.ErrNotFound) {
		t.Fatalf("ApproveRoutes(unknown node) = %v, want ErrNotFound", err)
	}
	if list, err := admin.Routes(ctx); err != nil || len(list) != 1 || list[0].Node != "gw" {
		t.Fatalf("Routes = %+v, %v", list, err)
	}

	admin.Close()
	r.stop(t)
	offline := openAdmin(t, h.cfg)
	list, err = offline.RejectRoutes(ctx, "gw", []netip.Prefix{officeLAN})
	if err != nil || len(list) != 1 || list[0].Approved || !list[0].Advertised {
		t.Fatalf("offline RejectRoutes = %+v, %v", list, err)
	}
}

// Under an access policy, a rule whose destination is a LAN applies at the
// router serving it, from its approval: the router then enforces the rule
// and the rule's sources see the router; a rejection takes both back.
func TestPolicyRuleToApprovedRoute(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	tok := h.token(coordinator.TokenOptions{Reusable: true})
	gw, _, sg, sh := joinTwo(t, h, tok, "gw", "home")
	handled(t, sh, gw, advertise(t, sg, 1001, officeLAN))
	if _, err := h.srv.SetPolicy(t.Context(), "rules:\n  - from: [home]\n    to: ["+officeLAN.String()+"]\n"); err != nil {
		t.Fatal(err)
	}
	enforcesLAN := func() bool {
		f := sg.accessFilter()
		return f != nil && slices.ContainsFunc(f.Rules, func(r wire.FilterRule) bool { return slices.Contains(r.Dst, officeLAN) })
	}
	sees := func() bool { _, ok := sh.peer(gw.key()); return ok }
	delivered(t, "the policy hiding the unapproved router", func() bool { return !sees() })
	if enforcesLAN() {
		t.Fatal("the router enforces a rule to a route not approved")
	}

	if _, err := h.srv.ApproveRoutes(t.Context(), "gw", []netip.Prefix{officeLAN}); err != nil {
		t.Fatal(err)
	}
	delivered(t, "the router in the source's map", sees)
	delivered(t, "the rule to the LAN in the router's filter", enforcesLAN)

	if _, err := h.srv.RejectRoutes(t.Context(), "gw", []netip.Prefix{officeLAN}); err != nil {
		t.Fatal(err)
	}
	delivered(t, "the router gone from the source's map", func() bool { return !sees() })
	delivered(t, "the rule gone from the router's filter", func() bool { return !enforcesLAN() })
}

// autoApprovePolicy lets everyone reach everyone, and approves the office
// LANs of nodes tagged office and the exit routes of nodes tagged exit.
const autoApprovePolicy = `rules:
  - from: "*"
    to: "*"
auto_approvers:
  routes:
    192.168.0.0/16: [tag:office]
  exit_node: [tag:exit]
`

// The policy's auto_approvers approve a tagged node's routes: those it
// already advertises when the policy is set, those it advertises later,
// and its exit routes once it gets the exit tag; routes outside them wait
// for the administrator, and a route the administrator rejected stays
// rejected when the same policy is set again.
func TestRoutesAutoApproveByPolicy(t *testing.T) {
	t.Parallel()
	h := start(t, testConfig(t))
	gw := newNode(t, h).join(h.token(coordinator.TokenOptions{Tags: []string{"office"}}), "gw")
	home := newNode(t, h).join(h.token(coordinator.TokenOptions{}), "home")
	sg, sh := gw.connect(), home.connect()
	other := netip.MustParsePrefix("10.9.0.0/16")
	handled(t, sh, gw, advertise(t, sg, 1001, officeLAN, other, wire.ExitRouteV4))
	if p, _ := sh.peer(gw.key()); len(p.Routes) != 0 {
		t.Fatalf("routes approved before any approver: %v", p.Routes)
	}

	if _, err := h.srv.SetPolicy(t.Context(), autoApprovePolicy); err != nil {
		t.Fatal(err)
	}
	routesOf(t, sh, gw, []netip.Prefix{officeLAN}, []netip.Prefix{officeLAN})
	if _, err := h.srv.TagNode(t.Context(), "gw", []string{"exit"}, nil); err != nil {
		t.Fatal(err)
	}
	routesOf(t, sh, gw, []netip.Prefix{wire.ExitRouteV4, officeLAN}, []netip.Prefix{officeLAN})

	// Advertised later: approved as it arrives, within the prefix only.
	lan2 := netip.MustParsePrefix("192.168.20.0/24")
	handled(t, sh, gw, advertise(t, sg, 1002, officeLAN, lan2, other, wire.ExitRouteV4))
	routesOf(t, sh, gw, []netip.Prefix{wire.ExitRouteV4, officeLAN, lan2}, []netip.Prefix{officeLAN, lan2})

	// The administrator's rejection outlasts the same approvers set again.
	if _, err := h.srv.RejectRoutes(t.Context(), "gw", []netip.Prefix{lan2}); err != nil {
		t.Fatal(err)
	}
	routesOf(t, sh, gw, []netip.Prefix{wire.ExitRouteV4, officeLAN}, []netip.Prefix{officeLAN})
	if _, err := h.srv.SetPolicy(t.Context(), autoApprovePolicy+"# again\n"); err != nil {
		t.Fatal(err)
	}
	list, err := h.srv.Routes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range list {
		if want := r.Prefix != lan2 && r.Prefix != other; r.Approved != want {
			t.Errorf("%s approved %v, want %v", r.Prefix, r.Approved, want)
		}
	}
}

// With no coordinator running, a policy set on the data directory
// approves the stored routes its auto_approvers newly cover, and tagging
// a node there applies them too.
func TestRoutesAutoApproveByPolicyOffline(t *testing.T) {
	t.Parallel()
	r, admin, h, _ := runWithAdmin(t, testConfig(t))
	gw := newNode(t, h).join(h.token(coordinator.TokenOptions{Tags: []string{"office"}}), "gw")
	home := newNode(t, h).join(h.token(coordinator.TokenOptions{}), "home")
	sg, sh := gw.connect(), home.connect()
	handled(t, sh, gw, advertise(t, sg, 1001, officeLAN, wire.ExitRouteV6))
	sg.close()
	sh.close()
	admin.Close()
	r.stop(t)

	offline := openAdmin(t, h.cfg)
	ctx := context.Background()
	if _, err := offline.SetPolicy(ctx, autoApprovePolicy); err != nil {
		t.Fatal(err)
	}
	approved := func() []netip.Prefix {
		t.Helper()
		list, err := offline.Routes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []netip.Prefix
		for _, r := range list {
			if r.Approved {
				out = append(out, r.Prefix)
			}
		}
		return out
	}
	if got := approved(); !slices.Equal(got, []netip.Prefix{officeLAN}) {
		t.Fatalf("approved offline %v, want %v", got, officeLAN)
	}
	if _, err := offline.TagNode(ctx, "gw", []string{"exit"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := approved(); !slices.Equal(got, []netip.Prefix{officeLAN, wire.ExitRouteV6}) {
		t.Fatalf("approved after the exit tag %v, want %v and the exit route", got, officeLAN)
	}
}
