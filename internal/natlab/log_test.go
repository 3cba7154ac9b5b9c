package natlab

import (
	"strings"
	"testing"
)

// TestPacketLog checks the log reads as a packet's path, hop by hop.
func TestPacketLog(t *testing.T) {
	l, buf := newLab(t)
	stun := l.NewHost("stun")
	primary, other := listen(t, stun, 3478), listen(t, stun, 3479)
	home := mustNAT(t, l, named(PortRestrictedCone(), "home-a"))
	alice := listen(t, home.NewHost("alice"), 41820)

	ext := observe(t, alice, primary)
	send(t, other, ext, "from the other port")
	send(t, primary, ap("10.1.2.3:9"), "nowhere")

	want := []string{
		"home-a: up at 198.18.1.1 on the internet (endpoint-independent mapping, address-and-port-dependent filtering, preserve ports)",
		"alice 192.168.1.2:41820 -> 198.18.0.1:3478: home-a maps 192.168.1.2:41820 as 198.18.1.1:41820 (new)",
		"alice 198.18.1.1:41820 -> 198.18.0.1:3478: delivered to stun",
		"stun 198.18.0.1:3479 -> 198.18.1.1:41820: home-a filters: dropped (no mapping accepts 198.18.0.1:3479, address-and-port-dependent)",
		"stun 198.18.0.1:3478 -> 10.1.2.3:9: dropped (no route to 10.1.2.3 on the internet)",
	}
	if got := buf.text(); got != strings.Join(want, "\n") {
		t.Errorf("packet log:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}
