// Package stack is a node's data path: it joins the pods' links (Ports,
// normally TAP devices with a virtio-net header) and terminates whatever ends
// on the node in a gVisor netstack.
//
// # Two paths
//
// Measurements on this project's development machine (DESIGN.md, "Data path")
// show that moving a frame between two vnet-header TAPs is cheap and that
// routing the same frames through gVisor's IP layer is an order of magnitude
// slower. So every frame read from a pod takes one of two paths:
//
//   - The fast path, for IPv4 from a pod to another pod attached to this
//     Stack. The reader goroutine of the source port looks the destination up
//     in an immutable table (swapped with atomic.Pointer when pods come and
//     go), rewrites the Ethernet addresses (src GatewayMAC, dst PodMAC of the
//     destination), decrements the TTL with an incremental header checksum
//     update and writes the frame to the destination port. The
//     virtio_net_hdr is passed through untouched: a GSO super-frame of up to
//     64 KiB stays whole, and its csum_start/csum_offset remain valid because
//     the Ethernet header keeps its length. There is no per-frame allocation,
//     no lock of the Stack's and no call into gVisor; the cost is close to a
//     plain copy.
//
//   - The overlay path, for IPv4 from a pod to another node's pod: the
//     destination is in a remote route (SetRemoteRoutes: the other nodes'
//     pod CIDRs, never this node's PodCIDR). The reader strips the
//     virtio_net_hdr and Ethernet header, decrements the TTL and hands the
//     IP packet to an OverlaySender (the WireGuard overlay, package
//     overlay), which must never get a packet larger than Options.MTU: a
//     TCP GSO super-frame is cut into MTU-sized segments right here
//     (segmentTCP4: headers copied, lengths, IP IDs, sequence numbers,
//     flags and both checksums per segment), a UDP GSO frame into
//     datagrams, and the partial checksum of a NEEDS_CSUM frame is
//     completed. Every packet that enters the overlay is thus a complete,
//     valid IPv4 packet. The segments of one frame go to the sender in one
//     batch. DeliverFromOverlay is the other direction: decrypted packets
//     for a local pod get the Ethernet header and a TTL decrement and are
//     written to the pod's port; consecutive TCP segments of one flow in a
//     batch are coalesced (GRO) into one GSO super-frame with NEEDS_CSUM,
//     other packets get a virtio_net_hdr with DATA_VALID (WireGuard
//     authenticated them and the sender completed their checksums, so the
//     pod's kernel need not verify them); a packet for the gateway
//     goes to the netstack (through an overlay NIC that holds the gateway
//     address and routes the remote routes, so a remote pod's ping to the
//     gateway is answered and its connections to Gateway:port reach
//     HostLoopback as a local pod's do). Sources outside the remote routes
//     and other destinations are dropped; WireGuard itself already drops a
//     packet whose source is outside the sending peer's allowed IPs.
//
//   - The stack path, for what ends on the node: traffic to the gateway
//     address, to anything outside the node's pods, IPv6 (not carried yet:
//     the netstack has only IPv4, so it drops it). Each pod has a NIC in
//     one gVisor stack, bound to a link endpoint of this package (not
//     fdbased, which handles neither vnet headers nor one-frame-per-call
//     ports well): it strips the Ethernet header inbound, accepts TCP GSO
//     super-frames whole (gVisor's TCP takes segments larger than the MSS),
//     splits UDP GSO frames into datagrams and trusts the pod kernel's
//     checksums (CapabilityRXChecksumOffload: a pod's frames never cross a
//     wire). Outbound it adds the Ethernet header and a virtio_net_hdr that
//     carries gVisor's host GSO (TCP segments up to 64 KiB with a partial
//     checksum, completed or segmented by the pod's kernel).
//
// A pod's link may have several queues (a multi-queue TAP, AttachPodQueues),
// one Port each with a reader goroutine of its own, so the pod's flows are
// read in parallel. A frame to a pod is written to the queue chosen by a
// hash of its flow (addresses, protocol, ports): never spread over queues,
// a flow is never reordered, and the pod's kernel sends the flow's replies
// on the queue it was written to, hence to one reader too. The pod's NIC in
// the netstack takes frames from every queue and writes to the first.
//
// Service NAT (nat.go) sits in front of these paths: TCP and UDP from a pod
// to a Service address (Options.ServicePrefixes) is translated to a backend
// that Options.Services picks once per new flow, the flow is kept in a
// connection-tracking table, and the translated frame takes the fast or the
// overlay path by its new destination; replies are translated back on the
// client's node, from a local backend or from the overlay. A Service port
// without endpoints is refused at once by the netstack (RST or ICMP port
// unreachable). DialTCP and DialUDP open connections from the netstack to
// any pod (NodePorts use them), with an outside client's address as the
// source where the pod is local.
//
// Before either path, ARP requests are answered with GatewayMAC (the pod
// routes everything via the gateway, so it only ever needs that MAC), and
// IPv4 whose source is not the port's pod IP is dropped (anti-spoofing).
// Multicast, broadcast, loopback and unspecified destinations, and ICMP echo
// requests to anything but the gateway or a local pod, are dropped rather
// than answered by the promiscuous netstack on behalf of hosts it cannot
// reach.
//
// # What ends on the node
//
// Every pod NIC carries the gateway address and is promiscuous with spoofing
// enabled, so the TCP and UDP forwarders see connections to any address.
// Connections to the gateway are forwarded to Options.HostLoopback on the
// same port where it is set, and refused where it is not (Kubernetes mode: a
// pod must not reach the node's loopback services); connections to ClusterPrefixes or the PodCIDR (pods that are not
// attached here; other nodes' pods take the overlay path before they reach
// the netstack) are refused with a TCP RST or an ICMP port unreachable;
// everything else is dialled through Options.HostDialer, so it leaves with
// the host's address (SNAT), and the two connections are spliced, with TCP
// half-closes carried across. ICMP echo to the gateway is answered by gVisor.
// Peers cannot grow state without bound: the number of TCP handshakes in
// progress (Options.MaxPendingHandshakes), of spliced TCP connections
// (Options.MaxHostConns) and of UDP flows (Options.MaxUDPFlows) is capped, and
// UDP flows expire after Options.UDPIdleTimeout without traffic.
//
// gVisor's TCP acknowledges every segment at once; pure ACKs toward a pod are
// held for up to 500 µs so that the next segment of their flow can carry them
// (ack.go), which saves a TAP write per request on connections the netstack
// terminates.
//
// The netstack runs with SACK, RACK, CUBIC, receive-buffer moderation and
// send and receive buffers of up to 8 MiB.
//
// # Rules
//
// The packet path counts (Stats); it does not log. Every goroutine the Stack
// starts is owned by it: DetachPod stops and waits for the pod's reader, and
// Close cancels and waits for all of them.
//
// This package never imports Kubernetes packages and knows nothing of
// Kubernetes objects: it is given addresses and ports by the node agent.
package stack
