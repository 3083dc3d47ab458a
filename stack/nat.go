package stack

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Service NAT: the translation of pod traffic to Service virtual addresses
// (DESIGN.md: "decide Service NAT and policy once per new flow").
//
// A TCP SYN or the first UDP datagram from a pod to an address in
// Options.ServicePrefixes asks Options.Services for a backend; the answer is
// kept in the connection-tracking table (conntrack) under two keys, the flow
// as the client sends it (the original direction) and as the backend answers
// it (the reply direction), and every later packet of the flow, either way,
// is rewritten with one table lookup: the original direction gets the
// backend as its destination, the reply direction the Service address as its
// source. The client's pod address is kept (DNAT only, as kube-proxy does),
// except for hairpin traffic, a pod reaching itself through a Service: the
// pod's kernel would drop a packet from its own address, so the source
// becomes the Service address (with the client's port) and the pod answers
// to that; its replies carry a Service address as destination and find the
// entry like any packet to a Service.
//
// The entry lives on the client's node: replies from a backend on another
// node arrive through the overlay with the client as destination and are
// translated in DeliverFromOverlay. So a packet to a local pod is looked up
// in the reply direction, but only if that pod is the client of some entry,
// which costs one atomic load in a small array of counters indexed by a
// hash of the client address (natClients); pod-to-pod traffic of pods that
// use no Service never touches the table.
//
// Checksums are updated incrementally (RFC 1624). A frame whose checksum the
// pod's kernel left to be completed (virtio NEEDS_CSUM: the TCP or UDP
// checksum field holds the sum of the pseudo-header) gets only the address
// change folded into that partial sum, since the ports lie in the part that
// is still to be summed; a GSO super-frame is translated whole.
//
// Not translated: fragments (their later pieces carry no ports; they are
// refused like a packet to an unknown Service port), ICMP errors about
// translated flows (a pod sees them, if at all, with the backend's address),
// and SCTP. A direct connection from a pod to a backend that reuses the
// source port of a live Service flow to that same backend would have its
// replies translated; the kernel's conntrack avoids this by rewriting the
// source port, which this table does not do.

// PickResult is what a ServiceBalancer decided for a new flow.
type PickResult uint8

const (
	// PickNotService: no Service port at this address, port and protocol.
	// The packet goes to the netstack, which refuses it.
	PickNotService PickResult = iota
	// PickNoEndpoint: a Service port without a usable endpoint. The packet
	// is refused at once (TCP RST, ICMP port unreachable), as kube-proxy's
	// reject rules do.
	PickNoEndpoint
	// PickBackend: the returned backend takes the flow.
	PickBackend
)

// ServiceBalancer chooses the backend of a new flow to a Service address.
type ServiceBalancer interface {
	// Pick is called once per new flow (a TCP SYN or the first datagram
	// of a UDP flow) from a pod with address client to vip:port, proto 6
	// (TCP) or 17 (UDP), on the packet path and concurrently from several
	// goroutines: it must be fast and must not block. For PickBackend it
	// returns the backend's IPv4 address and port.
	Pick(proto uint8, client netip.Addr, vip netip.Addr, port uint16) (netip.AddrPort, PickResult)
}

// Defaults of the conntrack limits.
const (
	DefaultMaxConntrack = 1 << 17 // entries (flows)

	// Timeouts of a flow since its last packet: a TCP flow whose backend
	// has not answered, one that has been answered, one that saw a RST or
	// a FIN each way, a UDP flow not answered yet, and one answered. They
	// follow Linux's nf_conntrack, with the established TCP timeout that
	// kube-proxy sets (24 h) and shorter bounds for half-open flows.
	ctTCPUnreplied = 30 * time.Second
	ctTCPEstablish = 24 * time.Hour
	ctTCPClosing   = 10 * time.Second
	ctUDPUnreplied = 30 * time.Second
	ctUDPReplied   = 120 * time.Second
)

// Half-open flows (not answered yet) have a share of the table of their own: at most a quarter of
// it, and at most a thirty-second of it per client address (by a hash of it); 32,768 and 4,096 of
// the default table (halfOpenShares). A pod flooding a
// Service with SYNs, or with datagrams no backend answers, fills its own share and then has its
// new flows dropped (NATHalfOpenDropped); it cannot fill the table, so other pods' new flows
// still get entries and answered flows are never pushed out. (Linux's nf_conntrack evicts
// unanswered entries early when its table is full; Cilium's CT garbage collector gives SYN
// entries a short life.)
const (
	halfOpenShare      = 4
	halfOpenShareOfOne = 32
)

