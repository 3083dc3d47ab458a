package capture

import (
	"encoding/binary"
	"net/netip"
)

// Builders of well-formed packets with correct checksums, for the tests.

var (
	macPod = []byte{0x0a, 0x58, 0x0a, 0xf4, 0x00, 0x03}
	macGW  = []byte{0x0a, 0x58, 0x0a, 0xf4, 0x00, 0x01}
)

// checksum folds the Internet checksum of b onto sum.
func checksum(sum uint32, b []byte) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// pseudoSum is the sum of the pseudo-header of a transport segment of
// length n.
func pseudoSum(src, dst netip.Addr, proto uint8, n int) uint32 {
	var sum uint32
	for _, a := range [][]byte{src.AsSlice(), dst.AsSlice()} {
		for i := 0; i < len(a); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(a[i:]))
		}
	}
	return sum + uint32(proto) + uint32(n)
}

func eth(etherType uint16, payload []byte) []byte {
	b := append(append([]byte{}, macGW...), macPod...)
	b = binary.BigEndian.AppendUint16(b, etherType)
	return append(b, payload...)
}

func vlanEth(id, etherType uint16, payload []byte) []byte {
	b := append(append([]byte{}, macGW...), macPod...)
	b = binary.BigEndian.AppendUint16(b, etherTypeVLAN)
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, etherType)
	return append(b, payload...)
}

// ipv4 builds an IPv4 packet; frag is the flags and fragment offset field.
func ipv4(src, dst string, proto uint8, frag uint16, payload []byte) []byte {
	return ipv4Options(src, dst, proto, frag, nil, payload)
}

func ipv4Options(src, dst string, proto uint8, frag uint16, options, payload []byte) []byte {
	hl := 20 + len(options)
	b := make([]byte, hl, hl+len(payload))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(payload)))
	binary.BigEndian.PutUint16(b[4:], 0x1234)
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = 64
	b[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], options)
	binary.BigEndian.PutUint16(b[10:], checksum(0, b))
	return append(b, payload...)
}

func ipv6(src, dst string, next uint8, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6] = next
	b[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, payload...)
}

// tcp builds a TCP segment from src to dst (addresses, for the checksum).
func tcp(src, dst string, sport, dport uint16, seq, ack uint32, flags uint8, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 64240)
	b = append(b, payload...)
	sum := pseudoSum(netip.MustParseAddr(src), netip.MustParseAddr(dst), protoTCP, len(b))
	binary.BigEndian.PutUint16(b[16:], checksum(sum, b))
	return b
}

func udp(src, dst string, sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	b = append(b, payload...)
	sum := pseudoSum(netip.MustParseAddr(src), netip.MustParseAddr(dst), protoUDP, len(b))
	c := checksum(sum, b)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[6:], c)
	return b
}

// sctp builds an SCTP common header with a DATA-less body; its checksum
// (CRC32c) is left zero, which the filter and the summary do not read.
func sctp(sport, dport uint16) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	return b
}

// icmpEcho builds an ICMP (or, with v6, ICMPv6 without its checksum) echo
// message of 8+n bytes.
func icmpEcho(typ uint8, id, seq uint16, n int) []byte {
	b := make([]byte, 8+n)
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	binary.BigEndian.PutUint16(b[2:], checksum(0, b))
	return b
}

func arp(op uint16, sender, target string) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)
	binary.BigEndian.PutUint16(b[2:], etherTypeIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], op)
	copy(b[8:], macPod)
	s, t := netip.MustParseAddr(sender).As4(), netip.MustParseAddr(target).As4()
	copy(b[14:], s[:])
	copy(b[24:], t[:])
	return b
}

// testPacket is a packet of the shared test set.
type testPacket struct {
	name     string
	linkType uint32
	data     []byte
}

const (
	podA  = "10.244.0.3"
	podB  = "10.244.1.2"
	dnsIP = "10.96.0.10"
	podA6 = "fd00::3"
	podB6 = "fd00:1::2"
)

// testPackets returns the packets the filter and summary tests use.
func testPackets() []testPacket {
	syn := ipv4(podA, podB, protoTCP, 0, tcp(podA, podB, 41234, 80, 1000, 0, tcpSYN, nil))
	fragment := ipv4(podA, dnsIP, protoUDP, 185, udp(podA, dnsIP, 5353, 53, make([]byte, 33))) // offset 1480
	truncated := ipv4(podA, podB, protoTCP, 0, tcp(podA, podB, 41234, 80, 1000, 0, tcpSYN, nil))
	return []testPacket{
		{"tcp syn", LinkTypeEthernet, eth(etherTypeIPv4, syn)},
		{"tcp reply", LinkTypeEthernet, eth(etherTypeIPv4, ipv4(podB, podA, protoTCP, 0, tcp(podB, podA, 80, 41234, 5000, 1001, tcpSYN|tcpACK, nil)))},
		{"udp dns", LinkTypeEthernet, eth(etherTypeIPv4, ipv4(podA, dnsIP, protoUDP, 0, udp(podA, dnsIP, 5353, 53, make([]byte, 33))))},
		{"icmp echo", LinkTypeEthernet, eth(etherTypeIPv4, ipv4(podA, podB, protoICMP, 0, icmpEcho(8, 1, 2, 56)))},
		{"arp request", LinkTypeEthernet, eth(etherTypeARP, arp(1, podA, "10.244.0.1"))},
		{"sctp", LinkTypeEthernet, eth(etherTypeIPv4, ipv4(podA, podB, protoSCTP, 0, sctp(5000, 6000)))},
		{"tcp6", LinkTypeEthernet, eth(etherTypeIPv6, ipv6(podA6, podB6, protoTCP, tcp(podA6, podB6, 41234, 80, 7, 0, tcpSYN, nil)))},
		{"udp6", LinkTypeEthernet, eth(etherTypeIPv6, ipv6(podA6, "fd00::a", protoUDP, udp(podA6, "fd00::a", 5353, 53, make([]byte, 20))))},
		{"icmp6 echo", LinkTypeEthernet, eth(etherTypeIPv6, ipv6(podA6, podB6, protoICMPv6, icmpEcho(128, 1, 2, 56)))},
		{"raw tcp", LinkTypeRaw, syn},
		{"raw tcp6", LinkTypeRaw, ipv6(podA6, podB6, protoTCP, tcp(podA6, podB6, 41234, 80, 7, 0, tcpSYN, nil))},
		{"vlan tcp", LinkTypeEthernet, vlanEth(100, etherTypeIPv4, syn)},
		{"first fragment", LinkTypeEthernet, eth(etherTypeIPv4, ipv4(podA, dnsIP, protoUDP, 0x2000, udp(podA, dnsIP, 5353, 53, make([]byte, 33))))},
		{"fragment", LinkTypeEthernet, eth(etherTypeIPv4, fragment)},
		{"truncated tcp", LinkTypeEthernet, eth(etherTypeIPv4, truncated[:22])},
		{"truncated ip", LinkTypeEthernet, eth(etherTypeIPv4, syn[:12])},
		{"ip options", LinkTypeEthernet, eth(etherTypeIPv4, ipv4Options(podA, podB, protoTCP, 0, []byte{1, 1, 1, 0}, tcp(podA, podB, 41234, 80, 1000, 0, tcpSYN, nil)))},
		{"lldp", LinkTypeEthernet, eth(0x88cc, make([]byte, 46))},
		{"short ethernet", LinkTypeEthernet, make([]byte, 10)},
	}
}
