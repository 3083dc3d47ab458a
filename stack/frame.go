package stack

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/podnet/podnet/tap"
)

// Frame layout: virtio_net_hdr, Ethernet header, network header.
const (
	vnetLen   = tap.VirtioNetHdrLen
	ethLen    = 14
	ethOff    = vnetLen          // Ethernet header
	netOff    = vnetLen + ethLen // IP header or ARP body
	arpLen    = 28               // ARP body for IPv4 over Ethernet
	minEthLen = 60               // minimum Ethernet frame without FCS
)

// EtherTypes.
const (
	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
)

// macPrefix starts every MAC address of this package: 0a is a locally
// administered unicast address, 58 follows the convention of other CNI
// plugins.
var macPrefix = [2]byte{0x0a, 0x58}

// PodMAC returns the MAC address of the pod with IP address ip:
// 0a:58 followed by the four bytes of an IPv4 address (the last four of an
// IPv6 address). It is deterministic, so the pod side and the Stack agree
// without asking each other.
func PodMAC(ip netip.Addr) net.HardwareAddr {
	m := macFor(ip)
	return net.HardwareAddr(m[:])
}

// GatewayMAC returns the MAC address the Stack uses for gateway gw, by the
// same scheme as PodMAC.
func GatewayMAC(gw netip.Addr) net.HardwareAddr {
	return PodMAC(gw)
}

// macFor is PodMAC as an array.
func macFor(ip netip.Addr) [6]byte {
	a := ip.As16()
	return [6]byte{macPrefix[0], macPrefix[1], a[12], a[13], a[14], a[15]}
}

// verdict is what the fast path does with a frame read from a pod.
type verdict uint8

const (
	verdictStack        verdict = iota // hand to the netstack
	verdictForward                     // rewrite and write to another local pod
	verdictARPReply                    // answer an ARP request with GatewayMAC
	verdictBadFrame                    // malformed: drop
	verdictSpoofed                     // IPv4 source is not the pod's address: drop
	verdictTTL                         // would be forwarded, but TTL <= 1: drop
	verdictTinyFragment                // a fragment, not the last, under minFragment bytes: drop
	verdictNoRoute                     // a destination the node does not route: drop
	verdictUnsupported                 // EtherType or ARP operation not carried: drop
	verdictOverlay                     // to another node's pod: send through the overlay
)

var verdictNames = [...]string{
	verdictStack:        "stack",
	verdictForward:      "forward",
	verdictARPReply:     "arp-reply",
	verdictBadFrame:     "bad-frame",
	verdictSpoofed:      "spoofed",
	verdictTTL:          "ttl",
	verdictTinyFragment: "tiny-fragment",
	verdictNoRoute:      "no-route",
	verdictUnsupported:  "unsupported",
	verdictOverlay:      "overlay",
}

func (v verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "verdict?"
}

// podTable is the immutable snapshot of the attached pods that the readers
// consult for every frame. It is replaced, never modified.
type podTable struct {
	byIP map[[4]byte]*pod
}

// lookup returns the pod with IPv4 address a, or nil. It accepts a nil table.
func (t *podTable) lookup(a [4]byte) *pod {
	if t == nil {
		return nil
	}
	return t.byIP[a]
}

// minFragment is the least payload a fragment other than the last may carry
// from a pod. A pod's kernel cuts a datagram at its path MTU, which Linux never
// lowers below 552 bytes (net.ipv4.route.min_pmtu), so its fragments carry at
// least 528; smaller ones are the tiny fragments of RFC 1858 (hping3 -f cuts
// 16 bytes), whose only use is to cost the path a frame's work for every 16
// bytes, to hide ports from filters, and to fill reassembly queues. They are
// dropped where they are read.
const minFragment = 256

// The IPv4 flags and fragment offset word (bytes 6 and 7 of the header): the More Fragments
// flag, and the offset of a fragment in 8-byte units (zero for an unfragmented datagram and for
// a first fragment).
const (
	ipMoreFragments      = 0x2000
	ipFragmentOffsetMask = 0x1fff
)

// classify is classifyRoute without remote routes.
func classify(frame []byte, self, gateway [4]byte, pods *podTable) (verdict, *pod) {
	return classifyRoute(frame, self, gateway, pods, nil)
}

