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
	// (egress false) for the destination pod. It is called on the packet
	// path, concurrently: it must be fast and must not block.
	Allow(proto uint8, src, dst netip.AddrPort, egress bool) bool
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
func (s *Stack) policyOut(p, dst *pod, frame []byte) bool {
	eg := p.egressIso.Load()
	in := dst != nil && dst.ingressIso.Load()
	if !eg && !in && !p.ingressIso.Load() && (dst == nil || !dst.egressIso.Load()) {
		return true
	}
	if binary.BigEndian.Uint16(frame[ethOff+12:]) != etherTypeIPv4 {
		return true
	}
	return s.policyCheck(frame[netOff:], eg, in)
}

// policyIn judges ip, an IPv4 packet from the overlay to the local pod dst,
// for dst's ingress, and tracks its flow if dst is isolated either way.
func (s *Stack) policyIn(dst *pod, ip []byte) bool {
	in := dst.ingressIso.Load()
	if !in && !dst.egressIso.Load() {
		return true
	}
	return s.policyCheck(ip, false, in) // tracked for the replies of an egress-isolated pod
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
	if binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
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
func (s *Stack) policyCheck(ip []byte, eg, in bool) bool {
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
		return s.judge(fb.f, ip, ihl, eg, in)
	}
	k := packetKey(ip, ihl)
	if r, ok := s.ct.lookup(k); ok {
		s.ct.touch(r.e, timeout(r.e))
		if r.reply && r.e.plain {
			s.ct.setState(r.e, ctReplied)
		}
		return true
	}
	if !s.judge(fb.f, ip, ihl, eg, in) {
		return false
	}
	s.trackPlain(k)
	return true
}

// judge asks the Filter about the new flow of ip.
func (s *Stack) judge(f Filter, ip []byte, ihl int, eg, in bool) bool {
	src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(ip[ihl:]))
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(ip[ihl+2:]))
	if (eg && !f.Allow(ip[9], src, dst, true)) || (in && !f.Allow(ip[9], src, dst, false)) {
		s.policyDenied.Add(1)
		return false
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
func (s *Stack) admitTranslated(p *pod, proto uint8, client, backend netip.AddrPort) bool {
	fb := s.filter.Load()
	if fb == nil || p == nil {
		return true
	}
	eg := p.egressIso.Load()
	in := false
	if d := s.pods.Load().lookup(backend.Addr().As4()); d != nil {
		in = d.ingressIso.Load()
	}
	if (eg && !fb.f.Allow(proto, client, backend, true)) || (in && !fb.f.Allow(proto, client, backend, false)) {
		s.policyDenied.Add(1)
		return false
	}
	return true
}

// admitDial judges a connection the netstack opens from src to the local
// pod dst (a NodePort's), for dst's ingress.
func (s *Stack) admitDial(proto uint8, src, dst netip.AddrPort) bool {
	fb := s.filter.Load()
	if fb == nil {
		return true
	}
	d := s.pods.Load().lookup(dst.Addr().As4())
	if d == nil || !d.ingressIso.Load() {
		return true
	}
	if !fb.f.Allow(proto, src, dst, false) {
		s.policyDenied.Add(1)
		return false
	}
	return true
}
