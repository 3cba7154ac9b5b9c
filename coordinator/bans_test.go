package coordinator_test

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/meshnode/meshnode/config"
	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/internal/wire"
)

// A removed node stays out, whatever token it holds (a stolen laptop keeps
// its key and may find a reusable token), until the administrator allows
// its key back; allowed, it joins again.
func TestRemovedNodeStaysOutUntilAllowed(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	r := runCoordinator(t, cfg)
	admin := openAdmin(t, cfg)
	ctx := context.Background()
	h := &harness{t: t, cfg: cfg, srv: r.srv, reg: r.reg}
	tok, err := admin.CreateToken(ctx, coordinator.TokenOptions{Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	h.url, h.client = tok.URL, pinnedClient(t, tok.Pin)
	laptop := newNode(t, h).join(tok.String(), "laptop")
	if _, err := admin.RemoveNode(ctx, "laptop"); err != nil {
		t.Fatal(err)
	}

	fresh, err := admin.CreateToken(ctx, coordinator.TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, token := range []string{tok.String(), fresh.String()} {
		status, _, fail := h.register(token, laptop.priv, "laptop")
		if status != http.StatusForbidden || fail.Code != wire.ErrCodeNodeRemoved || !strings.Contains(fail.Error, "meshnode nodes allow "+laptop.key().String()) {
			t.Fatalf("banned key registering: %d %s %q; want 403 node_removed naming the allow command", status, fail.Code, fail.Error)
		}
	}
	first, s, err := laptop.dial(nil)
	if err != nil || s != nil || first.Code != wire.ErrCodeNodeRemoved {
		t.Fatalf("banned key's stream: %+v, %v; want node_removed", first, err)
	}
	bans, err := admin.Bans(ctx)
	if err != nil || len(bans) != 1 || bans[0].Name != "laptop" || bans[0].PublicKey != laptop.key() {
		t.Fatalf("Bans = %+v, %v", bans, err)
	}
	if _, err := admin.AllowNode(ctx, "desktop"); !errors.Is(err, coordinator.ErrNotFound) {
		t.Fatalf("AllowNode(unknown) = %v, want ErrNotFound", err)
	}

	if b, err := admin.AllowNode(ctx, "laptop"); err != nil || b.PublicKey != laptop.key() {
		t.Fatalf("AllowNode(laptop) = %+v, %v", b, err)
	}
	laptop.join(fresh.String(), "laptop")
	laptop.connect()
	if bans, err := admin.Bans(ctx); err != nil || len(bans) != 0 {
		t.Fatalf("Bans after allow = %+v, %v", bans, err)
	}
}

// joinTwo registers nodes a and b with token and connects both.
func joinTwo(t *testing.T, h *harness, token, a, b string) (na, nb *node, sa, sb *stream) {
	t.Helper()
	na, nb = newNode(t, h).join(token, a), newNode(t, h).join(token, b)
	return na, nb, na.connect(), nb.connect()
}

// Tags set through the admin socket reach the running hub.
func TestTagNodeThroughAdminSocket(t *testing.T) {
	t.Parallel()
	_, admin, h, tok := runWithAdmin(t, testConfig(t))
	ctx := context.Background()
	gw, _, sg, so := joinTwo(t, h, tok, "gw", "obs")
	ep := announce(t, sg, 3001, "198.18.0.5:3479")
	handled(t, so, gw, ep)

	n, err := admin.TagNode(ctx, "gw", []string{coordinator.RelayTag, "eu"}, nil)
	if err != nil || n.Relay != "198.18.0.5:3479" || strings.Join(n.Tags, ",") != "relay,eu" {
		t.Fatalf("TagNode = %+v, %v", n, err)
	}
	eventually(t, func() bool { p, _ := so.peer(gw.key()); return p.Relay == "198.18.0.5:3479" }, "relay not offered after tagging")
	if _, err := admin.TagNode(ctx, "gw", nil, []string{coordinator.RelayTag}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { p, _ := so.peer(gw.key()); return p.Relay == "" }, "relay not withdrawn after untagging")
	if _, err := admin.TagNode(ctx, "nobody", []string{"x"}, nil); !errors.Is(err, coordinator.ErrNotFound) {
		t.Fatalf("TagNode(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := admin.TagNode(ctx, "gw", []string{"Not A Tag"}, nil); err == nil || !strings.Contains(err.Error(), `"Not A Tag"`) {
		t.Fatalf("TagNode(bad tag) = %v, want an error naming it", err)
	}
}

// A rename through the admin socket reaches the peers' maps and the node's
// own record at once; the welcome carries the configured DNS.
func TestRenameNodeThroughAdminSocket(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.DNSDomain = "corp.internal"
	cfg.DNSRecords = []string{"nas=192.168.1.10"}
	_, admin, h, tok := runWithAdmin(t, cfg)
	ctx := context.Background()
	desk := newNode(t, h).join(tok, "desktop")
	newNode(t, h).join(tok, "laptop")
	obs := newNode(t, h).join(tok, "obs")
	so, sd := obs.connect(), desk.connect()
	want := wire.DNSConfig{Domain: "corp.internal", Records: []wire.DNSRecord{{Name: "nas", Addrs: []netip.Addr{netip.MustParseAddr("192.168.1.10")}}}}
	if got := so.welcome.DNS; got == nil || !reflect.DeepEqual(*got, want) {
		t.Fatalf("welcome DNS = %+v, want %+v", got, want)
	}

	n, err := admin.RenameNode(ctx, "desktop", "Workstation")
	if err != nil || n.Name != "workstation" || n.PublicKey != desk.key() {
		t.Fatalf("RenameNode = %+v, %v", n, err)
	}
	eventually(t, func() bool { p, _ := so.peer(desk.key()); return p.Name == "workstation" }, "peer did not see the new name")
	eventually(t, func() bool { return sd.me().Name == "workstation" }, "node did not get its new name")
	if _, err := admin.RenameNode(ctx, "workstation", "laptop"); !errors.Is(err, coordinator.ErrNameTaken) {
		t.Fatalf("RenameNode to a taken name = %v, want ErrNameTaken", err)
	}
	if _, err := admin.RenameNode(ctx, "desktop", "pc"); !errors.Is(err, coordinator.ErrNotFound) {
		t.Fatalf("RenameNode of the old name = %v, want ErrNotFound", err)
	}
	if _, err := admin.RenameNode(ctx, "workstation", "my pc"); err == nil || !strings.Contains(err.Error(), `"my pc"`) {
		t.Fatalf("RenameNode to a bad name = %v, want an error naming it", err)
	}
}

// runWithAdmin runs a coordinator with its admin socket and returns an
// admin client, a harness for its nodes and a reusable join token.
func runWithAdmin(t *testing.T, cfg config.Coordinator) (*running, coordinator.Admin, *harness, string) {
	t.Helper()
	r := runCoordinator(t, cfg)
	admin := openAdmin(t, cfg)
	tok, err := admin.CreateToken(context.Background(), coordinator.TokenOptions{Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	return r, admin, &harness{t: t, cfg: cfg, srv: r.srv, reg: r.reg, url: tok.URL, client: pinnedClient(t, tok.Pin)}, tok.String()
}
