package routes

import (
	"net/netip"
	"strings"
	"testing"
)

func TestGatewayRulesRefuseWhatIsNotServed(t *testing.T) {
	rules := gatewayRules("mesh0", []netip.Prefix{netip.MustParsePrefix("192.168.10.0/24")}, true)
	for _, want := range []string{
		`iifname "mesh0" oifname "mesh0" drop`,
		`elements = { 192.168.10.0/24 }`,
		`iifname "mesh0" ip daddr @serve4 accept`,
		`iifname "mesh0" drop`,
		`iifname "mesh0" oifname != "mesh0" masquerade`,
	} {
		if !strings.Contains(rules, want) {
			t.Errorf("rules lack %q:\n%s", want, rules)
		}
	}
	if r := gatewayRules("mesh0", []netip.Prefix{netip.MustParsePrefix("192.168.10.0/24")}, false); strings.Contains(r, "masquerade") {
		t.Errorf("snat off and no exit routes: nothing to masquerade, got\n%s", r)
	}
}
