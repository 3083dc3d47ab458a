package stack

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podnet/podnet/tap"
)

// Observing the data path: flows and captures.
//
// A FlowObserver is told of every new flow the data path sees — a TCP SYN,
// the first datagram of a UDP or SCTP flow — once it has decided what to do
// with it: forwarded (with the Service translation, if any), denied by
// NetworkPolicy (with the Filter's verdicts), refused for want of an
// endpoint, or dropped because the connection-tracking table was full. It is
// called on the packet path: it must copy what it keeps and must not block.
// Without an observer the packet path pays one atomic load per frame.
//
// Repeats are kept out by a small table of the flows seen lately (seenFlows):
// a flow's later datagrams, and a SYN sent again within flowSeenFor, are not
// new. The table is lossy (two flows may share a slot), so a busy node may
// report a flow twice; it never allocates.
//
// A capture sees the frames of one pod's interface, both ways, as the pod's
// kernel does, or the inner packets of the overlay; GSO super-frames are cut
// into the segments they stand for, with complete checksums, as a NIC would
// put them on a wire (captureFrame).

// FlowVerdict is what the data path did with a new flow.
type FlowVerdict uint8

const (
	// FlowForwarded: the flow was sent on (to a pod, another node, the
	// netstack or a local service).
	FlowForwarded FlowVerdict = iota
	// FlowDenied: NetworkPolicy denied it (FlowEvent.DeniedEgress says
	// which side's).
	FlowDenied
	// FlowNoEndpoint: it was addressed to a Service port without a usable
	// endpoint, and refused.
	FlowNoEndpoint
	// FlowDropped: the connection-tracking table, or the half-open share
	// of it, was full.
	FlowDropped
)

func (v FlowVerdict) String() string {
	switch v {
	case FlowForwarded:
		return "forwarded"
	case FlowDenied:
		return "denied"
	case FlowNoEndpoint:
		return "no-endpoint"
	case FlowDropped:
		return "dropped"
	}
	return "unknown"
}

// FlowPoint is where the data path saw a new flow.
type FlowPoint uint8

const (
	// FlowFromPod: sent by a pod of this node.
	FlowFromPod FlowPoint = iota
	// FlowFromOverlay: arrived from another node for a pod of this one.
	FlowFromOverlay
	// FlowFromNode: opened by the node itself (DialTCP, DialUDP: a
	// NodePort's or the Ingress's connection to a backend).
	FlowFromNode
)

// FlowEvent is a new flow and what became of it.
type FlowEvent struct {
	Time  time.Time
	Point FlowPoint
	Proto uint8 // 6 TCP, 17 UDP, 132 SCTP
	// Src is the client; Dst where the flow went: the backend when a
	// Service translated it, whose address and port are then in Service.
	Src, Dst netip.AddrPort
	Service  netip.AddrPort
	Verdict  FlowVerdict
	// Filter is the NetworkPolicy that judged the flow (nil: not judged).
	// EgressJudged and IngressJudged say which sides it judged, with the
	// Filter's decider for each (Filter.Allow's); DeniedEgress says which
	// side denied a FlowDenied flow.
	Filter                        Filter
	EgressJudged, IngressJudged   bool
	EgressDecider, IngressDecider uint32
	DeniedEgress                  bool
}

// FlowObserver receives new flows; see the comment at the top of this file.
type FlowObserver func(*FlowEvent)

// flowObserverBox holds a FlowObserver for atomic.Pointer.
type flowObserverBox struct{ f FlowObserver }

// SetFlowObserver sets (nil: removes) the observer of new flows.
func (s *Stack) SetFlowObserver(f FlowObserver) {
	if f == nil {
		s.flowObs.Store(nil)
		return
	}
	s.flowObs.Store(&flowObserverBox{f})
}

// flowSeenFor is how long a flow stays known after its last packet: a UDP
// datagram or a SYN later than that is a new flow again.
const flowSeenFor = 30

// seenFlows is a lossy, direct-mapped table of the flows seen lately: each
// slot holds a flow's hash (high half) and the second it was last seen (low
// half).
type seenFlows [4096]atomic.Uint64

// firstIn reports whether the flow with hash h is new at second now, and
// notes it.
func (t *seenFlows) firstIn(h uint32, now uint32) bool {
	slot := &t[h%uint32(len(t))]
	v, nv := slot.Load(), uint64(h)<<32|uint64(now)
	if v == nv {
		return false // seen this second: no write, the cache line stays shared
	}
	slot.Store(nv)
	return uint32(v>>32) != h || now-uint32(v) > flowSeenFor || v == 0
}

