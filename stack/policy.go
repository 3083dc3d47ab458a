package stack

import (
	"encoding/binary"
	"net/netip"
)

// NetworkPolicy enforcement.
//
// The Filter (the node agent's compiled NetworkPolicy) is asked once per new
// flow, where Kubernetes users expect it: egress at the source pod's node
// (the reader of the sending pod), ingress at the destination pod's node
// (the reader of a local sender, or DeliverFromOverlay for a remote one), and
// for Service traffic after the translation, against the backend it got.
// Only pods the Filter isolates pay anything: for the others the check is one
// atomic load per frame.
//
// A TCP connection is judged by its SYN: a denied SYN is dropped (the client
// times out, as with every CNI that drops rather than rejects), and the
// segments of a connection that was let in pass unjudged, so its replies
// always pass and a policy change leaves established connections alone (as
// Calico's and Cilium's connection tracking do). A UDP (or SCTP) flow is
// judged by its first datagram and then tracked, so that its replies pass,
// until it has been idle for the UDP timeouts of the connection tracking.
// Other protocols (ICMP) are not subject to NetworkPolicy, which has no way
// to name them. Fragments after the first carry no ports and pass.

// Filter is the NetworkPolicy a Stack enforces on new flows.
type Filter interface {
	// Isolated reports whether the pod with address a is isolated for
	// ingress and for egress: only flows Allow admits may reach it, or
	// leave it.
	Isolated(a netip.Addr) (ingress, egress bool)

	// Allow decides a new flow of protocol proto (6 TCP, 17 UDP, 132
	// SCTP) from src to dst: egress judges it for the source pod, ingress
	// (egress false) for the destination pod. decider is the Filter's own
	// name for what decided (the set of policies), which the Stack passes
	// to its FlowObserver. It is called on the packet path, concurrently:
	// it must be fast and must not block.
	Allow(proto uint8, src, dst netip.AddrPort, egress bool) (allowed bool, decider uint32)
}

// filterBox holds a Filter for atomic.Pointer.
type filterBox struct{ f Filter }

// SetFilter replaces the NetworkPolicy (nil: none) and the isolation of the
// attached pods; new flows are judged by it from now on.
func (s *Stack) SetFilter(f Filter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == nil {
		s.filter.Store(nil)
	} else {
		s.filter.Store(&filterBox{f})
	}
	for _, p := range s.byIP {
		in, eg := false, false
		if f != nil {
			in, eg = f.Isolated(p.ip)
		}
		p.ingressIso.Store(in)
		p.egressIso.Store(eg)
	}
}

// policyOut judges frame, read from p (an IPv4 frame classifyRoute
// checked), for p's egress and, if dst is a local pod, for dst's ingress. It
// reports whether the frame may pass; a denied one is counted.
//
// A flow is tracked when either end is isolated in either direction, even if
// only one direction is judged: the replies of a UDP flow from a pod isolated
// for ingress (or to one isolated for egress) must find the flow.
func (s *Stack) policyOut(p, dst *pod, frame []byte, ev *FlowEvent) bool {
	eg := p.egressIso.Load()
	in := dst != nil && dst.ingressIso.Load()
	if !eg && !in && !p.ingressIso.Load() && (dst == nil || !dst.egressIso.Load()) {
		return true
	}
	if binary.BigEndian.Uint16(frame[ethOff+12:]) != etherTypeIPv4 {
		return true
	}
	return s.policyCheck(frame[netOff:], eg, in, ev)
}

// policyIn judges ip, an IPv4 packet from the overlay to the local pod dst,
// for dst's ingress, and tracks its flow if dst is isolated either way.
func (s *Stack) policyIn(dst *pod, ip []byte, ev *FlowEvent) bool {
	in := dst.ingressIso.Load()
	if !in && !dst.egressIso.Load() {
		return true
	}
	return s.policyCheck(ip, false, in, ev) // tracked for the replies of an egress-isolated pod
}

// policyPorts locates the ports of a TCP, UDP or SCTP packet ip (a checked
// IPv4 packet); ok is false for other protocols, later fragments and
// truncated headers.
func policyPorts(ip []byte) (ihl int, ok bool) {
	switch ip[9] {
	case protoTCP, protoUDP, protoSCTP:
	default:
		return 0, false
	}
	if binary.BigEndian.Uint16(ip[6:])&ipFragmentOffsetMask != 0 {
		return 0, false // not the first fragment
	}
	ihl = int(ip[0]&0x0f) * 4
	need := 8
	if ip[9] == protoTCP {
		need = 14
	}
	return ihl, len(ip) >= ihl+need
}

