package routes

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/meshnode/meshnode/internal/testenv"
)

func readSwitch(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func listTable(t *testing.T) (string, bool) {
	t.Helper()
	out, err := exec.Command("nft", "list", "table", "inet", nftTable).CombinedOutput()
	return string(out), err == nil
}

// A router node's gateway turns forwarding on and loads its table while
// it serves routes; serving none, or closing, removes the table and turns
// off what it turned on.
func TestGatewayInNamespace(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		testenv.Unavailable(t, "needs nft (apt-get install nftables)")
	}
	testenv.EnterNetns(t)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "mesh0"}, PeerName: "mesh0p"}); err != nil {
		t.Fatal(err)
	}
	if readSwitch(t, forward4) != "0" {
		t.Skip("IPv4 forwarding is on in a new namespace here; nothing to restore")
	}
	g := NewGateway("mesh0", true)
	office := netip.MustParsePrefix("192.168.10.0/24")
	if err := g.Set([]netip.Prefix{office}); err != nil {
		t.Fatal(err)
	}
	if got := readSwitch(t, forward4); got != "1" {
		t.Errorf("ip_forward %s while serving, want 1", got)
	}
	if got := readSwitch(t, forward6); got != "0" {
		t.Errorf("IPv6 forwarding %s while serving IPv4 only, want it left at 0", got)
	}
	if rules, ok := listTable(t); !ok || !strings.Contains(rules, "192.168.10.0/24") || !strings.Contains(rules, "masquerade") {
		t.Fatalf("table while serving:\n%s", rules)
	}

	g = NewGateway("mesh0", false) // a restart with snat off finds the old table
	if err := g.Set([]netip.Prefix{office, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}); err != nil {
		t.Fatal(err)
	}
	rules, _ := listTable(t)
	if !strings.Contains(rules, "ip daddr != @lan4 masquerade") || strings.Count(rules, "masquerade") != 2 {
		t.Errorf("with snat off, only exit traffic is masqueraded:\n%s", rules)
	}
	if got := readSwitch(t, forward6); got != "1" {
		t.Errorf("IPv6 forwarding %s while serving ::/0, want 1", got)
	}
	if err := g.Set(nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := listTable(t); ok {
		t.Error("table left after serving nothing")
	}
	if got := readSwitch(t, forward6); got != "0" {
		t.Errorf("IPv6 forwarding %s after serving nothing, want 0 again", got)
	}
	if err := g.Close(); err != nil {
		t.Fatalf("Close with nothing left: %v", err)
	}
}
