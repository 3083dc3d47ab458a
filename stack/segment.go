package stack

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// segmentTCP4 cuts the TCP/IPv4 packet ip (a TSO super-segment: one IP and
// TCP header followed by any amount of payload; its TCP checksum may be
// partial or wrong, it is ignored) into segments of at most mss payload
// bytes, as a NIC's TSO would, and appends them to pkts. The segments are
// laid out back to back in arena, which is returned grown as needed; pkts
// alias it. Each segment gets a copy of the headers with its own total
// length, IP ID (the first one's plus the segment's index), header checksum,
// sequence number and complete TCP checksum; FIN and PSH stay only on the
// last segment, CWR only on the first. ok is false if ip is not a whole,
// unfragmented TCP/IPv4 packet or mss is not positive.
func segmentTCP4(arena []byte, pkts [][]byte, ip []byte, mss int) (_ []byte, _ [][]byte, ok bool) {
	if mss <= 0 || len(ip) < header.IPv4MinimumSize || ip[0]>>4 != 4 {
		return arena, pkts, false
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ihl < header.IPv4MinimumSize || total != len(ip) || total < ihl+header.TCPMinimumSize ||
		ip[9] != uint8(header.TCPProtocolNumber) || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		return arena, pkts, false
	}
	thl := int(ip[ihl+12]>>4) * 4
	hl := ihl + thl
	if thl < header.TCPMinimumSize || hl > total {
		return arena, pkts, false
	}
	payload := ip[hl:]
	nseg := max(1, (len(payload)+mss-1)/mss)
	if need := nseg*hl + len(payload); cap(arena) < need {
		arena = make([]byte, need)
	}
	arena = arena[:cap(arena)]

	id := binary.BigEndian.Uint16(ip[4:])
	seq := binary.BigEndian.Uint32(ip[ihl+4:])
	flags := ip[ihl+13]
	pseudo := header.PseudoHeaderChecksum(header.TCPProtocolNumber,
		tcpip.AddrFrom4([4]byte(ip[12:16])), tcpip.AddrFrom4([4]byte(ip[16:20])), 0)
	off := 0
	for i := range nseg {
		n := min(mss, len(payload))
		seg := arena[off : off+hl+n : off+hl+n]
		copy(seg, ip[:hl])
		copy(seg[hl:], payload[:n])

		h := header.IPv4(seg)
		h.SetTotalLength(uint16(len(seg)))
		h.SetID(id + uint16(i))
		h.SetChecksum(0)
		h.SetChecksum(^h.CalculateChecksum())

		t := header.TCP(seg[ihl:])
		t.SetSequenceNumber(seq + uint32(i*mss))
		f := flags
		if i > 0 {
			f &^= uint8(header.TCPFlagCwr)
		}
		if i < nseg-1 {
			f &^= uint8(header.TCPFlagFin | header.TCPFlagPsh)
		}
		seg[ihl+13] = f
		t.SetChecksum(0)
		t.SetChecksum(^checksum.Checksum(t, checksum.Combine(pseudo, uint16(len(t)))))

		pkts = append(pkts, seg)
		payload = payload[n:]
		off += len(seg)
	}
	return arena, pkts, true
}

// completeChecksum finishes a partial L4 checksum (NEEDS_CSUM) in the IP
// packet ip: start and off are csum_start and csum_start+csum_offset,
// relative to ip. ok is false if they are outside ip.
func completeChecksum(ip []byte, start, off int) bool {
	if start < 0 || start >= len(ip) || off < start || off+2 > len(ip) {
		return false
	}
	// The checksum field holds the pseudo-header sum; summing over it
	// completes the checksum. Like Linux, write 0xffff for 0 (the two are
	// equal in ones' complement; 0 would mean "no checksum" to UDP).
	c := ^checksum.Checksum(ip[start:], 0)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(ip[off:], c)
	return true
}

// decrementTTL lowers the TTL of the IPv4 header ip by one and updates its
// checksum incrementally (RFC 1624).
func decrementTTL(ip []byte) {
	old := binary.BigEndian.Uint16(ip[8:]) // TTL and protocol
	ip[8]--
	binary.BigEndian.PutUint16(ip[10:], updateChecksum(binary.BigEndian.Uint16(ip[10:]), old, old-0x100))
}
