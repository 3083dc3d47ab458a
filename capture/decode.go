package capture

import (
	"encoding/binary"
	"net/netip"
)

// EtherTypes, IP protocol numbers and header sizes the package reads.
const (
	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
	etherTypeVLAN = 0x8100
	etherTypeIPv6 = 0x86dd

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132

	ethHeaderLen  = 14
	vlanTagLen    = 4
	ipv4MinLen    = 20
	ipv6HeaderLen = 40
	arpIPv4Len    = 28 // ARP for IPv4 over Ethernet
	arpFixedLen   = 8  // hardware and protocol types and sizes, operation
)

// layers is what Match reads of a packet, decoded once per call.
type layers struct {
	// etherType is the network protocol: the frame's EtherType after at
	// most one 802.1Q tag, or for LinkTypeRaw IPv4 or IPv6 by the version
	// nibble.
	etherType uint16
	net       []byte // the network layer
	// ipOK reports that net holds a whole IPv4 header (options included)
	// or IPv6 header of the version etherType says; proto, firstFrag,
	// src, dst and transport are set only then.
	ipOK      bool
	proto     uint8 // IPv4 protocol or IPv6 next header
	firstFrag bool  // not a later fragment of an IPv4 datagram
	transport []byte
	// arpOK reports that net holds an ARP packet for IPv4 over Ethernet;
	// src and dst are then its sender and target protocol addresses.
	arpOK    bool
	src, dst netip.Addr
}

// decode fills l from pkt, a packet of the link type. It returns false
// when the link layer cannot be read: an unknown link type, an Ethernet
// header cut short (or its VLAN tag), a raw packet that is empty or of
// an IP version other than 4 and 6.
func decode(linkType uint32, pkt []byte, l *layers) bool {
	switch linkType {
	case LinkTypeEthernet:
		if len(pkt) < ethHeaderLen {
			return false
		}
		l.etherType = binary.BigEndian.Uint16(pkt[12:])
		l.net = pkt[ethHeaderLen:]
		if l.etherType == etherTypeVLAN {
			if len(pkt) < ethHeaderLen+vlanTagLen {
				return false
			}
			l.etherType = binary.BigEndian.Uint16(pkt[16:])
			l.net = pkt[ethHeaderLen+vlanTagLen:]
		}
	case LinkTypeRaw:
		if len(pkt) == 0 {
			return false
		}
		switch pkt[0] >> 4 {
		case 4:
			l.etherType = etherTypeIPv4
		case 6:
			l.etherType = etherTypeIPv6
		default:
			return false
		}
		l.net = pkt
	default:
		return false
	}
	b := l.net
	switch l.etherType {
	case etherTypeIPv4:
		if len(b) < ipv4MinLen || b[0]>>4 != 4 {
			return true
		}
		hl := int(b[0]&0x0f) * 4
		if hl < ipv4MinLen || len(b) < hl {
			return true
		}
		l.ipOK = true
		l.proto = b[9]
		l.firstFrag = binary.BigEndian.Uint16(b[6:])&0x1fff == 0
		l.src = netip.AddrFrom4([4]byte(b[12:16]))
		l.dst = netip.AddrFrom4([4]byte(b[16:20]))
		l.transport = b[hl:]
	case etherTypeIPv6:
		if len(b) < ipv6HeaderLen || b[0]>>4 != 6 {
			return true
		}
		l.ipOK = true
		l.proto = b[6]
		l.firstFrag = true
		l.src = netip.AddrFrom16([16]byte(b[8:24]))
		l.dst = netip.AddrFrom16([16]byte(b[24:40]))
		l.transport = b[ipv6HeaderLen:]
	case etherTypeARP:
		if !isARPIPv4(b) {
			return true
		}
		l.arpOK = true
		l.src = netip.AddrFrom4([4]byte(b[14:18]))
		l.dst = netip.AddrFrom4([4]byte(b[24:28]))
	}
	return true
}

// isARPIPv4 reports whether b is a whole ARP packet for IPv4 over
// Ethernet.
func isARPIPv4(b []byte) bool {
	return len(b) >= arpIPv4Len &&
		binary.BigEndian.Uint16(b[0:]) == 1 && // Ethernet
		binary.BigEndian.Uint16(b[2:]) == etherTypeIPv4 &&
		b[4] == 6 && b[5] == 4
}
