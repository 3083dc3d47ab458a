package capture

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// Summary describes a packet of the link type in one line, as `tcpdump -n`
// prints it without the time:
//
//	IP 10.244.0.3.41234 > 10.244.1.2.80: Flags [S], seq 1000, length 0
//	IP 10.244.0.3.5353 > 10.96.0.10.53: UDP, length 33
//	IP 10.244.0.3 > 10.244.1.2: ICMP echo request, id 1, seq 2, length 64
//	ARP, Request who-has 10.244.0.1 tell 10.244.0.3
//
// IPv6 packets start with IP6, 802.1Q-tagged frames with "vlan ID, ".
// Sequence numbers are absolute (as with tcpdump -S) since Summary keeps no
// state between packets, and lengths are those of the payload the headers
// announce, so a packet cut by the snaplen shows its length on the wire. A
// packet too short for a header it announces, or malformed, is described
// as such ("IP truncated (12 bytes)"). Summary never panics.
func Summary(linkType uint32, pkt []byte) string {
	switch linkType {
	case LinkTypeEthernet:
		return summarizeEthernet(pkt)
	case LinkTypeRaw:
		if len(pkt) == 0 {
			return "empty packet"
		}
		switch v := pkt[0] >> 4; v {
		case 4:
			return summarizeIPv4(pkt)
		case 6:
			return summarizeIPv6(pkt)
		default:
			return fmt.Sprintf("IP version %d unknown (%d bytes)", v, len(pkt))
		}
	default:
		return fmt.Sprintf("link type %d, length %d", linkType, len(pkt))
	}
}

func summarizeEthernet(pkt []byte) string {
	if len(pkt) < ethHeaderLen {
		return fmt.Sprintf("Ethernet truncated (%d bytes)", len(pkt))
	}
	et := binary.BigEndian.Uint16(pkt[12:])
	net := pkt[ethHeaderLen:]
	vlan := ""
	if et == etherTypeVLAN {
		if len(pkt) < ethHeaderLen+vlanTagLen {
			return fmt.Sprintf("802.1Q truncated (%d bytes)", len(pkt))
		}
		vlan = fmt.Sprintf("vlan %d, ", binary.BigEndian.Uint16(pkt[14:])&0x0fff)
		et = binary.BigEndian.Uint16(pkt[16:])
		net = pkt[ethHeaderLen+vlanTagLen:]
	}
	switch {
	case et == etherTypeIPv4:
		return vlan + summarizeIPv4(net)
	case et == etherTypeIPv6:
		return vlan + summarizeIPv6(net)
	case et == etherTypeARP:
		return vlan + summarizeARP(net)
	case et < 0x0600: // an IEEE 802.3 length, not an EtherType
		return fmt.Sprintf("%s802.3, length %d", vlan, len(net))
	default:
		return fmt.Sprintf("%sethertype 0x%04x, length %d", vlan, et, len(net))
	}
}

func summarizeARP(b []byte) string {
	if len(b) < arpFixedLen {
		return fmt.Sprintf("ARP truncated (%d bytes)", len(b))
	}
	op := binary.BigEndian.Uint16(b[6:])
	if binary.BigEndian.Uint16(b[0:]) != 1 || binary.BigEndian.Uint16(b[2:]) != etherTypeIPv4 || b[4] != 6 || b[5] != 4 {
		return fmt.Sprintf("ARP, hardware type %d, protocol 0x%04x, op %d, length %d",
			binary.BigEndian.Uint16(b[0:]), binary.BigEndian.Uint16(b[2:]), op, len(b))
	}
	if len(b) < arpIPv4Len {
		return fmt.Sprintf("ARP truncated (%d bytes)", len(b))
	}
	sender := netip.AddrFrom4([4]byte(b[14:18]))
	target := netip.AddrFrom4([4]byte(b[24:28]))
	switch op {
	case 1:
		return fmt.Sprintf("ARP, Request who-has %s tell %s", target, sender)
	case 2:
		return fmt.Sprintf("ARP, Reply %s is-at %s", sender, formatMAC(b[8:14]))
	default:
		return fmt.Sprintf("ARP, op %d, sender %s, target %s", op, sender, target)
	}
}

func formatMAC(b []byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}

func summarizeIPv4(b []byte) string {
	if len(b) < ipv4MinLen {
		return fmt.Sprintf("IP truncated (%d bytes)", len(b))
	}
	if v := b[0] >> 4; v != 4 {
		return fmt.Sprintf("IP bad version %d (%d bytes)", v, len(b))
	}
	hl := int(b[0]&0x0f) * 4
	if hl < ipv4MinLen {
		return fmt.Sprintf("IP bad header length %d (%d bytes)", hl, len(b))
	}
	if len(b) < hl {
		return fmt.Sprintf("IP truncated (%d bytes, header of %d)", len(b), hl)
	}
	total := int(binary.BigEndian.Uint16(b[2:]))
	if total == 0 {
		total = len(b) // segmentation offload leaves it to the device
	}
	if total < hl {
		return fmt.Sprintf("IP bad total length %d (%d bytes)", total, len(b))
	}
	src := netip.AddrFrom4([4]byte(b[12:16]))
	dst := netip.AddrFrom4([4]byte(b[16:20]))
	payload := b[hl:min(total, len(b))]
	if off := int(binary.BigEndian.Uint16(b[6:])&0x1fff) * 8; off != 0 {
		return fmt.Sprintf("IP %s > %s: %s fragment, offset %d, length %d", src, dst, protoName(b[9]), off, total-hl)
	}
	return "IP " + summarizeTransport(src, dst, b[9], payload, total-hl)
}