// newFlow reports whether the IPv4 packet ip (a checked header) starts a
// flow: a SYN without ACK, or a UDP or SCTP datagram, that seenFlows does not
// know. Later fragments and other protocols start none. Its clock is the
// sweeper's, in seconds: reading the time for every datagram would cost more
// than the rest of the check.
func (s *Stack) newFlow(ip []byte) bool {
	return s.flowStart(ip) == startsFlow
}

// What a packet is to a pod's bound on new flows (flowStart).
const (
	inFlow     = iota // a packet of a known flow, or of none
	startsFlow        // the first packet of a new flow (newFlow)
	disowns           // a TCP reset without ACK
)

// flowStart says what the IPv4 packet ip (a checked header) is to its pod's
// bound on new flows, reading its header once: it starts a flow (newFlow), or
// it is a TCP reset without ACK, what a kernel answers to a segment of a
// connection it does not have. A pod's kernel sends one for each SYN-ACK to a
// SYN that a raw socket forged (hping3 --flood), so such a reset counts against
// the pod's bound like the SYN it answers, and a flood of forged SYNs gets half
// as many flows through. A pod that refuses a connection (no listener) or
// aborts one of its own sends a reset with ACK, which does not count.
func (s *Stack) flowStart(ip []byte) int {
	ihl, ok := policyPorts(ip)
	if !ok {
		return inFlow
	}
	if ip[9] == protoTCP {
		switch flags := ip[ihl+13]; {
		case flags&(tcpSyn|tcpAck) == tcpSyn:
		case flags&(tcpRst|tcpAck) == tcpRst:
			return disowns
		default:
			return inFlow
		}
	}
	if s.seen.firstIn(flowKeyHash(ip, ihl), s.clock.Load()) {
		return startsFlow
	}
	return inFlow
}

// flowKeyHash hashes the protocol, addresses and ports of ip (FNV-1a), the
// same both ways: a reply belongs to the flow of its request, so a UDP
// server's answers to many clients are not new flows of the server's.
func flowKeyHash(ip []byte, ihl int) uint32 {
	var a, b [6]byte // the two ends, address and port
	copy(a[:4], ip[12:16])
	copy(a[4:], ip[ihl:ihl+2])
	copy(b[:4], ip[16:20])
	copy(b[4:], ip[ihl+2:ihl+4])
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	h := uint32(2166136261)
	h = (h ^ uint32(ip[9])) * 16777619
	for _, c := range a {
		h = (h ^ uint32(c)) * 16777619
	}
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}

// startFlow fills ev from the IPv4 packet ip of a new flow.
func startFlow(ev *FlowEvent, point FlowPoint, ip []byte, now time.Time) {
	ihl := int(ip[0]&0x0f) * 4
	*ev = FlowEvent{
		Time:  now,
		Point: point,
		Proto: ip[9],
		Src:   netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(ip[ihl:])),
		Dst:   netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(ip[ihl+2:])),
	}
}

// finishFlow sets ev's destination to where the packet ip now goes (after a
// Service translation).
func finishFlow(ev *FlowEvent, ip []byte) {
	if !ev.Service.IsValid() || ev.Verdict != FlowForwarded {
		return
	}
	ihl := int(ip[0]&0x0f) * 4
	ev.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(ip[ihl+2:]))
}

// noteJudged records in ev (if not nil) the Filter's verdict on one side.
func noteJudged(ev *FlowEvent, f Filter, egress, allowed bool, decider uint32) {
	if ev == nil {
		return
	}
	ev.Filter = f
	if egress {
		ev.EgressJudged, ev.EgressDecider = true, decider
	} else {
		ev.IngressJudged, ev.IngressDecider = true, decider
	}
	if !allowed {
		ev.Verdict = FlowDenied
		ev.DeniedEgress = egress
	}
}

// observeDial reports a flow the node opens to dst (DialTCP, DialUDP).
func (s *Stack) observeDial(proto uint8, src, dst netip.AddrPort, ev *FlowEvent) {
	ob := s.flowObs.Load()
	if ob == nil {
		return
	}
	ev.Time, ev.Point, ev.Proto, ev.Src, ev.Dst = time.Now(), FlowFromNode, proto, src, dst
	ob.f(ev)
}

// CaptureFunc receives captured packets: Ethernet frames of a pod's
// interface (without the virtio_net_hdr; in is true for frames the pod
// sent), or IPv4 packets of the overlay (in is true for packets that arrived
// from other nodes). It is called on the packet path, concurrently: it must
// copy what it keeps and must not block.
type CaptureFunc func(pkt []byte, in bool)

// captureSet is the captures running on one pod or on the overlay.
type captureSet struct {
	mu   sync.Mutex // guards fns, next
	fns  map[int]CaptureFunc
	next int
	// any is the copy-on-write list the packet path reads.
	any atomic.Pointer[[]CaptureFunc]
}

