package proxy

import (
	"net/netip"
	"sync"
	"time"
)

// affKey is one client of one Service port.
type affKey struct {
	id     uint32   // the Service port (table.byID)
	client [16]byte // the client's address, IPv4 as IPv4-mapped
}

// affEntry pins a client to a backend. Entries live in a slice and are
// linked by index in least-recently-used order.
type affEntry struct {
	key        affKey
	backend    netip.AddrPort
	expires    int64 // unix nanoseconds: the last pick plus the Service's timeout
	prev, next int32 // LRU neighbours (prev: more recent); -1: none; next links the free list
}

// sweepInterval is how often a full affinity table looks for expired entries
// before it evicts the least recently used one.
const sweepInterval = time.Second

// affinity is the ClientIP session affinity state of a Proxy, bounded.
type affinity struct {
	mu        sync.Mutex // guards everything below
	max       int
	index     map[affKey]int32
	entries   []affEntry // grows up to max
	free      int32      // head of the free list; -1: none
	head      int32      // most recently used; -1: empty
	tail      int32      // least recently used
	lastSweep int64
}

func (a *affinity) init(max int) {
	a.max = max
	a.index = map[affKey]int32{}
	a.free, a.head, a.tail = -1, -1, -1
}

// pick returns the backend of client on t, which has affinity and at least
// one backend: its pinned backend when still valid, otherwise a new random
// one, which is pinned.
func (a *affinity) pick(p *Proxy, t *target, client netip.Addr) netip.AddrPort {
	k := affKey{id: t.id, client: client.As16()}
	now := p.now().UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	i, ok := a.index[k]
	if ok {
		e := &a.entries[i]
		if e.expires <= now || !t.eps.has(e.backend) {
			e.backend = t.eps.list[p.rand(len(t.eps.list))]
		}
		e.expires = now + int64(t.affinity)
		a.unlinkLocked(i)
		a.pushFrontLocked(i)
		return e.backend
	}
	if len(a.index) >= a.max {
		a.makeRoomLocked(now)
	}
	i = a.allocLocked()
	e := &a.entries[i]
	*e = affEntry{key: k, backend: t.eps.list[p.rand(len(t.eps.list))], expires: now + int64(t.affinity)}
	a.index[k] = i
	a.pushFrontLocked(i)
	return e.backend
}

// prune drops the entries of Service ports that t no longer has, the entries
// whose backend is not ready any more, and expired ones. It returns how many
// it dropped.
func (a *affinity) prune(t *table, now int64) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	dropped := 0
	for i := a.head; i >= 0; {
		e := &a.entries[i]
		next := e.next
		pe := t.byID[e.key.id]
		if pe == nil || e.expires <= now || !pe.ready.has(e.backend) {
			a.removeLocked(i)
			dropped++
		}
		i = next
	}
	return dropped
}

// makeRoomLocked frees at least one entry of a full table: expired entries
// (looked for at most once per sweepInterval), else the least recently used.
func (a *affinity) makeRoomLocked(now int64) {
	if now-a.lastSweep >= int64(sweepInterval) || now < a.lastSweep {
		a.lastSweep = now
		for i := a.head; i >= 0; {
			next := a.entries[i].next
			if a.entries[i].expires <= now {
				a.removeLocked(i)
			}
			i = next
		}
	}
	if len(a.index) >= a.max && a.tail >= 0 {
		a.removeLocked(a.tail)
	}
}

func (a *affinity) allocLocked() int32 {
	if a.free >= 0 {
		i := a.free
		a.free = a.entries[i].next
		return i
	}
	a.entries = append(a.entries, affEntry{})
	return int32(len(a.entries) - 1)
}

func (a *affinity) removeLocked(i int32) {
	delete(a.index, a.entries[i].key)
	a.unlinkLocked(i)
	a.entries[i] = affEntry{next: a.free, prev: -1}
	a.free = i
}

func (a *affinity) unlinkLocked(i int32) {
	e := &a.entries[i]
	if e.prev >= 0 {
		a.entries[e.prev].next = e.next
	} else {
		a.head = e.next
	}
	if e.next >= 0 {
		a.entries[e.next].prev = e.prev
	} else {
		a.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (a *affinity) pushFrontLocked(i int32) {
	e := &a.entries[i]
	e.prev, e.next = -1, a.head
	if a.head >= 0 {
		a.entries[a.head].prev = i
	} else {
		a.tail = i
	}
	a.head = i
}
