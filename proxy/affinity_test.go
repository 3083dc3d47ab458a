package proxy

import (
	"net/netip"
	"testing"
	"time"
)

// TestAffinityEviction checks the order in which a full affinity table makes
// room: expired entries first, then the least recently used.
func TestAffinityEviction(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	p := New(Options{Now: func() time.Time { return now }, Rand: func(int) int { return 0 }, MaxAffinity: 4})
	long := target{eps: backends{list: []netip.AddrPort{netip.MustParseAddrPort("10.244.0.2:80")}}, affinity: time.Hour, id: 1}
	short := long
	short.affinity, short.id = 5*time.Second, 2
	client := func(i byte) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, i}) }
	has := func(tg *target, i byte) bool {
		_, ok := p.aff.index[affKey{id: tg.id, client: client(i).As16()}]
		return ok
	}

	for i := range byte(4) { // 0, 1, 2, 3 on the long timeout
		p.aff.pick(p, &long, client(i))
	}
	now = now.Add(time.Second)
	p.aff.pick(p, &long, client(0)) // 0 is now the most recently used
	p.aff.pick(p, &long, client(4)) // full: evicts 1, the least recently used
	if has(&long, 1) || !has(&long, 0) || !has(&long, 4) {
		t.Fatalf("after one eviction: entries for 0 %v, 1 %v, 4 %v; want 1 evicted", has(&long, 0), has(&long, 1), has(&long, 4))
	}

	// An expired entry goes before older live ones.
	p.aff.pick(p, &short, client(9)) // evicts 2
	now = now.Add(10 * time.Second)  // 9's entry expires; the sweep interval has passed
	p.aff.pick(p, &long, client(5))
	if has(&short, 9) || !has(&long, 3) {
		t.Errorf("entries for 9 (expired) %v, 3 (oldest live) %v; want the expired one evicted", has(&short, 9), has(&long, 3))
	}
	if n := len(p.aff.index); n != 4 {
		t.Errorf("%d entries, want 4", n)
	}
	// The list and the index agree.
	count := 0
	for i := p.aff.head; i >= 0; i = p.aff.entries[i].next {
		if j, ok := p.aff.index[p.aff.entries[i].key]; !ok || j != i {
			t.Errorf("entry %d of the list is not indexed", i)
		}
		count++
	}
	if count != len(p.aff.index) {
		t.Errorf("list has %d entries, index %d", count, len(p.aff.index))
	}
}
