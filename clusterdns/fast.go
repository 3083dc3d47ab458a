package clusterdns

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// fastAnswer answers the commonest queries without unpacking them: one
// question, class IN, type A or AAAA, a plain name of the zone, no records
// but an optional OPT (version 0), and an answer that fits: the name's
// addresses, or NODATA or NXDOMAIN with the SOA (what the search path
// produces). It writes the answer into out and returns its length and
// rcode, or 0 when the query needs the general path (resolve), which gives
// the same answer for what this path takes (a test checks it). It reads msg
// defensively: any input is safe.
func (s *Server) fastAnswer(z *zone, msg, out []byte) (int, int) {
	if len(msg) < 12+1+4 {
		return 0, 0
	}
	// QR clear, opcode QUERY; one question, nothing else but an OPT.
	if msg[2]&0xF8 != 0 ||
		binary.BigEndian.Uint16(msg[4:]) != 1 || binary.BigEndian.Uint16(msg[6:]) != 0 ||
		binary.BigEndian.Uint16(msg[8:]) != 0 || binary.BigEndian.Uint16(msg[10:]) > 1 {
		return 0, 0
	}
	// The name, lowercased into key in presentation form. Only letters,
	// digits, '-' and '_' (no escaping needed); no compression pointers.
	var key [256]byte
	k, off := 0, 12
	for {
		if off >= len(msg) {
			return 0, 0
		}
		l := int(msg[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(msg) || k+l+1 > 254 {
			return 0, 0
		}
		for _, c := range msg[off : off+l] {
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			default:
				return 0, 0
			}
			key[k] = c
			k++
		}
		key[k] = '.'
		k++
		off += l
	}
	qEnd := off + 4
	if k == 0 || qEnd > len(msg) {
		return 0, 0
	}
	qtype := binary.BigEndian.Uint16(msg[off:])
	if binary.BigEndian.Uint16(msg[off+2:]) != dns.ClassINET || (qtype != dns.TypeA && qtype != dns.TypeAAAA) {
		return 0, 0
	}
	limit, edns, do := dns.MinMsgSize, false, false
	if msg[11] == 1 {
		// The OPT record: root owner, type OPT, class = UDP size, TTL =
		// extended rcode, version, flags; then its options, which must end
		// the message.
		p := qEnd
		if p+11 > len(msg) || msg[p] != 0 || binary.BigEndian.Uint16(msg[p+1:]) != dns.TypeOPT || msg[p+6] != 0 {
			return 0, 0
		}
		if p+11+int(binary.BigEndian.Uint16(msg[p+9:])) != len(msg) {
			return 0, 0
		}
		limit = int(max(min(binary.BigEndian.Uint16(msg[p+3:]), s.udpSize), dns.MinMsgSize))
		edns, do = true, msg[p+7]&0x80 != 0
	} else if qEnd != len(msg) {
		return 0, 0
	}
	var (
		wire  []byte
		count uint16
		rcode = dns.RcodeSuccess
		neg   = -1 // the origin's offset in msg, for a negative answer
	)
	if i, ok := z.names[string(key[:k])]; ok {
		n := &z.nodes[i]
		if n.flags&(nodeCNAME|nodeReverse4|nodeReverse6) != 0 {
			return 0, 0
		}
		wire, count = n.wireA(), n.nA
		if qtype == dns.TypeAAAA {
			wire, count = n.wireAAAA(), uint16(len(n.aaaa))
		}
		if len(wire) == 0 {
			if len(n.a)+len(n.aaaa) > 0 && len(n.wire) == 0 {
				return 0, 0 // too many to prepack: the general path
			}
			neg = 0 // NODATA
		}
	} else {
		neg, rcode = 0, dns.RcodeNameError
	}
	if neg == 0 {
		// A negative answer carries the SOA, whose names point to the
		// origin in the question: it must be there, spelled in lowercase
		// (the general path compresses only equal spellings).
		o := k - len(z.origin)
		if o < 0 || string(key[o:k]) != z.origin || (o > 0 && key[o-1] != '.') || string(msg[12+o:12+k+1]) != string(z.wireOrigin) {
			return 0, 0
		}
		neg = 12 + o
	}
	size := qEnd + len(wire)
	if neg > 0 {
		size += soaWireLen
	}
	if edns {
		size += 11
	}
	if size > limit || size > len(out) {
		return 0, 0
	}
	copy(out, msg[:qEnd])
	out[2] = 0x80 | 0x04 | msg[2]&0x01        // QR, opcode QUERY, AA, RD as asked
	out[3] = 0x80 | msg[3]&0x10 | byte(rcode) // RA, CD as asked, rcode
	binary.BigEndian.PutUint16(out[6:], count)
	binary.BigEndian.PutUint16(out[8:], 0)
	out[10], out[11] = 0, 0
	o := qEnd + copy(out[qEnd:], wire)
	if neg > 0 {
		out[9] = 1
		o = z.appendSOA(out, o, neg)
	}
	if edns {
		out[11] = 1
		out[o] = 0
		binary.BigEndian.PutUint16(out[o+1:], dns.TypeOPT)
		binary.BigEndian.PutUint16(out[o+3:], s.udpSize)
		out[o+5], out[o+6], out[o+7], out[o+8] = 0, 0, 0, 0
		if do {
			out[o+7] = 0x80
		}
		out[o+9], out[o+10] = 0, 0
	}
	return size, rcode
}

// soaWireLen is the length of the zone's SOA record as appendSOA packs it.
const soaWireLen = 2 + 10 + (1 + 2 + 1 + 3 + 2) + (1 + 10 + 2) + 20

// appendSOA packs the zone's SOA record at out[o:], its owner and the
// origin in its names compressed to the origin at msg offset origin, and
// returns the offset after it.
func (z *zone) appendSOA(out []byte, o, origin int) int {
	ptr := func(o int) int {
		binary.BigEndian.PutUint16(out[o:], 0xC000|uint16(origin))
		return o + 2
	}
	o = ptr(o)
	binary.BigEndian.PutUint16(out[o:], dns.TypeSOA)
	binary.BigEndian.PutUint16(out[o+2:], dns.ClassINET)
	binary.BigEndian.PutUint32(out[o+4:], min(z.ttl, 300))
	binary.BigEndian.PutUint16(out[o+8:], soaWireLen-12)
	o += 10
	o += copy(out[o:], "\x02ns\x03dns")
	o = ptr(o)
	o += copy(out[o:], "\x0ahostmaster")
	o = ptr(o)
	for _, v := range [5]uint32{z.serial, 7200, 1800, 86400, z.ttl} {
		binary.BigEndian.PutUint32(out[o:], v)
		o += 4
	}
	return o
}