const (
	protoTCP = 6
	protoUDP = 17
)

// TCP flags.
const (
	tcpFin = 0x01
	tcpSyn = 0x02
	tcpRst = 0x04
	tcpAck = 0x10
)

// ctKey is a flow as a packet carries it: addresses, ports and protocol,
// packed into two words so that the map hashes 16 bytes.
type ctKey struct {
	addrs uint64 // src<<32 | dst
	rest  uint64 // sport<<32 | dport<<16 | proto
}

func makeKey(src, dst [4]byte, sport, dport uint16, proto uint8) ctKey {
	return ctKey{
		addrs: uint64(binary.BigEndian.Uint32(src[:]))<<32 | uint64(binary.BigEndian.Uint32(dst[:])),
		rest:  uint64(sport)<<32 | uint64(dport)<<16 | uint64(proto),
	}
}

func (k ctKey) src() [4]byte {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], uint32(k.addrs>>32))
	return a
}
func (k ctKey) dst() [4]byte {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], uint32(k.addrs))
	return a
}
func (k ctKey) sport() uint16  { return uint16(k.rest >> 32) }
func (k ctKey) dport() uint16  { return uint16(k.rest >> 16) }
func (k ctKey) proto() uint8   { return uint8(k.rest) }
func (k ctKey) reverse() ctKey { return makeKey(k.dst(), k.src(), k.dport(), k.sport(), k.proto()) }

// TCP state bits of a ctEntry.
const (
	ctReplied  = 1 << iota // a packet passed in the reply direction
	ctFinOrig              // FIN from the client
	ctFinReply             // FIN from the backend
	ctReset                // RST either way
)

// ctEntry is one translated flow.
type ctEntry struct {
	orig  ctKey // client → Service address, as the client sends it
	reply ctKey // backend → client (the Service address when hairpin), as the backend answers

	client  [4]byte       // the client pod's address, for natClients
	plain   bool          // a flow admitted by the Filter, not translated
	state   atomic.Uint32 // ctReplied, ...
	expires atomic.Int64  // in conntrack.now units (Unix seconds)
	slot    atomic.Int32  // 1 + its record's slot in the conntrack file; 0: none

	// halfOpen is set while the entry counts in the half-open shares: from insert until its
	// first answer or its removal, whichever comes first clears it.
	halfOpen atomic.Bool
}

// ctRef is a table slot: an entry and which of its keys this is.
type ctRef struct {
	e     *ctEntry
	reply bool
}

// ctShards is the number of independently locked parts of the table.
const ctShards = 64

// natClientSlots is the size of the array of client counters; a power of two.
const natClientSlots = 4096

// conntrack is the connection-tracking table of translated flows. Lookups
// take a shard's read lock; the table is written only when a flow starts or
// ends.
type conntrack struct {
	max int64

	count atomic.Int64 // entries
	now   atomic.Int64 // Unix seconds, advanced by the sweeper

	// clients counts the entries per client address, by a hash of it: a
	// packet to a pod whose slot is zero cannot be a reply of a translated
	// flow.
	clients [natClientSlots]atomic.Int32

	// halfOpen counts the unanswered entries, in all and per client slot.
	halfOpen        atomic.Int64
	clientsHalfOpen [natClientSlots]atomic.Int32

	// store, if set, keeps a copy of every entry in a file that outlives the process
	// (ctstore.go).
	store *ctStore

	shards [ctShards]struct {
		mu sync.RWMutex
		m  map[ctKey]ctRef
		_  [40]byte // keep shards on separate cache lines
	}

	ctr natCounters
}

// natCounters are the counters of the Service NAT.
type natCounters struct {
	flows      atomic.Uint64 // entries created
	noEndpoint atomic.Uint64 // new flows refused: no endpoint
	full       atomic.Uint64 // new flows dropped: table full or key clash
	halfOpen   atomic.Uint64 // new flows dropped: the half-open share (all, or the client's) full
	remapped   atomic.Uint64 // new flows given another source port: their reply tuple was taken
	expired    atomic.Uint64 // entries removed by timeout
	flushed    atomic.Uint64 // entries removed by Flush*
	packets    atomic.Uint64 // packets translated
}

func newConntrack(max int) *conntrack {
	ct := &conntrack{max: int64(max)}
	for i := range ct.shards {
		ct.shards[i].m = make(map[ctKey]ctRef)
	}
	ct.now.Store(time.Now().Unix())
	return ct
}