// IPv6 extension headers that Summary steps over.
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6DestOpts = 60
)

func summarizeIPv6(b []byte) string {
	if len(b) < ipv6HeaderLen {
		return fmt.Sprintf("IP6 truncated (%d bytes)", len(b))
	}
	if v := b[0] >> 4; v != 6 {
		return fmt.Sprintf("IP6 bad version %d (%d bytes)", v, len(b))
	}
	length := int(binary.BigEndian.Uint16(b[4:]))
	if length == 0 {
		length = len(b) - ipv6HeaderLen // a jumbogram, or segmentation offload
	}
	src := netip.AddrFrom16([16]byte(b[8:24]))
	dst := netip.AddrFrom16([16]byte(b[24:40]))
	next := b[6]
	payload := b[ipv6HeaderLen:min(ipv6HeaderLen+length, len(b))]
	for range 8 { // a bound on the chain of extension headers
		var n int
		switch next {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts:
			if len(payload) < 2 {
				return fmt.Sprintf("IP6 %s > %s: extension header %d truncated", src, dst, next)
			}
			n = (int(payload[1]) + 1) * 8
		case ipv6Fragment:
			if len(payload) < 8 {
				return fmt.Sprintf("IP6 %s > %s: fragment header truncated", src, dst)
			}
			if off := int(binary.BigEndian.Uint16(payload[2:]) &^ 7); off != 0 {
				return fmt.Sprintf("IP6 %s > %s: %s fragment, offset %d, length %d", src, dst, protoName(payload[0]), off, length-8)
			}
			n = 8
		default:
			return "IP6 " + summarizeTransport(src, dst, next, payload, length)
		}
		if len(payload) < n || length < n {
			return fmt.Sprintf("IP6 %s > %s: extension header %d truncated", src, dst, next)
		}
		next, payload, length = payload[0], payload[n:], length-n
	}
	return fmt.Sprintf("IP6 %s > %s: too many extension headers", src, dst)
}

// protoName names an IP protocol as Summary prints it.
func protoName(p uint8) string {
	switch p {
	case protoICMP:
		return "ICMP"
	case protoTCP:
		return "TCP"
	case protoUDP:
		return "UDP"
	case protoICMPv6:
		return "ICMP6"
	case protoSCTP:
		return "SCTP"
	default:
		return fmt.Sprintf("ip-proto-%d", p)
	}
}

// summarizeTransport describes what an IP packet from src to dst carries:
// payload is the part of the proto header and data captured, length the
// payload's length that the IP header announces.
func summarizeTransport(src, dst netip.Addr, proto uint8, payload []byte, length int) string {
	switch proto {
	case protoTCP:
		if len(payload) < 20 {
			return fmt.Sprintf("%s > %s: TCP truncated (%d bytes)", src, dst, len(payload))
		}
		hl := int(payload[12]>>4) * 4
		if hl < 20 || hl > length {
			return fmt.Sprintf("%s > %s: TCP bad header length %d", src, dst, hl)
		}
		return fmt.Sprintf("%s > %s: %s", endpoint(src, payload[0:]), endpoint(dst, payload[2:]), summarizeTCP(payload, length-hl))
	case protoUDP:
		if len(payload) < 8 {
			return fmt.Sprintf("%s > %s: UDP truncated (%d bytes)", src, dst, len(payload))
		}
		ulen := int(binary.BigEndian.Uint16(payload[4:]))
		if ulen < 8 || ulen > length {
			return fmt.Sprintf("%s > %s: UDP, bad length %d", endpoint(src, payload[0:]), endpoint(dst, payload[2:]), ulen)
		}
		return fmt.Sprintf("%s > %s: UDP, length %d", endpoint(src, payload[0:]), endpoint(dst, payload[2:]), ulen-8)
	case protoSCTP:
		if len(payload) < 12 {
			return fmt.Sprintf("%s > %s: SCTP truncated (%d bytes)", src, dst, len(payload))
		}
		return fmt.Sprintf("%s > %s: SCTP, length %d", endpoint(src, payload[0:]), endpoint(dst, payload[2:]), length-12)
	case protoICMP:
		if !src.Is4() {
			break // ICMP for IPv4 in an IPv6 packet: print it as unknown
		}
		return fmt.Sprintf("%s > %s: ICMP %s", src, dst, summarizeICMP(payload, length))
	case protoICMPv6:
		if !src.Is6() {
			break
		}
		return fmt.Sprintf("%s > %s: ICMP6, %s", src, dst, summarizeICMPv6(payload, length))
	}
	return fmt.Sprintf("%s > %s: %s, length %d", src, dst, protoName(proto), length)
}

