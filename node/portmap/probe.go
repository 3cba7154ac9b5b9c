package portmap

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// ProbeTimeout bounds each probe. A LAN gateway answers NAT-PMP and PCP in
// milliseconds and UPnP devices within the M-SEARCH's MX (1 s); 2 s leaves
// room for a lost packet (sends at 0, 250 and 750 ms) and the MX delay.
const ProbeTimeout = 2 * time.Second

// ProbeOptions say where to probe. Zero values mean the real network.
type ProbeOptions struct {
	Gateway    netip.Addr     // NAT-PMP/PCP server; zero: DefaultGateway
	ServerPort uint16         // zero: ServerPort (5351)
	SSDP       netip.AddrPort // M-SEARCH target; zero: SSDPGroup
	Timeout    time.Duration  // per probe; zero: ProbeTimeout
}

// Result is which port-mapping services answered.
type Result struct {
	Gateway    netip.Addr // zero when none was found
	GatewayErr error
	NATPMP     bool
	ExternalIP netip.Addr // the gateway's external address, per NAT-PMP
	PCP        bool
	UPnP       bool
	// Why a service is counted absent: ErrNoAnswer (nothing there), or a
	// refusal (*ResultError), or a local failure.
	NATPMPErr, PCPErr, UPnPErr error
}

// Probe asks the gateway for NAT-PMP and PCP and the LAN for a UPnP IGD, in
// parallel, each within the probe timeout.
func Probe(ctx context.Context, opts ProbeOptions) Result {
	ctx, cancel := context.WithTimeout(ctx, orDefault(opts.Timeout, ProbeTimeout))
	defer cancel()
	res := Result{Gateway: opts.Gateway}
	var wg sync.WaitGroup
	wg.Go(func() {
		target := opts.SSDP
		if !target.IsValid() {
			target = netip.MustParseAddrPort(SSDPGroup)
		}
		_, res.UPnPErr = DiscoverIGD(ctx, target)
		res.UPnP = res.UPnPErr == nil
	})
	if !res.Gateway.IsValid() {
		res.Gateway, res.GatewayErr = DefaultGateway(ctx)
	}
	if res.GatewayErr == nil {
		server := netip.AddrPortFrom(res.Gateway, serverPort(opts.ServerPort))
		wg.Go(func() {
			res.ExternalIP, res.NATPMPErr = ExternalAddress(ctx, server)
			res.NATPMP = res.NATPMPErr == nil
		})
		wg.Go(func() {
			res.PCPErr = Announce(ctx, server)
			res.PCP = res.PCPErr == nil
		})
	}
	wg.Wait()
	return res
}

func serverPort(p uint16) uint16 {
	if p == 0 {
		return ServerPort
	}
	return p
}