func (c *captureSet) add(fn CaptureFunc) (stop func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fns == nil {
		c.fns = map[int]CaptureFunc{}
	}
	id := c.next
	c.next++
	c.fns[id] = fn
	c.publishLocked()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			delete(c.fns, id)
			c.publishLocked()
		})
	}
}

func (c *captureSet) publishLocked() {
	if len(c.fns) == 0 {
		c.any.Store(nil)
		return
	}
	l := make([]CaptureFunc, 0, len(c.fns))
	for _, f := range c.fns {
		l = append(l, f)
	}
	c.any.Store(&l)
}

// active returns the running captures, or nil.
func (c *captureSet) active() []CaptureFunc {
	if l := c.any.Load(); l != nil {
		return *l
	}
	return nil
}

// CapturePod starts a capture of the frames of the pod with address ip, both
// ways; stop ends it. It fails if no such pod is attached. Its frames stop
// when the pod is detached. The packet path takes no lock for captures: a
// frame a reader was handling when stop was called may still reach fn, so fn
// must stay callable after stop (drop what comes late).
func (s *Stack) CapturePod(ip netip.Addr, fn CaptureFunc) (stop func(), err error) {
	ip = ip.Unmap()
	if !ip.Is4() {
		return nil, errNotAttached(ip)
	}
	s.mu.Lock()
	p, ok := s.byIP[ip.As4()]
	s.mu.Unlock()
	if !ok {
		return nil, errNotAttached(ip)
	}
	return p.capt.add(fn), nil
}

// CaptureOverlay starts a capture of the inner packets of the overlay, both
// ways; stop ends it.
func (s *Stack) CaptureOverlay(fn CaptureFunc) (stop func()) { return s.ovlCapt.add(fn) }

type errNotAttached netip.Addr

func (e errNotAttached) Error() string {
	return "no pod with address " + netip.Addr(e).String() + " is attached to this node"
}

// captureFrame gives the frame f (with its virtio_net_hdr) to fns as the
// frames it stands for: a GSO frame as its segments, a frame with a partial
// checksum with its checksum complete. f is not changed; scratch space comes
// from a pool, as captures are rare.
func captureFrame(fns []CaptureFunc, f []byte, in bool) {
	if len(f) < netOff {
		return
	}
	h, _ := tap.DecodeVirtioNetHdr(f)
	eth := f[ethOff:]
	if h.GSOType == tap.GSONone && h.Flags&tap.FlagNeedsCsum == 0 {
		for _, fn := range fns {
			fn(eth, in)
		}
		return
	}
	bp := captureBufs.Get().(*captureBuf)
	defer captureBufs.Put(bp)
	emit := func(ip []byte) {
		frame := append(bp.frame[:0], eth[:ethLen]...)
		frame = append(frame, ip...)
		bp.frame = frame
		for _, fn := range fns {
			fn(frame, in)
		}
	}
	ip := append(bp.ip[:0], eth[ethLen:]...)
	bp.ip = ip
	if binary.BigEndian.Uint16(eth[12:]) != etherTypeIPv4 || len(ip) < 20 || ip[0]>>4 != 4 {
		emit(ip) // not IPv4: as it is
		return
	}
	if total := int(binary.BigEndian.Uint16(ip[2:])); total <= len(ip) && total >= 20 {
		ip = ip[:total]
	}
	switch h.GSOType &^ tap.GSOECN {
	case tap.GSONone:
		start := int(h.CsumStart) - ethLen
		completeChecksum(ip, start, start+int(h.CsumOffset))
		emit(ip)
	case tap.GSOTCPv4:
		ihl := int(ip[0]&0x0f) * 4
		mss := int(h.GSOSize)
		if len(ip) < ihl+20 || mss <= 0 {
			emit(ip)
			return
		}
		var ok bool
		bp.arena, bp.pkts, ok = segmentTCP4(bp.arena, bp.pkts[:0], ip, mss)
		if !ok {
			emit(ip)
			return
		}
		for _, seg := range bp.pkts {
			emit(seg)
		}
		clear(bp.pkts)
	case tap.GSOUDPL4:
		var ok bool
		bp.scratch, ok = splitUDP4(bp.scratch, ip, int(h.GSOSize), emit)
		if !ok {
			emit(ip)
		}
	default:
		emit(ip)
	}
}

// captureBuf is captureFrame's scratch space.
type captureBuf struct {
	frame, ip, arena, scratch []byte
	pkts                      [][]byte
}

var captureBufs = sync.Pool{New: func() any { return new(captureBuf) }}

// writeFrame writes frame to q, one of p's queues, after p's captures saw it.
func (p *pod) writeFrame(q *podQueue, frame []byte) error {
	if fns := p.capt.active(); fns != nil {
		captureFrame(fns, frame, false)
	}
	return q.port.WriteFrame(frame)
}