const protoSCTP = 132

// policyCheck judges the IPv4 packet ip for its source's egress (eg) and
// its destination's ingress (in), as the comment at the top describes, and
// tracks a UDP or SCTP flow it admits (even one it did not need to judge).
func (s *Stack) policyCheck(ip []byte, eg, in bool, ev *FlowEvent) bool {
	fb := s.filter.Load()
	if fb == nil {
		return true
	}
	ihl, ok := policyPorts(ip)
	if !ok {
		return true
	}
	proto := ip[9]
	if proto == protoTCP {
		if ip[ihl+13]&(tcpSyn|tcpAck) != tcpSyn {
			return true // not a connection attempt
		}
		return s.judge(fb.f, ip, ihl, eg, in, ev)
	}
	k := packetKey(ip, ihl)
	if r, ok := s.ct.lookup(k); ok {
		s.ct.touch(r.e, timeout(r.e))
		if r.reply && r.e.plain {
			s.ct.setState(r.e, ctReplied)
		}
		return true
	}
	if !s.judge(fb.f, ip, ihl, eg, in, ev) {
		return false
	}
	s.trackPlain(k)
	return true
}

// judge asks the Filter about the new flow of ip, and notes its verdicts in
// ev (if not nil).
func (s *Stack) judge(f Filter, ip []byte, ihl int, eg, in bool, ev *FlowEvent) bool {
	src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(ip[ihl:]))
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(ip[ihl+2:]))
	return s.ask(f, ip[9], src, dst, eg, in, ev)
}

// ask asks the Filter f about a new flow for the source's egress (eg) and the
// destination's ingress (in), counts a denial and notes the verdicts in ev
// (if not nil).
func (s *Stack) ask(f Filter, proto uint8, src, dst netip.AddrPort, eg, in bool, ev *FlowEvent) bool {
	if eg {
		ok, d := f.Allow(proto, src, dst, true)
		noteJudged(ev, f, true, ok, d)
		if !ok {
			s.policyDenied.Add(1)
			return false
		}
	}
	if in {
		ok, d := f.Allow(proto, src, dst, false)
		noteJudged(ev, f, false, ok, d)
		if !ok {
			s.policyDenied.Add(1)
			return false
		}
	}
	return true
}

// trackPlain keeps the admitted flow k so that its later datagrams and its
// replies pass. A full table only means the next datagram is judged again.
func (s *Stack) trackPlain(k ctKey) {
	e := &ctEntry{orig: k, reply: k.reverse(), client: k.src(), plain: true}
	s.ct.touch(e, timeout(e))
	s.ct.insert(e)
}

// admitTranslated judges a new Service flow from the pod p, translated to
// backend: p's egress, and the backend's ingress if it is a local pod (a
// remote backend's node judges it when it arrives).
func (s *Stack) admitTranslated(p *pod, proto uint8, client, backend netip.AddrPort, ev *FlowEvent) bool {
	fb := s.filter.Load()
	if fb == nil || p == nil {
		return true
	}
	eg := p.egressIso.Load()
	in := false
	if d := s.pods.Load().lookup(backend.Addr().As4()); d != nil {
		in = d.ingressIso.Load()
	}
	return s.ask(fb.f, proto, client, backend, eg, in, ev)
}

// admitDial judges a connection the netstack opens from src to the local
// pod dst (a NodePort's), for dst's ingress.
// The flow is told to the FlowObserver.
func (s *Stack) admitDial(proto uint8, src, dst netip.AddrPort) bool {
	var ev FlowEvent
	ok := s.admitDialNoted(proto, src, dst, &ev)
	s.observeDial(proto, src, dst, &ev)
	return ok
}

func (s *Stack) admitDialNoted(proto uint8, src, dst netip.AddrPort, ev *FlowEvent) bool {
	fb := s.filter.Load()
	if fb == nil {
		return true
	}
	d := s.pods.Load().lookup(dst.Addr().As4())
	if d == nil || !d.ingressIso.Load() {
		return true
	}
	return s.ask(fb.f, proto, src, dst, false, true, ev)
}
