package agenttest

import (
	"net/netip"

	"github.com/podnet/podnet/agent"
	"github.com/podnet/podnet/cluster"
)

// Options returns the options of a test agent for node-a on src: pod range 10.244.0.0/24 of
// cluster 10.244.0.0/16, Services 10.96.0.0/16 with the DNS at 10.96.0.10, MTU 1400, no Ingress
// ports, its WireGuard port on addr (a loopback address of the test's own) and its files in
// stateDir.
func Options(src *Source, addr, stateDir string) agent.Options {
	return agent.Options{
		NodeName:    "node-a",
		NodeAddress: netip.MustParseAddr(addr),
		PodCIDR:     netip.MustParsePrefix("10.244.0.0/24"),
		Network: cluster.Network{
			ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"),
			ServiceCIDR: netip.MustParsePrefix("10.96.0.0/16"),
			DNSIP:       netip.MustParseAddr("10.96.0.10"),
			Domain:      "cluster.local",
			MTU:         1400,
			Upstreams:   []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")},
		},
		Source:   src,
		Nodes:    src,
		StateDir: stateDir,
	}
}