// classifyRoute decides what to do with frame, read from the port of the pod
// with address self. For verdictForward it also returns the destination pod.
// Destinations in remote (which may be nil) get verdictOverlay. It does not
// modify frame.
func classifyRoute(frame []byte, self, gateway [4]byte, pods *podTable, remote *remoteTable) (verdict, *pod) {
	if len(frame) < netOff {
		return verdictBadFrame, nil
	}
	switch binary.BigEndian.Uint16(frame[ethOff+12:]) {
	case etherTypeIPv4:
	case etherTypeARP:
		return classifyARP(frame[netOff:], self), nil
	case etherTypeIPv6:
		return verdictStack, nil
	default:
		return verdictUnsupported, nil
	}

	ip := frame[netOff:]
	if len(ip) < 20 || ip[0]>>4 != 4 {
		return verdictBadFrame, nil
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ihl < 20 || total < ihl || total > len(ip) {
		return verdictBadFrame, nil
	}
	if [4]byte(ip[12:16]) != self {
		return verdictSpoofed, nil
	}
	if binary.BigEndian.Uint16(ip[6:])&ipMoreFragments != 0 && total-ihl < minFragment {
		return verdictTinyFragment, nil
	}
	dst := [4]byte(ip[16:20])
	if p := pods.lookup(dst); p != nil {
		if ip[8] <= 1 {
			return verdictTTL, nil
		}
		return verdictForward, p
	}
	if remote.routes(dst) {
		if ip[8] <= 1 {
			return verdictTTL, nil
		}
		return verdictOverlay, nil
	}
	if !routable(dst) {
		return verdictNoRoute, nil
	}
	// The netstack is promiscuous and would answer an echo request to any
	// address; only the gateway should answer.
	const protoICMP, icmpEcho = 1, 8
	firstFragment := binary.BigEndian.Uint16(ip[6:])&ipFragmentOffsetMask == 0
	if ip[9] == protoICMP && dst != gateway && firstFragment && total > ihl && ip[ihl] == icmpEcho {
		return verdictNoRoute, nil
	}
	return verdictStack, nil
}

// routable reports whether dst is a unicast address the node may carry
// traffic to: not 0.0.0.0/8, loopback, multicast, reserved or broadcast.
func routable(dst [4]byte) bool {
	return dst[0] != 0 && dst[0] != 127 && dst[0] < 224
}

// classifyARP decides what to do with an ARP body from the pod with address
// self: answer requests for any address but the pod's own.
func classifyARP(arp []byte, self [4]byte) verdict {
	if len(arp) < arpLen {
		return verdictBadFrame
	}
	const htypeEthernet, opRequest = 1, 1
	if binary.BigEndian.Uint16(arp[0:]) != htypeEthernet || binary.BigEndian.Uint16(arp[2:]) != etherTypeIPv4 ||
		arp[4] != 6 || arp[5] != 4 || binary.BigEndian.Uint16(arp[6:]) != opRequest {
		return verdictUnsupported
	}
	sender, target := [4]byte(arp[14:18]), [4]byte(arp[24:28])
	if target == sender || target == self {
		// Gratuitous ARP or duplicate address detection: nobody else
		// owns the pod's address.
		return verdictUnsupported
	}
	return verdictARPReply
}

// arpReplyLen is the length of the frame buildARPReply writes.
const arpReplyLen = vnetLen + minEthLen

// buildARPReply writes into b (at least arpReplyLen bytes) the answer to the
// ARP request in frame (which classify accepted as verdictARPReply): the
// target address is at gwMAC. It returns the frame length.
func buildARPReply(b, frame []byte, gwMAC [6]byte) int {
	b = b[:arpReplyLen]
	clear(b)
	req := frame[netOff:]
	// Ethernet: to the requester, from the gateway.
	copy(b[ethOff:], req[8:14])
	copy(b[ethOff+6:], gwMAC[:])
	binary.BigEndian.PutUint16(b[ethOff+12:], etherTypeARP)
	rep := b[netOff:]
	copy(rep[0:6], req[0:6]) // htype, ptype, hlen, plen
	binary.BigEndian.PutUint16(rep[6:], 2)
	copy(rep[8:14], gwMAC[:])    // sender hardware address
	copy(rep[14:18], req[24:28]) // sender protocol address: the requested one
	copy(rep[18:24], req[8:14])  // target hardware address: the requester
	copy(rep[24:28], req[14:18]) // target protocol address
	return arpReplyLen
}

// rewriteForward turns frame (classified verdictForward) into the frame the
// destination pod receives: Ethernet from gwMAC to dstMAC, TTL one less,
// header checksum updated incrementally (RFC 1624). Nothing else changes: the
// virtio_net_hdr and the rest of the packet are passed through as they are.
func rewriteForward(frame []byte, dstMAC, gwMAC *[6]byte) {
	copy(frame[ethOff:ethOff+6], dstMAC[:])
	copy(frame[ethOff+6:ethOff+12], gwMAC[:])
	decrementTTL(frame[netOff:])
}

// updateChecksum returns the Internet checksum hc updated for one 16-bit word
// of the covered data changing from old to new: HC' = ~(~HC + ~m + m')
// (RFC 1624, equation 3).
func updateChecksum(hc, old, new uint16) uint16 {
	sum := uint32(^hc) + uint32(^old) + uint32(new)
	sum = sum&0xffff + sum>>16
	sum = sum&0xffff + sum>>16
	return ^uint16(sum)
}

// flowHash hashes the flow of the IPv4 packet ip (at least a valid header,
// as classifyRoute and DeliverFromOverlay check): its addresses and protocol
// and, for a TCP, UDP, SCTP or UDP-Lite packet that is not a fragment, its
// ports. Fragments hash without ports, so the fragments of a datagram stay
// together. It has no seed: a flow hashes the same everywhere, always.
func flowHash(ip []byte) uint32 {
	const (
		protoTCP     = 6
		protoUDP     = 17
		protoSCTP    = 132
		protoUDPLite = 136
	)
	ihl := int(ip[0]&0x0f) * 4
	addrs := binary.LittleEndian.Uint64(ip[12:20])
	rest := uint64(ip[9])
	if binary.BigEndian.Uint16(ip[6:])&0x3fff == 0 && len(ip) >= ihl+4 {
		switch ip[9] {
		case protoTCP, protoUDP, protoSCTP, protoUDPLite:
			rest |= uint64(binary.LittleEndian.Uint32(ip[ihl:])) << 8
		}
	}
	// splitmix64's finalizer over both words.
	h := addrs ^ rest*0x9e3779b97f4a7c15
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return uint32(h >> 32)
}