// restore puts the records of an earlier process's table (ctstore.go) back, each with its
// timeout started afresh, and returns how many it restored.
func (ct *conntrack) restore(recs []ctRecord) int {
	n := 0
	for _, r := range recs {
		e := &ctEntry{orig: r.orig, reply: r.reply, client: r.client, plain: r.plain}
		e.state.Store(r.state & (ctReplied | ctFinOrig | ctFinReply | ctReset))
		ct.touch(e, timeout(e))
		if ct.insert(e) {
			n++
		}
	}
	return n
}

func (ct *conntrack) shard(k ctKey) int {
	h := k.addrs ^ k.rest*0x9e3779b97f4a7c15
	h ^= h >> 29
	return int(h % ctShards)
}

func (ct *conntrack) clientSlot(a [4]byte) *atomic.Int32 {
	return &ct.clients[ct.clientIndex(a)]
}

func (ct *conntrack) clientIndex(a [4]byte) int {
	h := binary.BigEndian.Uint32(a[:]) * 0x9e3779b1
	return int(h >> (32 - 12))
}

// halfOpenFull reports whether a new flow of client would exceed a half-open share.
func (ct *conntrack) halfOpenFull(client [4]byte) bool {
	all, one := ct.halfOpenShares()
	return ct.halfOpen.Load() >= all || int64(ct.clientsHalfOpen[ct.clientIndex(client)].Load()) >= one
}

// halfOpenShares are the most half-open entries in all and for one client: a quarter and a
// thirty-second of the table, but no less than 1,024 and 256 (or the whole of a smaller table).
func (ct *conntrack) halfOpenShares() (all, one int64) {
	return max(ct.max/halfOpenShare, min(ct.max, 1024)), max(ct.max/halfOpenShareOfOne, min(ct.max, 256))
}

// answered takes e out of the half-open shares, once.
func (ct *conntrack) answered(e *ctEntry) {
	if e.halfOpen.CompareAndSwap(true, false) {
		ct.halfOpen.Add(-1)
		ct.clientsHalfOpen[ct.clientIndex(e.client)].Add(-1)
	}
}

// translateStackReply translates a packet the netstack sends a pod back to the Service
// address, where it is the reply of a translated flow whose endpoint the netstack terminated (an
// endpoint that is no pod). It reports whether it translated.
func (s *Stack) translateStackReply(ip []byte, partial bool) bool {
	if len(ip) < 20 {
		return false
	}
	return s.ct.mayBeClient([4]byte(ip[16:20])) && s.translateReply(ip, partial)
}

// mayBeClient reports whether the pod with address a may be the client of a
// translated flow (false positives are possible, false negatives are not).
func (ct *conntrack) mayBeClient(a [4]byte) bool {
	return ct.clientSlot(a).Load() != 0
}

// lookup returns the slot of k.
func (ct *conntrack) lookup(k ctKey) (ctRef, bool) {
	sh := &ct.shards[ct.shard(k)]
	sh.mu.RLock()
	r, ok := sh.m[k]
	sh.mu.RUnlock()
	return r, ok
}

// insert adds e under both of its keys. It fails if the table is full, if
// e is unanswered and the half-open share (all, or its client's) is, or if
// either key is taken; then nothing was added.
func (ct *conntrack) insert(e *ctEntry) bool {
	if ct.count.Add(1) > ct.max {
		ct.count.Add(-1)
		return false
	}
	if e.state.Load()&ctReplied == 0 {
		slot := &ct.clientsHalfOpen[ct.clientIndex(e.client)]
		all, one := ct.halfOpenShares()
		if ct.halfOpen.Add(1) > all || int64(slot.Add(1)) > one {
			ct.halfOpen.Add(-1)
			slot.Add(-1)
			ct.count.Add(-1)
			return false
		}
		e.halfOpen.Store(true)
	}
	if ct.store != nil && !ct.store.add(e) {
		ct.answered(e)
		ct.count.Add(-1)
		return false
	}
	if !ct.put(e.orig, ctRef{e: e}) {
		ct.unstore(e)
		ct.answered(e)
		ct.count.Add(-1)
		return false
	}
	if !ct.put(e.reply, ctRef{e: e, reply: true}) {
		ct.del(e.orig, e)
		ct.unstore(e)
		ct.answered(e)
		ct.count.Add(-1)
		return false
	}
	if !e.plain {
		ct.clientSlot(e.client).Add(1)
	}
	return true
}

