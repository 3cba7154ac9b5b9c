package meshdns

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/meshnode/meshnode/crypto"
	"github.com/meshnode/meshnode/internal/wire"
)

// The mesh the tests resolve: this node (laptop), two peers, a member
// that claims the administrator's name "nas", and extra records.
var (
	selfKey   = crypto.PublicKey{1}
	deskKey   = crypto.PublicKey{2}
	phoneKey  = crypto.PublicKey{3}
	squatKey  = crypto.PublicKey{4}
	overlay   = []netip.Prefix{netip.MustParsePrefix("100.88.0.0/16"), netip.MustParsePrefix("fd6d:6573:686e::/48")}
	a         = netip.MustParseAddr
	laptopV4  = a("100.88.0.1")
	desktopV4 = a("100.88.0.2")
	desktopV6 = a("fd6d:6573:686e::2")
	phoneV4   = a("100.88.0.3")
)

// manyAddrs is more A records than a 512-byte answer holds.
func manyAddrs() []netip.Addr {
	out := make([]netip.Addr, wire.MaxDNSRecordAddrs)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)})
	}
	return out
}

func testTable() *Table {
	t := NewTable(selfKey, overlay)
	t.SetConfig(wire.DNSConfig{Domain: "mesh.internal", Records: []wire.DNSRecord{
		{Name: "nas", Addrs: []netip.Addr{a("192.168.1.10"), a("fd00::10")}},
		{Name: "printer.office", Addrs: []netip.Addr{a("10.0.0.7")}},
		{Name: "many", Addrs: manyAddrs()},
	}})
	t.Set(wire.Node{Name: "laptop", PublicKey: selfKey, Addresses: []netip.Addr{laptopV4, a("fd6d:6573:686e::1")}})
	t.Set(wire.Node{Name: "Desktop", PublicKey: deskKey, Addresses: []netip.Addr{desktopV4, desktopV6}})
	t.Set(wire.Node{Name: "phone", PublicKey: phoneKey, Addresses: []netip.Addr{phoneV4}})
	t.Set(wire.Node{Name: "nas", PublicKey: squatKey, Addresses: []netip.Addr{a("100.88.0.4")}})
	return t
}

func TestTableLookup(t *testing.T) {
	tests := []struct {
		name      string
		query     string
		inDomain  bool
		exists    bool
		wantAddrs []netip.Addr
	}{
		{"a member, any case", "desktop.mesh.internal.", true, true, []netip.Addr{desktopV4, desktopV6}},
		{"this node", "laptop.mesh.internal.", true, true, []netip.Addr{laptopV4, a("fd6d:6573:686e::1")}},
		{"the administrator's name wins over a member's", "nas.mesh.internal.", true, true, []netip.Addr{a("192.168.1.10"), a("fd00::10")}},
		{"an extra record with two labels", "printer.office.mesh.internal.", true, true, []netip.Addr{a("10.0.0.7")}},
		{"a name with names below it only", "office.mesh.internal.", true, true, nil},
		{"the domain itself", "mesh.internal.", true, true, nil},
		{"an unknown name", "tablet.mesh.internal.", true, false, nil},
		{"below a member", "www.desktop.mesh.internal.", true, false, nil},
		{"outside the domain", "desktop.example.com.", false, false, nil},
		{"a suffix that is not the domain", "desktop.xmesh.internal.", false, false, nil},
	}
	tab := testTable()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, in := tab.lookup(tt.query)
			if in != tt.inDomain || got.exists != tt.exists || !reflect.DeepEqual(got.addrs, tt.wantAddrs) {
				t.Fatalf("lookup(%s) = %+v, in domain %v; want exists %v, addrs %v, in domain %v", tt.query, got, in, tt.exists, tt.wantAddrs, tt.inDomain)
			}
		})
	}
}

