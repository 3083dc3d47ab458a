package stack

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/podnet/podnet/tap"
)

// Frame builders shared by the tests of this package and, through
// export_test.go, by the external tests.

// ipv4Frame returns a frame (virtio_net_hdr, Ethernet, IPv4) from srcMAC to
// dstMAC carrying l4 as protocol proto, with a valid IPv4 header checksum.
// The L4 checksum is the caller's business.
func ipv4Frame(vh tap.VirtioNetHdr, srcMAC, dstMAC [6]byte, src, dst netip.Addr, ttl, proto uint8, l4 []byte) []byte {
	f := make([]byte, netOff+header.IPv4MinimumSize+len(l4))
	vh.Encode(f)
	copy(f[ethOff:], dstMAC[:])
	copy(f[ethOff+6:], srcMAC[:])
	binary.BigEndian.PutUint16(f[ethOff+12:], etherTypeIPv4)
	ip := header.IPv4(f[netOff:])
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(ip)),
		ID:          0x1234,
		TTL:         ttl,
		Protocol:    proto,
		SrcAddr:     tcpip.AddrFrom4(src.As4()),
		DstAddr:     tcpip.AddrFrom4(dst.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(f[netOff+header.IPv4MinimumSize:], l4)
	return f
}

// udpFrame returns a UDP datagram frame with valid checksums from the pod
// src (MAC PodMAC) to the gateway MAC of gw.
func udpFrame(src, dst netip.AddrPort, gw netip.Addr, ttl uint8, payload []byte) []byte {
	u := header.UDP(make([]byte, header.UDPMinimumSize+len(payload)))
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(len(u))})
	copy(u.Payload(), payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, tcpip.AddrFrom4(src.Addr().As4()), tcpip.AddrFrom4(dst.Addr().As4()), uint16(len(u)))
	u.SetChecksum(^checksum.Checksum(u, xsum))
	return ipv4Frame(tap.VirtioNetHdr{}, macFor(src.Addr()), macFor(gw), src.Addr(), dst.Addr(), ttl, uint8(header.UDPProtocolNumber), u)
}

// fragmentFrames cuts the IPv4 datagram in frame (no options, not itself a
// fragment) into fragment frames carrying size bytes of its payload each (a
// multiple of 8; the last carries the rest), with valid header checksums.
func fragmentFrames(frame []byte, size int) [][]byte {
	const ihl = header.IPv4MinimumSize
	payload := frame[netOff+ihl:]
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		f := append(append([]byte(nil), frame[:netOff+ihl]...), payload[off:end]...)
		ip := header.IPv4(f[netOff:])
		ip.SetTotalLength(uint16(ihl + end - off))
		flags := uint8(0)
		if end < len(payload) {
			flags = header.IPv4FlagMoreFragments
		}
		ip.SetFlagsFragmentOffset(flags, uint16(off))
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
		out = append(out, f)
	}
	return out
}

// tcpGSOFrame returns a TCP/IPv4 GSO super-frame as a Linux pod with TSO
// hands it over: NEEDS_CSUM with the pseudo-header sum in the checksum field,
// gso_type TCPv4, payloadLen bytes of payload in mss-sized segments.
func tcpGSOFrame(src, dst netip.AddrPort, gw netip.Addr, mss, payloadLen int) []byte {
	tcpHdr := header.TCP(make([]byte, header.TCPMinimumSize+payloadLen))
	tcpHdr.Encode(&header.TCPFields{
		SrcPort:    src.Port(),
		DstPort:    dst.Port(),
		SeqNum:     1000,
		AckNum:     2000,
		DataOffset: header.TCPMinimumSize,
		Flags:      header.TCPFlagAck | header.TCPFlagPsh,
		WindowSize: 512,
	})
	for i := range payloadLen {
		tcpHdr[header.TCPMinimumSize+i] = byte(i * 7)
	}
	tcpHdr.SetChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber,
		tcpip.AddrFrom4(src.Addr().As4()), tcpip.AddrFrom4(dst.Addr().As4()), uint16(len(tcpHdr))))
	vh := tap.VirtioNetHdr{
		Flags:      tap.FlagNeedsCsum,
		GSOType:    tap.GSOTCPv4,
		HdrLen:     ethLen + header.IPv4MinimumSize + header.TCPMinimumSize,
		GSOSize:    uint16(mss),
		CsumStart:  ethLen + header.IPv4MinimumSize,
		CsumOffset: header.TCPChecksumOffset,
	}
	return ipv4Frame(vh, macFor(src.Addr()), macFor(gw), src.Addr(), dst.Addr(), 64, uint8(header.TCPProtocolNumber), tcpHdr)
}

// tcpSegmentFrame returns a TCP segment frame without payload, with flags and valid checksums, from
// the pod src to the gateway MAC of gw.
func tcpSegmentFrame(src, dst netip.AddrPort, gw netip.Addr, flags uint8) []byte {
	t := header.TCP(make([]byte, header.TCPMinimumSize))
	t.Encode(&header.TCPFields{
		SrcPort:    src.Port(),
		DstPort:    dst.Port(),
		SeqNum:     1000,
		AckNum:     2000,
		DataOffset: header.TCPMinimumSize,
		Flags:      header.TCPFlags(flags),
		WindowSize: 512,
	})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpip.AddrFrom4(src.Addr().As4()), tcpip.AddrFrom4(dst.Addr().As4()), uint16(len(t)))
	t.SetChecksum(^checksum.Checksum(t, xsum))
	return ipv4Frame(tap.VirtioNetHdr{}, macFor(src.Addr()), macFor(gw), src.Addr(), dst.Addr(), 64, uint8(header.TCPProtocolNumber), t)
}

// icmpEchoFrame returns an ICMP echo request frame.
func icmpEchoFrame(src, dst, gw netip.Addr) []byte {
	m := header.ICMPv4(make([]byte, header.ICMPv4MinimumSize+4))
	m.SetType(header.ICMPv4Echo)
	m.SetIdent(7)
	m.SetSequence(1)
	m.SetChecksum(^checksum.Checksum(m, 0))
	return ipv4Frame(tap.VirtioNetHdr{}, macFor(src), macFor(gw), src, dst, 64, uint8(header.ICMPv4ProtocolNumber), m)
}

// arpRequestFrame returns an ARP request from the pod sender for target.
func arpRequestFrame(sender, target netip.Addr) []byte {
	f := make([]byte, netOff+arpLen)
	mac := macFor(sender)
	copy(f[ethOff:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[ethOff+6:], mac[:])
	binary.BigEndian.PutUint16(f[ethOff+12:], etherTypeARP)
	a := header.ARP(f[netOff:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), mac[:])
	s4, t4 := sender.As4(), target.As4()
	copy(a.ProtocolAddressSender(), s4[:])
	copy(a.ProtocolAddressTarget(), t4[:])
	return f
}

// ipv4HeaderValid reports whether the IPv4 header checksum of frame is valid.
func ipv4HeaderValid(frame []byte) bool {
	ip := header.IPv4(frame[netOff:])
	return ip.IsChecksumValid()
}