// unstore frees e's record, if the table has a file.
func (ct *conntrack) unstore(e *ctEntry) {
	if ct.store != nil {
		ct.store.remove(e)
	}
}

// setState adds the TCP state bits to e (and to its record).
func (ct *conntrack) setState(e *ctEntry, bits uint32) {
	if st := e.state.Load(); st&bits != bits {
		e.state.Or(bits)
		if bits&ctReplied != 0 {
			ct.answered(e)
		}
		if ct.store != nil {
			ct.store.setState(e)
		}
	}
}

// taken reports whether k is in the table.
func (ct *conntrack) taken(k ctKey) bool {
	_, ok := ct.lookup(k)
	return ok
}

// put stores r under k unless k is taken.
func (ct *conntrack) put(k ctKey, r ctRef) bool {
	sh := &ct.shards[ct.shard(k)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[k]; ok {
		return false
	}
	sh.m[k] = r
	return true
}

// del removes k if it refers to e.
func (ct *conntrack) del(k ctKey, e *ctEntry) bool {
	sh := &ct.shards[ct.shard(k)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if r, ok := sh.m[k]; ok && r.e == e {
		delete(sh.m, k)
		return true
	}
	return false
}

// remove takes e out of the table (if it is still there).
func (ct *conntrack) remove(e *ctEntry) bool {
	if !ct.del(e.orig, e) {
		return false
	}
	ct.del(e.reply, e)
	ct.unstore(e)
	ct.answered(e)
	ct.count.Add(-1)
	if !e.plain {
		ct.clientSlot(e.client).Add(-1)
	}
	return true
}

// touch extends e's life to timeout from now. It writes only when the
// expiry moves, so the entry's cache line is not written for every packet.
func (ct *conntrack) touch(e *ctEntry, timeout time.Duration) {
	exp := ct.now.Load() + int64(timeout/time.Second)
	if e.expires.Load() != exp {
		e.expires.Store(exp)
	}
}

// timeout returns how long e lives after its last packet.
func timeout(e *ctEntry) time.Duration {
	st := e.state.Load()
	if e.orig.proto() != protoTCP { // UDP, and SCTP flows admitted by the Filter
		if st&ctReplied != 0 {
			return ctUDPReplied
		}
		return ctUDPUnreplied
	}
	switch {
	case st&ctReset != 0, st&(ctFinOrig|ctFinReply) == ctFinOrig|ctFinReply:
		return ctTCPClosing
	case st&ctReplied != 0:
		return ctTCPEstablish
	default:
		return ctTCPUnreplied
	}
}

// removeIf removes every entry for which drop returns true and returns how
// many it removed.
func (ct *conntrack) removeIf(drop func(e *ctEntry) bool) int {
	var victims []*ctEntry
	for i := range ct.shards {
		sh := &ct.shards[i]
		sh.mu.RLock()
		for _, r := range sh.m {
			if !r.reply && drop(r.e) {
				victims = append(victims, r.e)
			}
		}
		sh.mu.RUnlock()
	}
	n := 0
	for _, e := range victims {
		if ct.remove(e) {
			n++
		}
	}
	return n
}

// sweep advances the clock and removes expired entries.
func (ct *conntrack) sweep(now time.Time) {
	t := now.Unix()
	ct.now.Store(t)
	n := ct.removeIf(func(e *ctEntry) bool { return e.expires.Load() < t })
	ct.ctr.expired.Add(uint64(n))
}

// natResult is what translateOut did with a packet to a Service address.
type natResult uint8

const (
	natNone    natResult = iota // not translated: hand to the netstack (refused there)
	natDone                     // translated: route it by its new destination
	natDropped                  // dropped (table full, key clash)
)

// l4 locates the ports and checksum of the TCP or UDP packet ip (an IPv4
// packet checked by classifyRoute). ok is false for other protocols, for
// fragments and for truncated headers.
func l4(ip []byte) (ihl int, ok bool) {
	proto := ip[9]
	if proto != protoTCP && proto != protoUDP {
		return 0, false
	}
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 { // MF or an offset
		return 0, false
	}
	ihl = int(ip[0]&0x0f) * 4
	need := 8
	if proto == protoTCP {
		need = 20
	}
	if len(ip) < ihl+need {
		return 0, false
	}
	return ihl, true
}

// packetKey returns the flow key of ip, whose transport header is at ihl.
func packetKey(ip []byte, ihl int) ctKey {
	return makeKey([4]byte(ip[12:16]), [4]byte(ip[16:20]),
		binary.BigEndian.Uint16(ip[ihl:]), binary.BigEndian.Uint16(ip[ihl+2:]), ip[9])
}

// translateOut handles a packet from the pod p to a Service address: the
// original direction of a flow (a new one asks the balancer, and the Filter
// judges it against the backend it got) or the reply direction of a hairpin
// flow. partial says the transport checksum is partial (virtio NEEDS_CSUM).
func (s *Stack) translateOut(p *pod, ip []byte, partial bool, ev *FlowEvent) natResult {
	ct, nb := s.ct, s.opts.Services
	ihl, ok := l4(ip)
	if !ok {
		return natNone
	}
	k := packetKey(ip, ihl)
	if ev != nil {
		ev.Service = netip.AddrPortFrom(netip.AddrFrom4(k.dst()), k.dport())
	}
	if r, ok := ct.lookup(k); ok && !r.e.plain {
		if s.translate(ip, ihl, partial, r) {
			return natDone
		}
		// A new TCP connection reusing the tuple of a closing one: start
		// over.
		ct.remove(r.e)
	}
	proto := ip[9]
	if proto == protoTCP && ip[ihl+13]&(tcpSyn|tcpAck|tcpRst) != tcpSyn {
		return natNone // not a new connection and not tracked: refused
	}
	client := netip.AddrFrom4(k.src())
	backend, res := nb.Pick(proto, client, netip.AddrFrom4(k.dst()), k.dport())
	switch res {
	case PickNoEndpoint:
		ct.ctr.noEndpoint.Add(1)
		if ev != nil {
			ev.Verdict = FlowNoEndpoint
		}
		return natNone
	case PickBackend:
	default:
		return natNone
	}
	b := backend.Addr().Unmap()
	if !b.Is4() {
		return natNone
	}
	if ev != nil {
		ev.Dst = netip.AddrPortFrom(b, backend.Port())
	}
	if !s.admitTranslated(p, proto, netip.AddrPortFrom(client, k.sport()), netip.AddrPortFrom(b, backend.Port()), ev) {
		return natDropped
	}
	e := &ctEntry{orig: k, client: k.src()}
	replyDst, replyDport := k.src(), k.sport()
	if b.As4() == k.src() {
		replyDst = k.dst() // hairpin: the pod sees the Service address as the source
	}
	e.reply = makeKey(b.As4(), replyDst, backend.Port(), replyDport, proto)
	ct.touch(e, timeout(e))
	inserted := ct.insert(e)
	if !inserted {
		// Another reader may have inserted the same flow meanwhile.
		if r, ok := ct.lookup(k); ok && s.translate(ip, ihl, partial, r) {
			return natDone
		}
	}
	if !inserted && ct.taken(e.reply) {
		// The reply tuple is another flow's: the client used this source port for another
		// Service (or the backend's own address) that leads to the same backend, and that flow
		// is still tracked. As netfilter's NAT does on such a clash, give this flow another
		// source port; the backend still sees the client's address.
		for attempt := range remapAttempts {
			e.reply = makeKey(b.As4(), replyDst, backend.Port(), remapPort(k, attempt), proto)
			if inserted = ct.insert(e); inserted || !ct.taken(e.reply) {
				break
			}
		}
		if inserted {
			ct.ctr.remapped.Add(1)
		}
	}
	if !inserted {
		if ct.count.Load() < ct.max && ct.halfOpenFull(e.client) {
			ct.ctr.halfOpen.Add(1)
		} else {
			ct.ctr.full.Add(1)
		}
		if ev != nil {
			ev.Verdict = FlowDropped
		}
		return natDropped
	}
	ct.ctr.flows.Add(1)
	if !s.translate(ip, ihl, partial, ctRef{e: e}) {
		return natDropped
	}
	return natDone
}

// remapAttempts bounds the source ports tried for a flow whose reply tuple is taken.
const remapAttempts = 16

// remapPort is the attempt'th source port tried for the flow k whose reply tuple is taken: spread
// over the dynamic range 32768–60999 (Linux's default ip_local_port_range) by a hash of the flow.
func remapPort(k ctKey, attempt int) uint16 {
	h := uint32(2166136261)
	for _, b := range k.src() {
		h = (h ^ uint32(b)) * 16777619
	}
	for _, b := range k.dst() {
		h = (h ^ uint32(b)) * 16777619
	}
	h = (h ^ uint32(k.sport())) * 16777619
	h = (h ^ uint32(k.dport())) * 16777619
	h = (h ^ uint32(attempt)) * 16777619
	return uint16(32768 + h%(60999-32768+1))
}

// translateReply translates ip, a packet to a local pod, if it is the reply
// direction of a tracked flow. It reports whether it did.
func (s *Stack) translateReply(ip []byte, partial bool) bool {
	ihl, ok := l4(ip)
	if !ok {
		return false
	}
	r, ok := s.ct.lookup(packetKey(ip, ihl))
	if !ok || !r.reply || r.e.plain {
		return false
	}
	return s.translate(ip, ihl, partial, r)
}

// translate rewrites ip, a packet of r's flow in r's direction, and tracks
// the flow's state. It returns false, leaving ip alone, for a TCP SYN in the
// original direction of a flow that is closing: the caller starts a new
// flow.
func (s *Stack) translate(ip []byte, ihl int, partial bool, r ctRef) bool {
	e := r.e
	proto := ip[9]
	var newSrc, newDst [4]byte
	var newSport, newDport uint16
	var bits uint32
	if r.reply {
		bits = ctReplied
		newSrc, newSport = e.orig.dst(), e.orig.dport()
		newDst, newDport = e.orig.src(), e.orig.sport()
	} else {
		newSrc, newSport = e.reply.dst(), e.reply.dport()
		newDst, newDport = e.reply.src(), e.reply.sport()
	}
	if proto == protoTCP {
		flags := ip[ihl+13]
		st := e.state.Load()
		if !r.reply && flags&(tcpSyn|tcpAck) == tcpSyn && st&(ctReset|ctFinOrig|ctFinReply) != 0 {
			return false
		}
		if flags&tcpRst != 0 {
			bits |= ctReset
		}
		if flags&tcpFin != 0 {
			if r.reply {
				bits |= ctFinReply
			} else {
				bits |= ctFinOrig
			}
		}
	}
	if bits != 0 {
		s.ct.setState(e, bits)
	}
	s.ct.touch(e, timeout(e))
	rewriteFlow(ip, ihl, partial, newSrc, newDst, newSport, newDport)
	s.ct.ctr.packets.Add(1)
	return true
}

// rewriteFlow sets the addresses and ports of ip, a TCP or UDP packet whose
// transport header is at ihl, updating the checksums incrementally. If
// partial, the transport checksum field holds the partial sum of the
// pseudo-header (virtio NEEDS_CSUM), into which only the address change is
// folded.
func rewriteFlow(ip []byte, ihl int, partial bool, src, dst [4]byte, sport, dport uint16) {
	var old [12]byte
	copy(old[:8], ip[12:20])
	t := ip[ihl:]
	copy(old[8:], t[:4])
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(t[0:], sport)
	binary.BigEndian.PutUint16(t[2:], dport)

	hc := binary.BigEndian.Uint16(ip[10:])
	for i := 0; i < 8; i += 2 {
		hc = updateChecksum(hc, binary.BigEndian.Uint16(old[i:]), binary.BigEndian.Uint16(ip[12+i:]))
	}
	binary.BigEndian.PutUint16(ip[10:], hc)

	off := 16 // TCP checksum
	if ip[9] == protoUDP {
		off = 6
	}
	c := binary.BigEndian.Uint16(t[off:])
	if partial {
		// The field is the (uncomplemented) sum of the pseudo-header: add
		// the new address words and subtract the old ones.
		sum := uint32(c)
		for i := 0; i < 8; i += 2 {
			sum += uint32(^binary.BigEndian.Uint16(old[i:])) + uint32(binary.BigEndian.Uint16(ip[12+i:]))
		}
		sum = sum&0xffff + sum>>16
		sum = sum&0xffff + sum>>16
		binary.BigEndian.PutUint16(t[off:], uint16(sum))
		return
	}
	if ip[9] == protoUDP && c == 0 {
		return // no checksum
	}
	for i := 0; i < 8; i += 2 {
		c = updateChecksum(c, binary.BigEndian.Uint16(old[i:]), binary.BigEndian.Uint16(ip[12+i:]))
	}
	for i := 8; i < 12; i += 2 {
		c = updateChecksum(c, binary.BigEndian.Uint16(old[i:]), binary.BigEndian.Uint16(t[i-8:]))
	}
	if ip[9] == protoUDP && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(t[off:], c)
}
