package netlab

import (
	"strconv"
	"strings"
	"testing"
)

func TestSiteConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  SiteConfig
		want string // in the error; "" for none
	}{
		{SiteConfig{Kind: DoubleNAT, UplinkMTU: 1400}, ""},
		{SiteConfig{Kind: DoubleNAT, UplinkMTU: 1280, DropTooBig: true}, ""},
		{SiteConfig{Kind: PortRestricted, DropTooBig: true}, ""},
		{SiteConfig{Kind: PortRestricted, UplinkMTU: 1400}, "use kind doublenat"},
		{SiteConfig{Kind: DoubleNAT, UplinkMTU: 9000}, "UplinkMTU 9000; use 576-1500"},
		{SiteConfig{Kind: Public, Hosts: 9}, "9 hosts"},
	} {
		err := tc.cfg.validate()
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// TestUplinkMTU: behind a DoubleNAT home's 1400-byte uplink a don't-fragment
// packet that fits passes, a larger one is refused by the home router with
// ICMP "fragmentation needed" naming 1400, or, in a black hole, vanishes.
func TestUplinkMTU(t *testing.T) {
	l := newTestLab(t)
	if _, err := l.CoordinatorHost(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	server, _ := CoordinatorAddrs()
	for _, tc := range []struct {
		name       string
		dropTooBig bool
	}{
		{"ICMP delivered", false},
		{"black hole", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each its own site; the black hole waits out ping's -W
			ctx := testCtx(t)
			site, err := l.AddSite(ctx, SiteConfig{Kind: DoubleNAT, UplinkMTU: 1400, DropTooBig: tc.dropTooBig})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { site.Close() })
			h := site.Hosts[0].NS
			ping := func(payload int) (string, error) {
				// -M do: don't fragment; an IPv4 echo is payload + 28 bytes.
				return h.Exec(ctx, l.tools.Ping, "-n", "-c", "1", "-W", "2", "-M", "do", "-s", strconv.Itoa(payload), server.String())
			}
			if out, err := ping(1400 - 28); err != nil {
				t.Fatalf("a 1400-byte packet through a 1400-byte uplink: %v\n%s", err, out)
			}
			out, err := ping(1500 - 28)
			if err == nil {
				t.Fatalf("a 1500-byte don't-fragment packet crossed a 1400-byte uplink:\n%s", out)
			}
			if told := strings.Contains(out, "mtu = 1400") || strings.Contains(out, "mtu=1400"); told == tc.dropTooBig {
				t.Errorf("ICMP fragmentation needed reached the host: %v, want %v:\n%s", told, !tc.dropTooBig, out)
			}
		})
	}
}
