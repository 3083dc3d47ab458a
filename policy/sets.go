package policy

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"
)

// podSet is a set of pod indices of one Table: a bitmap when the set is
// dense enough for the bitmap to be the smaller, else a sorted list.
type podSet struct {
	bits []uint64 // if non-nil: bit i set for member i
	list []int32  // otherwise: the members, sorted
}

// has reports whether pod index i is in s. i < 0 (not a pod) never is.
func (s *podSet) has(i int32) bool {
	if i < 0 {
		return false
	}
	if s.bits != nil {
		w := uint32(i) >> 6
		return w < uint32(len(s.bits)) && s.bits[w]&(1<<(uint32(i)&63)) != 0
	}
	l := s.list
	lo, hi := 0, len(l)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if l[m] < i {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(l) && l[lo] == i
}

func (s *podSet) empty() bool { return s.bits == nil && len(s.list) == 0 }

// bitmap is a scratch set of pod indices that podSet values are built from.
type bitmap []uint64

func newBitmap(n int) bitmap { return make(bitmap, (n+63)/64) }

func (b bitmap) add(i int32) { b[i>>6] |= 1 << (uint32(i) & 63) }
func (b bitmap) clear()      { clear(b) }
func (b bitmap) count() (n int) {
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// podSet returns a compact copy of b over n pods.
func (b bitmap) podSet(n int) podSet {
	c := b.count()
	if c == 0 {
		return podSet{}
	}
	// A bitmap costs n/8 bytes, a list 4 per member.
	if 32*c >= n {
		return podSet{bits: slices.Clone(b)}
	}
	l := make([]int32, 0, c)
	for w, x := range b {
		for x != 0 {
			t := bits.TrailingZeros64(x)
			l = append(l, int32(w*64+t))
			x &= x - 1
		}
	}
	return podSet{list: l}
}

// u128 is an IPv6 address (or an IPv4 address in the low 32 bits) as a
// number.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func (a u128) inc() u128 {
	if a.lo == ^uint64(0) {
		return u128{a.hi + 1, 0}
	}
	return u128{a.hi, a.lo + 1}
}

func (a u128) dec() u128 {
	if a.lo == 0 {
		return u128{a.hi - 1, ^uint64(0)}
	}
	return u128{a.hi, a.lo - 1}
}

func addrU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// ipRange is an inclusive range of addresses of one family.
type ipRange struct{ lo, hi u128 }

// prefixRange returns the addresses of p (masked) as a range.
func prefixRange(p netip.Prefix) ipRange {
	p = p.Masked()
	lo := addrU128(p.Addr())
	bitsLen := 128
	if p.Addr().Is4() {
		bitsLen = 32
	}
	host := bitsLen - p.Bits() // host bits, 0..128
	hi := lo
	switch {
	case host >= 128:
		hi = u128{^uint64(0), ^uint64(0)}
	case host > 64:
		hi = u128{lo.hi | (1<<(host-64) - 1), ^uint64(0)}
	case host == 64:
		hi = u128{lo.hi, ^uint64(0)}
	case host > 0:
		hi = u128{lo.hi, lo.lo | (1<<host - 1)}
	}
	return ipRange{lo, hi}
}

// subtract returns rs minus x; rs is sorted and disjoint, and so is the
// result.
func subtract(rs []ipRange, x ipRange) []ipRange {
	out := rs[:0:0]
	for _, r := range rs {
		if x.hi.less(r.lo) || r.hi.less(x.lo) {
			out = append(out, r)
			continue
		}
		if r.lo.less(x.lo) {
			out = append(out, ipRange{r.lo, x.lo.dec()})
		}
		if x.hi.less(r.hi) {
			out = append(out, ipRange{x.hi.inc(), r.hi})
		}
	}
	return out
}

// mergeRanges sorts rs and joins overlapping and adjacent ranges.
func mergeRanges(rs []ipRange) []ipRange {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b ipRange) int { return a.lo.cmp(b.lo) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if !last.hi.less(r.lo) || last.hi.inc() == r.lo && last.hi != (u128{^uint64(0), ^uint64(0)}) {
			if last.hi.less(r.hi) {
				last.hi = r.hi
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// v4Range is an inclusive range of IPv4 addresses as numbers.
type v4Range struct{ lo, hi uint32 }

// addrSet is a set of addresses: sorted, disjoint ranges per family.
type addrSet struct {
	v4 []v4Range
	v6 []ipRange
}

func (s *addrSet) empty() bool { return len(s.v4) == 0 && len(s.v6) == 0 }

// has4 reports whether the IPv4 address a (as a number) is in s.
func (s *addrSet) has4(a uint32) bool {
	l := s.v4
	if len(l) <= 4 {
		for i := range l {
			if l[i].lo <= a && a <= l[i].hi {
				return true
			}
		}
		return false
	}
	lo, hi := 0, len(l)
	for lo < hi { // first range with hi >= a
		m := int(uint(lo+hi) >> 1)
		if l[m].hi < a {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(l) && l[lo].lo <= a
}

// has6 reports whether the IPv6 address a is in s.
func (s *addrSet) has6(a u128) bool {
	l := s.v6
	lo, hi := 0, len(l)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if l[m].hi.less(a) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(l) && !a.less(l[lo].lo)
}