// endpoint formats an address and the port at the start of b as tcpdump
// does: 10.0.0.1.80, fd00::1.80.
func endpoint(a netip.Addr, b []byte) string {
	return fmt.Sprintf("%s.%d", a, binary.BigEndian.Uint16(b))
}

// TCP flags, and their letters in tcpdump's order.
const (
	tcpFIN = 1 << iota
	tcpSYN
	tcpRST
	tcpPSH
	tcpACK
	tcpURG
	tcpECE
	tcpCWR
)

const tcpFlagLetters = "FSRP.UEW"

// summarizeTCP describes a TCP header h (20 bytes at least) carrying n
// bytes of data.
func summarizeTCP(h []byte, n int) string {
	var sb strings.Builder
	flags := h[13]
	sb.WriteString("Flags [")
	if flags == 0 {
		sb.WriteString("none")
	}
	for i := range len(tcpFlagLetters) {
		if flags&(1<<i) != 0 {
			sb.WriteByte(tcpFlagLetters[i])
		}
	}
	sb.WriteString("]")
	seq := binary.BigEndian.Uint32(h[4:])
	if n > 0 || flags&(tcpSYN|tcpFIN|tcpRST) != 0 {
		fmt.Fprintf(&sb, ", seq %d", seq)
		if n > 0 {
			fmt.Fprintf(&sb, ":%d", seq+uint32(n))
		}
	}
	if flags&tcpACK != 0 {
		fmt.Fprintf(&sb, ", ack %d", binary.BigEndian.Uint32(h[8:]))
	}
	fmt.Fprintf(&sb, ", length %d", n)
	return sb.String()
}

func summarizeICMP(b []byte, length int) string {
	if len(b) < 4 {
		return fmt.Sprintf("truncated (%d bytes)", len(b))
	}
	typ, code := b[0], b[1]
	switch typ {
	case 0, 8:
		if len(b) < 8 {
			return fmt.Sprintf("echo truncated (%d bytes)", len(b))
		}
		kind := "request"
		if typ == 0 {
			kind = "reply"
		}
		return fmt.Sprintf("echo %s, id %d, seq %d, length %d", kind, binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]), length)
	case 3:
		switch code {
		case 0, 1, 2, 3:
			what := [...]string{"net", "host", "protocol", "port"}[code]
			return fmt.Sprintf("%s unreachable, length %d", what, length)
		case 4:
			if len(b) < 8 {
				return fmt.Sprintf("need to frag, length %d", length)
			}
			return fmt.Sprintf("need to frag (mtu %d), length %d", binary.BigEndian.Uint16(b[6:]), length)
		default:
			return fmt.Sprintf("unreachable, code %d, length %d", code, length)
		}
	case 5:
		return fmt.Sprintf("redirect, code %d, length %d", code, length)
	case 11:
		if code == 1 {
			return fmt.Sprintf("ip reassembly time exceeded, length %d", length)
		}
		return fmt.Sprintf("time exceeded in-transit, length %d", length)
	case 12:
		return fmt.Sprintf("parameter problem, code %d, length %d", code, length)
	default:
		return fmt.Sprintf("type %d, code %d, length %d", typ, code, length)
	}
}

func summarizeICMPv6(b []byte, length int) string {
	if len(b) < 4 {
		return fmt.Sprintf("truncated (%d bytes)", len(b))
	}
	typ, code := b[0], b[1]
	switch typ {
	case 128, 129:
		if len(b) < 8 {
			return fmt.Sprintf("echo truncated (%d bytes)", len(b))
		}
		kind := "request"
		if typ == 129 {
			kind = "reply"
		}
		return fmt.Sprintf("echo %s, id %d, seq %d, length %d", kind, binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:]), length)
	case 1:
		return fmt.Sprintf("destination unreachable, code %d, length %d", code, length)
	case 2:
		if len(b) < 8 {
			return fmt.Sprintf("packet too big, length %d", length)
		}
		return fmt.Sprintf("packet too big, mtu %d, length %d", binary.BigEndian.Uint32(b[4:]), length)
	case 3:
		return fmt.Sprintf("time exceeded in-transit, length %d", length)
	case 133:
		return fmt.Sprintf("router solicitation, length %d", length)
	case 134:
		return fmt.Sprintf("router advertisement, length %d", length)
	case 135, 136:
		if len(b) < 24 {
			return fmt.Sprintf("neighbor discovery truncated (%d bytes)", len(b))
		}
		target := netip.AddrFrom16([16]byte(b[8:24]))
		if typ == 135 {
			return fmt.Sprintf("neighbor solicitation, who has %s, length %d", target, length)
		}
		return fmt.Sprintf("neighbor advertisement, tgt is %s, length %d", target, length)
	default:
		return fmt.Sprintf("type %d, code %d, length %d", typ, code, length)
	}
}