// A rename moves the name, a removal drops it, and the reverse names follow.
func TestTableFollowsRenamesAndRemovals(t *testing.T) {
	tab := testTable()
	tab.Set(wire.Node{Name: "workstation", PublicKey: deskKey, Addresses: []netip.Addr{desktopV4, desktopV6}})
	if got, _ := tab.lookup("desktop.mesh.internal."); got.exists {
		t.Fatal("the old name still resolves after a rename")
	}
	if got, _ := tab.lookup("workstation.mesh.internal."); !got.exists {
		t.Fatal("the new name does not resolve after a rename")
	}
	if name, _, _ := tab.ptr(desktopV4); name != "workstation.mesh.internal." {
		t.Fatalf("PTR after the rename = %q", name)
	}
	tab.Remove(deskKey)
	if got, _ := tab.lookup("workstation.mesh.internal."); got.exists {
		t.Fatal("a removed member still resolves")
	}
	if name, zone, in := tab.ptr(desktopV4); name != "" || zone != "88.100.in-addr.arpa." || !in {
		t.Fatalf("PTR of a removed member's address = %q in %q (%v); want none in 88.100.in-addr.arpa.", name, zone, in)
	}
	tab.SetConfig(wire.DNSConfig{Domain: "corp.internal"})
	if got, in := tab.lookup("phone.corp.internal."); !in || !got.exists {
		t.Fatal("a member does not resolve in the new domain")
	}
	if got, _ := tab.lookup("nas.corp.internal."); !reflect.DeepEqual(got.addrs, []netip.Addr{a("100.88.0.4")}) {
		t.Fatalf("without the extra record the member nas resolves to %v", got.addrs)
	}
}

func TestTableRecords(t *testing.T) {
	tab := testTable()
	tab.SetConfig(wire.DNSConfig{Domain: "mesh.internal", Records: []wire.DNSRecord{{Name: "nas", Addrs: []netip.Addr{a("192.168.1.10")}}}})
	want := []Record{
		{Name: "desktop.mesh.internal", Addrs: []netip.Addr{desktopV4, desktopV6}, Kind: KindPeer},
		{Name: "laptop.mesh.internal", Addrs: []netip.Addr{laptopV4, a("fd6d:6573:686e::1")}, Kind: KindSelf},
		{Name: "nas.mesh.internal", Addrs: []netip.Addr{a("192.168.1.10")}, Kind: KindExtra},
		{Name: "phone.mesh.internal", Addrs: []netip.Addr{phoneV4}, Kind: KindPeer},
	}
	if got := tab.Records(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Records() =\n%+v\nwant\n%+v", got, want)
	}
}

func TestReverse(t *testing.T) {
	tests := []struct {
		name string
		want netip.Addr // invalid: not a full reverse name
	}{
		{"2.0.88.100.in-addr.arpa.", desktopV4},
		{"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.e.6.8.6.3.7.5.6.d.6.d.f.ip6.arpa.", desktopV6},
		{"88.100.in-addr.arpa.", netip.Addr{}},
		{"256.0.88.100.in-addr.arpa.", netip.Addr{}},
		{"02.0.88.100.in-addr.arpa.", netip.Addr{}},
		{"x.0.88.100.in-addr.arpa.", netip.Addr{}},
		{"10.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.e.6.8.6.3.7.5.6.d.6.d.ip6.arpa.", netip.Addr{}},
		{"desktop.mesh.internal.", netip.Addr{}},
	}
	for _, tt := range tests {
		got, ok := reverseAddr(tt.name)
		if ok != tt.want.IsValid() || got != tt.want {
			t.Errorf("reverseAddr(%s) = %v, %v; want %v", tt.name, got, ok, tt.want)
		}
	}
	zones := ReverseZones([]netip.Prefix{
		netip.MustParsePrefix("100.88.0.0/16"), netip.MustParsePrefix("10.0.0.0/20"),
		netip.MustParsePrefix("fd6d:6573:686e::/48"), netip.MustParsePrefix("fd00:1:2:3::/62"),
	})
	// A /20 gets its /16, a /62 its /60: whole octets and nibbles.
	want := []string{"88.100.in-addr.arpa", "0.10.in-addr.arpa", "e.6.8.6.3.7.5.6.d.6.d.f.ip6.arpa", "0.0.0.2.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa"}
	if !reflect.DeepEqual(zones, want) {
		t.Fatalf("ReverseZones = %v, want %v", zones, want)
	}
}
