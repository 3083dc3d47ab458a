package stack

import "sync/atomic"

// Stats are the Stack's counters since New. Frame counters cover attached
// and detached pods alike.
type Stats struct {
	// FastPathFrames and FastPathBytes count frames forwarded from one pod
	// to another without the netstack (a GSO super-frame counts once).
	FastPathFrames uint64
	FastPathBytes  uint64
	// ToStackFrames counts frames from pods handed to the netstack (a UDP
	// GSO frame counts once).
	ToStackFrames uint64
	// FromStackFrames counts frames the netstack wrote to pods.
	FromStackFrames uint64
	// ARPReplies counts ARP requests answered with GatewayMAC.
	ARPReplies uint64

	// DroppedSpoofed counts IPv4 frames whose source was not the address of
	// the pod that sent them.
	DroppedSpoofed uint64
	// DroppedTinyFragments counts IPv4 fragments from pods, not the last of
	// their datagram, that carried too little to be any stack's (minFragment).
	DroppedTinyFragments uint64
	// DroppedTTL counts frames to a local pod that arrived with TTL <= 1.
	DroppedTTL uint64
	// DroppedNoRoute counts frames to destinations the node does not route:
	// multicast, broadcast, loopback and 0.0.0.0/8, and ICMP echo requests to
	// addresses other than the gateway and local pods.
	DroppedNoRoute uint64
	// DroppedBadFrame counts frames too short or with a malformed header.
	DroppedBadFrame uint64
	// DroppedUnsupported counts frames the node does not carry: EtherTypes
	// other than IPv4, IPv6 and ARP; ARP other than requests for another
	// address; GSO types other than TCP and UDP (USO over IPv4).
	DroppedUnsupported uint64
	// DroppedWrite counts frames lost because WriteFrame of the destination
	// port failed, on the fast path and from the netstack.
	DroppedWrite uint64

	// OverlayTxFrames counts frames from pods sent through the overlay (a
	// GSO super-frame counts once). OverlayTxPackets and OverlayTxBytes
	// count the IPv4 packets handed to the overlay sender, after GSO frames
	// were cut to the MTU, including the netstack's (the gateway's answers
	// to other nodes' pods).
	OverlayTxFrames  uint64
	OverlayTxPackets uint64
	OverlayTxBytes   uint64
	// OverlayRxPackets and OverlayRxBytes count packets from the overlay
	// delivered to a local pod or to the gateway (a write error to the pod
	// is counted in DroppedWrite as well).
	// OverlayRxCoalesced counts those of them delivered to pods in GRO
	// super-frames (TCP segments of one flow coalesced).
	OverlayRxPackets   uint64
	OverlayRxBytes     uint64
	OverlayRxCoalesced uint64
	// DroppedOverlayTx counts frames and netstack packets for the overlay
	// that were not sent: larger than the MTU without GSO, malformed GSO,
	// GSO types other than TCPv4 and UDP, or an error from the sender.
	DroppedOverlayTx uint64
	// DroppedOverlayRx counts packets from the overlay that were dropped:
	// malformed, a source outside the remote routes, or a destination
	// that is neither a local pod nor the gateway. (TTL expiry and write
	// errors are counted in DroppedTTL and DroppedWrite.)
	DroppedOverlayRx uint64

	// HostTCPConns counts TCP connections from pods spliced to host
	// connections; HostTCPActive is how many are open now.
	HostTCPConns  uint64
	HostTCPActive int64
	// HostUDPFlows counts UDP flows from pods relayed through host sockets;
	// HostUDPActive is how many are open now.
	HostUDPFlows  uint64
	HostUDPActive int64
	// Refused counts TCP segments answered with RST and UDP datagrams
	// answered with ICMP port unreachable because their destination is in
	// the cluster prefixes or the pod CIDR.
	Refused uint64
	// HostDialErrors counts host connections that could not be established
	// (the pod gets a RST, or the UDP flow is dropped).
	HostDialErrors uint64
	// LimitDrops counts connection attempts and UDP flows turned away
	// because Options.MaxPendingHandshakes, MaxHostConns or MaxUDPFlows was
	// reached.
	LimitDrops uint64

	// DroppedNewFlows counts new flows (SYNs, first datagrams) from pods
	// dropped because their pod started more than MaxNewFlowsPerPod that
	// second.
	DroppedNewFlows uint64

	// PolicyDenied counts new flows (TCP SYNs, first datagrams) that the
	// Filter (NetworkPolicy) denied; they were dropped.
	PolicyDenied uint64

	// LocalDatagrams counts UDP datagrams from pods handed to a local
	// service (SetLocalService), such as DNS queries.
	LocalDatagrams uint64

	// Service NAT (zero without Options.Services). NATFlows counts the
	// flows translated since New and NATActive the entries in the
	// connection-tracking table now; NATPackets the packets translated.
	// NATNoEndpoint counts new flows to a Service port without a usable
	// endpoint, refused at once; NATDropped new flows dropped because the
	// table was full (Options.MaxConntrack) or no free reply key was found;
	// NATHalfOpenDropped new flows dropped because the half-open share of
	// the table, all of it or their client's, was full (nat.go);
	// NATRemapped new flows given another source port because their reply
	// key was another flow's (a client port reused toward the same backend).
	// NATExpired and NATFlushed count entries removed by timeout and by
	// FlushUDPBackends or a detached pod.
	NATFlows           uint64
	NATActive          int64
	NATPackets         uint64
	NATNoEndpoint      uint64
	NATDropped         uint64
	NATHalfOpenDropped uint64
	NATRemapped        uint64
	NATExpired         uint64
	NATFlushed         uint64
}

