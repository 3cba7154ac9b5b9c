package coordinator_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/meshnode/meshnode/coordinator"
	"github.com/meshnode/meshnode/internal/pgtest"
)

// twoCoordinators starts two coordinators, each with its own data
// directory and certificate, on one PostgreSQL database.
func twoCoordinators(t *testing.T) (a, b *harness) {
	t.Helper()
	db := pgtest.DB(t)
	cfgA, cfgB := testConfig(t), testConfig(t)
	cfgA.Database, cfgB.Database = db, db
	return start(t, cfgA), start(t, cfgB)
}

// crossed waits for cond, a change made through one coordinator as a
// node on another sees it, and logs how long it took.
func crossed(t *testing.T, what string, since time.Time, cond func() bool) {
	t.Helper()
	eventually(t, cond, "%s", what)
	t.Logf("%s: %v after the change returned", what, time.Since(since).Round(time.Millisecond))
}

// A change committed through one coordinator reaches the nodes connected
// to another, as a local change would: a registration, tags, a rename, a
// policy, routes approved, a removal.
func TestCoordinatorsFollowEachOther(t *testing.T) {
	a, b := twoCoordinators(t)
	ctx := context.Background()
	token := a.token(coordinator.TokenOptions{Reusable: true})
	laptop := newNode(t, a).join(token, "laptop").connect()

	at := time.Now()
	desk := newNode(t, b).join(token, "desk")
	crossed(t, "laptop on A sees desk, registered on B", at, func() bool { return slices.Equal(laptop.peerNames(), []string{"desk"}) })
	deskStream := desk.connect()
	if !slices.Equal(deskStream.peerNames(), []string{"laptop"}) {
		t.Fatalf("desk on B sees %v; want laptop", deskStream.peerNames())
	}

	at = time.Now()
	if _, err := b.srv.TagNode(ctx, "laptop", []string{"home"}, nil); err != nil {
		t.Fatal(err)
	}
	crossed(t, "laptop on A gets its own tag, set through B", at, func() bool { return slices.Equal(laptop.ownTags(), []string{"home"}) })

	at = time.Now()
	if _, err := b.srv.RenameNode(ctx, "desk", "office"); err != nil {
		t.Fatal(err)
	}
	crossed(t, "laptop on A sees desk renamed through B", at, func() bool { return slices.Equal(laptop.peerNames(), []string{"office"}) })

	phone := newNode(t, b).join(token, "phone").connect()
	eventually(t, func() bool { return slices.Equal(laptop.peerNames(), []string{"office", "phone"}) }, "laptop sees phone")
	at = time.Now()
	if _, err := b.srv.SetPolicy(ctx, "rules:\n  - {from: tag:home, to: office, ports: [22], proto: tcp}\n"); err != nil {
		t.Fatal(err)
	}
	crossed(t, "the policy set through B reaches laptop on A", at, func() bool {
		return laptop.accessFilter() != nil && slices.Equal(laptop.peerNames(), []string{"office"})
	})
	eventually(t, func() bool { return len(phone.peerNames()) == 0 }, "phone on B sees nobody under the policy")
	at = time.Now()
	if _, err := a.srv.SetPolicy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	crossed(t, "the policy cleared through A reaches phone on B", at, func() bool {
		f := phone.accessFilter()
		return f != nil && f.AllowAll && slices.Equal(phone.peerNames(), []string{"laptop", "office"})
	})

	at = time.Now()
	if _, err := b.srv.RemoveNode(ctx, "office"); err != nil {
		t.Fatal(err)
	}
	crossed(t, "laptop on A drops office, removed through B", at, func() bool { return slices.Equal(laptop.peerNames(), []string{"phone"}) })
	at = time.Now()
	if _, err := a.srv.RemoveNode(ctx, "phone"); err != nil {
		t.Fatal(err)
	}
	crossed(t, "phone on B is told node_removed, removed through A", at, func() bool { return phone.errorCode() == "node_removed" })
	nodes, err := b.srv.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].Name != "laptop" {
		t.Fatalf("B's nodes after the removals: %+v, %v; want laptop", nodes, err)
	}
}
