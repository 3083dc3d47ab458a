package overlay

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// prefixTable answers whether an IPv4 destination is in any of a set of
// prefixes with one map lookup per distinct prefix length (a cluster has one
// or two). It is immutable.
type prefixTable struct {
	lens []int               // distinct lengths, longest first
	nets map[uint64]struct{} // key: length<<32 | masked address
	v6   []netip.Prefix      // IPv6 prefixes, checked linearly
}

func newPrefixTable(ps []netip.Prefix) *prefixTable {
	t := &prefixTable{nets: make(map[uint64]struct{})}
	for _, p := range ps {
		if !p.Addr().Is4() {
			t.v6 = append(t.v6, p)
			continue
		}
		a := binary.BigEndian.Uint32(p.Masked().Addr().AsSlice())
		t.nets[uint64(p.Bits())<<32|uint64(a)] = struct{}{}
		if !slices.Contains(t.lens, p.Bits()) {
			t.lens = append(t.lens, p.Bits())
		}
	}
	slices.SortFunc(t.lens, func(a, b int) int { return b - a })
	return t
}

// routes reports whether the destination of the IP packet pkt is in the
// table.
func (t *prefixTable) routes(pkt []byte) bool {
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		return t.contains4(binary.BigEndian.Uint32(pkt[16:20]))
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		dst := netip.AddrFrom16([16]byte(pkt[24:40]))
		for _, p := range t.v6 {
			if p.Contains(dst) {
				return true
			}
		}
	}
	return false
}

func (t *prefixTable) contains4(a uint32) bool {
	for _, l := range t.lens {
		m := a
		if l < 32 {
			m &^= 1<<(32-l) - 1
		}
		if _, ok := t.nets[uint64(l)<<32|uint64(m)]; ok {
			return true
		}
	}
	return false
}