// counters are one pod's frame counters. The hot ones are written only by
// the pod's reader goroutine; fromStack* are written by the netstack.
type counters struct {
	fastPathFrames atomic.Uint64
	fastPathBytes  atomic.Uint64
	toStack        atomic.Uint64
	arpReplies     atomic.Uint64
	spoofed        atomic.Uint64
	tinyFragments  atomic.Uint64
	ttl            atomic.Uint64
	noRoute        atomic.Uint64
	badFrame       atomic.Uint64
	unsupported    atomic.Uint64
	writeErrors    atomic.Uint64
	overlayFrames  atomic.Uint64
	overlayPackets atomic.Uint64
	overlayBytes   atomic.Uint64
	overlayDropped atomic.Uint64
	localDatagrams atomic.Uint64
	newFlowDrops   atomic.Uint64

	_               [64]byte // keep the netstack's writes off the reader's cache lines
	fromStack       atomic.Uint64
	fromStackErrors atomic.Uint64
}

// count adds one frame with verdict v.
func (c *counters) count(v verdict) {
	switch v {
	case verdictStack:
		c.toStack.Add(1)
	case verdictARPReply:
		c.arpReplies.Add(1)
	case verdictBadFrame:
		c.badFrame.Add(1)
	case verdictSpoofed:
		c.spoofed.Add(1)
	case verdictTTL:
		c.ttl.Add(1)
	case verdictTinyFragment:
		c.tinyFragments.Add(1)
	case verdictNoRoute:
		c.noRoute.Add(1)
	case verdictUnsupported:
		c.unsupported.Add(1)
	}
}

// addTo adds c's counts to s.
func (c *counters) addTo(s *Stats) {
	s.FastPathFrames += c.fastPathFrames.Load()
	s.FastPathBytes += c.fastPathBytes.Load()
	s.ToStackFrames += c.toStack.Load()
	s.FromStackFrames += c.fromStack.Load()
	s.ARPReplies += c.arpReplies.Load()
	s.DroppedSpoofed += c.spoofed.Load()
	s.DroppedTinyFragments += c.tinyFragments.Load()
	s.DroppedTTL += c.ttl.Load()
	s.DroppedNoRoute += c.noRoute.Load()
	s.DroppedBadFrame += c.badFrame.Load()
	s.DroppedUnsupported += c.unsupported.Load()
	s.DroppedWrite += c.writeErrors.Load() + c.fromStackErrors.Load()
	s.OverlayTxFrames += c.overlayFrames.Load()
	s.OverlayTxPackets += c.overlayPackets.Load()
	s.OverlayTxBytes += c.overlayBytes.Load()
	s.DroppedOverlayTx += c.overlayDropped.Load()
	s.LocalDatagrams += c.localDatagrams.Load()
	s.DroppedNewFlows += c.newFlowDrops.Load()
}

// egressCounters are the Stack-wide counters of host connections.
type egressCounters struct {
	tcpConns   atomic.Uint64
	tcpActive  atomic.Int64
	udpFlows   atomic.Uint64
	udpActive  atomic.Int64
	refused    atomic.Uint64
	dialErrors atomic.Uint64
	limitDrops atomic.Uint64
}
