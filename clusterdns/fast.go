package clusterdns

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// fastAnswer answers the commonest query without unpacking it: one
// question, class IN, type A or AAAA, a plain name of the zone that has
// such records, no records but an optional OPT (version 0), and an answer
// that fits. It writes the answer into out and returns its length, or 0
// when the query needs the general path (resolve), which gives the same
// answer for what this path takes (a test checks it). It reads msg
// defensively: any input is safe.
func (s *Server) fastAnswer(z *zone, msg, out []byte) int {
	if len(msg) < 12+1+4 {
		return 0
	}
	// QR clear, opcode QUERY; one question, nothing else but an OPT.
	if msg[2]&0xF8 != 0 ||
		binary.BigEndian.Uint16(msg[4:]) != 1 || binary.BigEndian.Uint16(msg[6:]) != 0 ||
		binary.BigEndian.Uint16(msg[8:]) != 0 || binary.BigEndian.Uint16(msg[10:]) > 1 {
		return 0
	}
	// The name, lowercased into key in presentation form. Only letters,
	// digits, '-' and '_' (no escaping needed); no compression pointers.
	var key [256]byte
	k, off := 0, 12
	for {
		if off >= len(msg) {
			return 0
		}
		l := int(msg[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(msg) || k+l+1 > 254 {
			return 0
		}
		for _, c := range msg[off : off+l] {
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			default:
				return 0
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
		return 0
	}
	qtype := binary.BigEndian.Uint16(msg[off:])
	if binary.BigEndian.Uint16(msg[off+2:]) != dns.ClassINET || (qtype != dns.TypeA && qtype != dns.TypeAAAA) {
		return 0
	}
	limit, edns, do := dns.MinMsgSize, false, false
	if msg[11] == 1 {
		// The OPT record: root owner, type OPT, class = UDP size, TTL =
		// extended rcode, version, flags; then its options, which must end
		// the message.
		p := qEnd
		if p+11 > len(msg) || msg[p] != 0 || binary.BigEndian.Uint16(msg[p+1:]) != dns.TypeOPT || msg[p+6] != 0 {
			return 0
		}
		if p+11+int(binary.BigEndian.Uint16(msg[p+9:])) != len(msg) {
			return 0
		}
		limit = int(max(min(binary.BigEndian.Uint16(msg[p+3:]), s.udpSize), dns.MinMsgSize))
		edns, do = true, msg[p+7]&0x80 != 0
	} else if qEnd != len(msg) {
		return 0
	}
	i, ok := z.names[string(key[:k])]
	if !ok {
		return 0
	}
	n := &z.nodes[i]
	if n.flags&nodeCNAME != 0 {
		return 0
	}
	wire, count := n.wireA(), n.nA
	if qtype == dns.TypeAAAA {
		wire, count = n.wireAAAA(), uint16(len(n.aaaa))
	}
	if len(wire) == 0 {
		return 0
	}
	size := qEnd + len(wire)
	if edns {
		size += 11
	}
	if size > limit || size > len(out) {
		return 0
	}
	copy(out, msg[:qEnd])
	out[2] = 0x80 | 0x04 | msg[2]&0x01 // QR, opcode QUERY, AA, RD as asked
	out[3] = 0x80 | msg[3]&0x10        // RA, CD as asked, NOERROR
	binary.BigEndian.PutUint16(out[6:], count)
	binary.BigEndian.PutUint16(out[8:], 0)
	out[10], out[11] = 0, 0
	o := qEnd + copy(out[qEnd:], wire)
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
	return size
}
