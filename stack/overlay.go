package stack

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	netstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/podnet/podnet/tap"
)

// OverlaySender is where the Stack sends packets for other nodes' pods
// (*overlay.Overlay satisfies it).
type OverlaySender interface {
	// SendPackets sends IPv4 packets, each at most the Stack's MTU, to the
	// nodes that own their destinations. It must not keep pkts after it
	// returns and must not block for long (drop rather than wait). It may
	// be called concurrently. An error means the packets were not sent.
	SendPackets(pkts [][]byte) error
}

// remoteTable is the immutable snapshot of the remote routes (other nodes'
// pod CIDRs) that the readers consult for every frame. A destination is
// looked up with one map lookup per distinct prefix length.
type remoteTable struct {
	prefixes []netip.Prefix
	lens     []int               // distinct prefix lengths, longest first
	nets     map[uint64]struct{} // length<<32 | masked address
	via      OverlaySender
}

func newRemoteTable(prefixes []netip.Prefix, via OverlaySender) *remoteTable {
	t := &remoteTable{prefixes: prefixes, nets: make(map[uint64]struct{}), via: via}
	for _, p := range prefixes {
		a := binary.BigEndian.Uint32(p.Addr().AsSlice())
		t.nets[uint64(p.Bits())<<32|uint64(a)] = struct{}{}
		if !slices.Contains(t.lens, p.Bits()) {
			t.lens = append(t.lens, p.Bits())
		}
	}
	slices.SortFunc(t.lens, func(a, b int) int { return b - a })
	return t
}

// routes reports whether dst is in a remote route. It accepts a nil table.
func (t *remoteTable) routes(dst [4]byte) bool {
	if t == nil {
		return false
	}
	a := binary.BigEndian.Uint32(dst[:])
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

// SetRemoteRoutes replaces the routes to other nodes' pods: frames from pods
// to addresses in routes are sent through via, and so are the netstack's
// packets to them (the gateway's answers to remote pods). nil or empty
// routes, or a nil via, remove every remote route. Routes that are not IPv4
// or overlap this node's PodCIDR are ignored (and logged): the node's own
// pods are never reached through the overlay. Frames being handled while
// the routes change may take the old or the new routes.
func (s *Stack) SetRemoteRoutes(routes []netip.Prefix, via OverlaySender) {
	var keep []netip.Prefix
	for _, r := range routes {
		if !r.IsValid() || !r.Addr().Is4() || r.Overlaps(s.opts.PodCIDR) {
			s.log.Warn("ignoring remote route", "route", r, "podCIDR", s.opts.PodCIDR)
			continue
		}
		keep = append(keep, r.Masked())
	}
	slices.SortFunc(keep, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr())*64 + a.Bits() - b.Bits() })
	keep = slices.Compact(keep)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if via == nil || len(keep) == 0 {
		s.remote.Store(nil)
		keep = nil
	} else {
		s.remote.Store(newRemoteTable(keep, via))
	}
	nic := s.ovl.nicID
	s.ns.RemoveRoutes(func(r tcpip.Route) bool { return r.NIC == nic })
	for _, r := range keep {
		sub := tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(r.Addr().As4()), PrefixLen: r.Bits()}.Subnet()
		s.ns.AddRoute(tcpip.Route{Destination: sub, NIC: nic})
	}
}

// podTx is the scratch space the reader of a pod's queue uses to cut frames
// for the overlay; only that reader touches it.
type podTx struct {
	arena   []byte   // the packets handed to the sender
	pkts    [][]byte // slices of arena
	scratch []byte   // for splitUDP4
}

// sendToOverlay sends frame (classified verdictOverlay) through via: the
// headers are stripped, the TTL decremented, GSO frames are cut into
// MTU-sized packets and partial checksums completed, so every packet that
// leaves is a complete, valid IPv4 packet of at most the MTU. It reports
// whether the frame was sent. p is the source pod; tx is the calling
// reader's scratch space.
func (s *Stack) sendToOverlay(p *pod, tx *podTx, frame []byte, via OverlaySender) bool {
	h, _ := tap.DecodeVirtioNetHdr(frame)
	ip := frame[netOff:]
	ip = ip[:binary.BigEndian.Uint16(ip[2:])] // classify checked the length
	decrementTTL(ip)
	mtu := s.opts.MTU
	pkts := tx.pkts[:0]
	ok := false
	switch h.GSOType &^ tap.GSOECN {
	case tap.GSONone:
		ok = len(ip) <= mtu
		if ok && h.Flags&tap.FlagNeedsCsum != 0 {
			start := int(h.CsumStart) - ethLen
			ok = completeChecksum(ip, start, start+int(h.CsumOffset))
		}
		pkts = append(pkts, ip)
	case tap.GSOTCPv4:
		ihl := int(ip[0]&0x0f) * 4
		if len(ip) < ihl+header.TCPMinimumSize {
			break
		}
		hl := ihl + int(ip[ihl+12]>>4)*4
		mss := min(int(h.GSOSize), mtu-hl)
		if h.GSOSize == 0 {
			mss = mtu - hl
		}
		tx.arena, pkts, ok = segmentTCP4(tx.arena, pkts, ip, mss)
	case tap.GSOUDPL4:
		const minSegment = 64 // bounds the number of datagrams (and arena)
		ihl := int(ip[0]&0x0f) * 4
		seg := int(h.GSOSize)
		if seg < minSegment || ihl+header.UDPMinimumSize+seg > mtu {
			break
		}
		if need := len(ip) + (len(ip)/seg+1)*(ihl+header.UDPMinimumSize); cap(tx.arena) < need {
			tx.arena = make([]byte, need)
		}
		arena := tx.arena[:0]
		tx.scratch, ok = splitUDP4(tx.scratch, ip, seg, func(d []byte) {
			n := len(arena)
			arena = append(arena, d...)
			pkts = append(pkts, arena[n:len(arena):len(arena)])
		})
		_ = arena
	}
	tx.pkts = pkts
	if !ok {
		return false
	}
	for _, fn := range s.ovlCapt.active() {
		for _, pkt := range pkts {
			fn(pkt, false)
		}
	}
	if err := via.SendPackets(pkts); err != nil {
		return false
	}
	bytes := 0
	for _, pkt := range pkts {
		bytes += len(pkt)
	}
	p.ctr.overlayFrames.Add(1)
	p.ctr.overlayPackets.Add(uint64(len(pkts)))
	p.ctr.overlayBytes.Add(uint64(bytes))
	clear(pkts)
	return true
}

// DeliverFromOverlay takes packets that arrived from other nodes (decrypted
// IPv4; *overlay.Overlay's Options.Deliver). A packet to a local pod is
// written to the pod's port (fast path: Ethernet header from GatewayMAC to
// PodMAC, TTL decremented); a packet to the gateway is handed to the netstack
// (which answers pings and serves the gateway's ports as for local pods).
// Everything else is dropped and counted: malformed packets, sources outside
// the remote routes (WireGuard already drops sources outside the sending
// peer's allowed IPs), other destinations. It does not keep pkts and may be
// called concurrently. Close the overlay before the Stack.
//
// Consecutive TCP segments of one flow in pkts are coalesced (GRO) into one
// GSO super-frame (gso_type TCPv4, NEEDS_CSUM with the pseudo-header sum),
// as a NIC would, so the pod's kernel handles one frame instead of dozens.
// Other packets get a virtio_net_hdr with DATA_VALID: checksums are not
// verified, since WireGuard authenticated every packet and the sending Stack
// completed its checksums before encryption.
func (s *Stack) DeliverFromOverlay(pkts [][]byte) {
	pods, remote := s.pods.Load(), s.remote.Load()
	c := &s.ovl.ctr
	ob := s.flowObs.Load()
	var now time.Time
	var ev FlowEvent
	var g groFrame
	defer func() {
		s.flushGRO(&g)
		if g.buf != nil {
			s.framebs.Put(g.buf)
		}
	}()
	for _, ip := range pkts {
		if len(ip) < header.IPv4MinimumSize || ip[0]>>4 != 4 {
			c.rxDropped.Add(1)
			continue
		}
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		// A header whose checksum is wrong is dropped here, as a router drops it: WireGuard
		// vouches for the peer, not for what the peer sends.
		if ihl < header.IPv4MinimumSize || total < ihl || total > len(ip) || checksum.Checksum(ip[:ihl], 0) != 0xffff {
			c.rxDropped.Add(1)
			continue
		}
		ip = ip[:total]
		for _, fn := range s.ovlCapt.active() {
			fn(ip, true)
		}
		src, dst := [4]byte(ip[12:16]), [4]byte(ip[16:20])
		if !remote.routes(src) {
			c.rxDropped.Add(1)
			continue
		}
		if dst == s.gw4 {
			if s.ovl.link.deliver(ip) {
				c.rxPackets.Add(1)
				c.rxBytes.Add(uint64(total))
			} else {
				c.rxDropped.Add(1)
			}
			continue
		}
		p := pods.lookup(dst)
		if p == nil {
			c.rxDropped.Add(1)
			continue
		}
		if ip[8] <= 1 {
			c.rxTTL.Add(1)
			continue
		}
		// The sending node completed the checksums, so partial is false.
		// Every flow that arrives is noted (newFlow), so that the local
		// pod's replies are not new flows of its own under the bound.
		isNew := (ob != nil || s.opts.MaxNewFlowsPerPod > 0) && s.newFlow(ip)
		var note *FlowEvent
		if ob != nil && isNew {
			if now.IsZero() {
				now = time.Now()
			}
			note = &ev
			startFlow(note, FlowFromOverlay, ip, now)
		}
		if !(s.ct.mayBeClient(dst) && s.translateReply(ip, false)) && !s.policyIn(p, ip, note) {
			if note != nil {
				ob.f(note)
			}
			continue
		}
		if note != nil {
			ob.f(note)
		}
		c.rxPackets.Add(1)
		c.rxBytes.Add(uint64(total))
		if g.p == p && g.append(ip) {
			continue
		}
		s.flushGRO(&g)
		if g.buf == nil {
			g.buf = s.framebs.Get().(*[]byte)
		}
		g.start(p, ip, &s.gwMAC)
	}
}

// groFrame is the frame DeliverFromOverlay is building for a pod: one packet,
// or TCP segments of one flow coalesced.
type groFrame struct {
	buf  *[]byte // from Stack.framebs
	p    *pod    // nil: no frame
	n    int     // frame length
	segs int     // segments coalesced
	// For coalescing: the header length (IP+TCP), the first segment's
	// payload length (gso_size), the next expected sequence number.
	hl, mss int
	next    uint32
	open    bool // more segments may be appended
}

// start begins a frame to p with the IPv4 packet ip (already checked).
func (g *groFrame) start(p *pod, ip []byte, gwMAC *[6]byte) {
	f := *g.buf
	clear(f[:vnetLen])
	copy(f[ethOff:], p.mac[:])
	copy(f[ethOff+6:], gwMAC[:])
	binary.BigEndian.PutUint16(f[ethOff+12:], etherTypeIPv4)
	copy(f[netOff:], ip)
	decrementTTL(f[netOff:])
	g.p, g.n, g.segs, g.open = p, netOff+len(ip), 1, false
	// A TCP segment without IP options, not fragmented, with payload and
	// only ACK (and PSH, which ends a run) may start a run.
	const ihl = header.IPv4MinimumSize
	if ip[0] != 0x45 || ip[9] != uint8(header.TCPProtocolNumber) || len(ip) < ihl+header.TCPMinimumSize ||
		binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		return
	}
	t := ip[ihl:]
	thl := int(t[12]>>4) * 4
	flags := t[13]
	if thl < header.TCPMinimumSize || ihl+thl >= len(ip) ||
		flags&^uint8(header.TCPFlagPsh) != uint8(header.TCPFlagAck) {
		return
	}
	g.hl = ihl + thl
	g.mss = len(ip) - g.hl
	g.next = binary.BigEndian.Uint32(t[4:]) + uint32(g.mss)
	g.open = flags&uint8(header.TCPFlagPsh) == 0
}

// append adds the IPv4 packet ip to the frame if it continues the run: same
// addresses, ports, ack, window, options, TOS, DF, the next sequence number,
// ACK (and PSH, which ends the run) only, a payload no longer than the
// first's (a shorter one ends the run), and the frame stays within 64 KiB.
func (g *groFrame) append(ip []byte) bool {
	if !g.open || len(ip) <= g.hl || len(ip)-g.hl > g.mss || g.n+len(ip)-g.hl-netOff > 0xffff {
		return false
	}
	f := (*g.buf)[netOff:]
	const ihl = header.IPv4MinimumSize
	if ip[0] != 0x45 || ip[1] != f[1] || ip[9] != f[9] || binary.BigEndian.Uint16(ip[6:]) != binary.BigEndian.Uint16(f[6:]) ||
		[8]byte(ip[12:20]) != [8]byte(f[12:20]) || ip[8] != f[8]+1 {
		return false
	}
	t, ft := ip[ihl:g.hl], f[ihl:g.hl]
	flags := t[13]
	if binary.BigEndian.Uint32(t[4:]) != g.next || flags&^uint8(header.TCPFlagPsh) != uint8(header.TCPFlagAck) ||
		t[12] != ft[12] || [4]byte(t[0:4]) != [4]byte(ft[0:4]) || [4]byte(t[8:12]) != [4]byte(ft[8:12]) ||
		[2]byte(t[14:16]) != [2]byte(ft[14:16]) || string(t[header.TCPMinimumSize:]) != string(ft[header.TCPMinimumSize:]) {
		return false
	}
	payload := ip[g.hl:]
	g.n += copy((*g.buf)[g.n:], payload)
	g.next += uint32(len(payload))
	g.segs++
	if flags&uint8(header.TCPFlagPsh) != 0 {
		ft[13] |= uint8(header.TCPFlagPsh)
		g.open = false
	}
	if len(payload) < g.mss {
		g.open = false
	}
	return true
}

// flushGRO writes g's frame, if any, to its pod and empties g.
func (s *Stack) flushGRO(g *groFrame) {
	if g.p == nil {
		return
	}
	f := (*g.buf)[:g.n]
	if g.segs > 1 {
		ip := header.IPv4(f[netOff:])
		ip.SetTotalLength(uint16(len(ip)))
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
		const ihl = header.IPv4MinimumSize
		t := header.TCP(ip[ihl:])
		t.SetChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(t))))
		tap.VirtioNetHdr{
			Flags:      tap.FlagNeedsCsum,
			GSOType:    tap.GSOTCPv4,
			HdrLen:     uint16(ethLen + g.hl),
			GSOSize:    uint16(g.mss),
			CsumStart:  ethLen + ihl,
			CsumOffset: header.TCPChecksumOffset,
		}.Encode(f)
		s.ovl.ctr.rxCoalesced.Add(uint64(g.segs))
	} else {
		tap.VirtioNetHdr{Flags: tap.FlagDataValid}.Encode(f)
	}
	if err := g.p.writeFrame(g.p.queueFor(f[netOff:]), f); err != nil {
		s.ovl.ctr.rxWriteErrors.Add(uint64(g.segs))
	}
	g.p = nil
}

// overlayCounters are the Stack-wide counters of the overlay.
type overlayCounters struct {
	rxPackets     atomic.Uint64
	rxBytes       atomic.Uint64
	rxDropped     atomic.Uint64
	rxTTL         atomic.Uint64
	rxWriteErrors atomic.Uint64
	rxCoalesced   atomic.Uint64 // packets delivered in GRO frames

	_               [64]byte
	fromStack       atomic.Uint64 // netstack packets sent through the overlay
	fromStackBytes  atomic.Uint64
	fromStackErrors atomic.Uint64
}

// overlayNIC is the netstack's side of the overlay: a NIC holding the gateway
// address (not promiscuous: only packets to the gateway are delivered to it)
// whose routes are the remote routes.
type overlayNIC struct {
	nicID tcpip.NICID
	link  *overlayLink
	ctr   overlayCounters
}

// overlayLink is the link endpoint of the overlay NIC. Inbound,
// DeliverFromOverlay hands it packets to the gateway; outbound, WritePackets
// serializes the netstack's packets (no GSO, so at most the MTU, with
// checksums complete) and sends them through the remote table's sender.
type overlayLink struct {
	mtu    uint32
	remote *atomic.Pointer[remoteTable]
	frames *sync.Pool // of *[]byte, MaxFrameLen long
	ctr    *overlayCounters
	capt   *captureSet // the overlay's captures

	mu         sync.RWMutex
	dispatcher netstack.NetworkDispatcher // guarded by mu
	onClose    func()                     // guarded by mu
}

var _ netstack.LinkEndpoint = (*overlayLink)(nil)

// deliver hands the IPv4 packet ip to the netstack and reports whether the
// NIC was attached.
func (l *overlayLink) deliver(ip []byte) bool {
	l.mu.RLock()
	d := l.dispatcher
	l.mu.RUnlock()
	if d == nil {
		return false
	}
	deliverPacket(d, header.IPv4ProtocolNumber, ip)
	return true
}

// WritePackets implements netstack.LinkEndpoint.
func (l *overlayLink) WritePackets(pkts netstack.PacketBufferList) (int, tcpip.Error) {
	remote := l.remote.Load()
	if remote == nil {
		l.ctr.fromStackErrors.Add(uint64(pkts.Len()))
		return 0, &tcpip.ErrHostUnreachable{}
	}
	bp := l.frames.Get().(*[]byte)
	defer l.frames.Put(bp)
	arena := (*bp)[:0]
	out := make([][]byte, 0, pkts.Len())
	bytes := 0
	for _, pkt := range pkts.AsSlice() {
		size := pkt.Size()
		if size > int(l.mtu) || size > cap(arena)-len(arena) {
			l.ctr.fromStackErrors.Add(1)
			continue
		}
		start := len(arena)
		views, off := pkt.AsViewList()
		for v := views.Front(); v != nil; v = v.Next() {
			b := v.AsSlice()
			if off >= len(b) {
				off -= len(b)
				continue
			}
			arena = append(arena, b[off:]...)
			off = 0
		}
		out = append(out, arena[start:len(arena):len(arena)])
		bytes += size
	}
	if len(out) == 0 {
		return 0, &tcpip.ErrClosedForSend{}
	}
	for _, fn := range l.capt.active() {
		for _, pkt := range out {
			fn(pkt, false)
		}
	}
	if err := remote.via.SendPackets(out); err != nil {
		l.ctr.fromStackErrors.Add(uint64(len(out)))
		return 0, &tcpip.ErrClosedForSend{}
	}
	l.ctr.fromStack.Add(uint64(len(out)))
	l.ctr.fromStackBytes.Add(uint64(bytes))
	return len(out), nil
}

// MTU implements netstack.LinkEndpoint.
func (l *overlayLink) MTU() uint32 { return l.mtu }

// SetMTU implements netstack.LinkEndpoint; the MTU is fixed.
func (*overlayLink) SetMTU(uint32) {}

// MaxHeaderLength implements netstack.LinkEndpoint: IP packets only.
func (*overlayLink) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements netstack.LinkEndpoint: none.
func (*overlayLink) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements netstack.LinkEndpoint.
func (*overlayLink) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements netstack.LinkEndpoint: packets from the overlay
// were authenticated by WireGuard and carry checksums the sending node
// completed, so the netstack need not verify them. Outbound, the netstack
// computes every checksum itself (no TX offload).
func (*overlayLink) Capabilities() netstack.LinkEndpointCapabilities {
	return netstack.CapabilityRXChecksumOffload
}

// Attach implements netstack.LinkEndpoint.
func (l *overlayLink) Attach(d netstack.NetworkDispatcher) {
	l.mu.Lock()
	l.dispatcher = d
	l.mu.Unlock()
}

// IsAttached implements netstack.LinkEndpoint.
func (l *overlayLink) IsAttached() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.dispatcher != nil
}

// Wait implements netstack.LinkEndpoint; the link starts no goroutines.
func (*overlayLink) Wait() {}

// ARPHardwareType implements netstack.LinkEndpoint.
func (*overlayLink) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements netstack.LinkEndpoint.
func (*overlayLink) AddHeader(*netstack.PacketBuffer) {}

// ParseHeader implements netstack.LinkEndpoint.
func (*overlayLink) ParseHeader(*netstack.PacketBuffer) bool { return true }

// Close implements netstack.LinkEndpoint.
func (l *overlayLink) Close() {
	l.mu.Lock()
	f := l.onClose
	l.onClose = nil
	l.dispatcher = nil
	l.mu.Unlock()
	if f != nil {
		f()
	}
}

// SetOnCloseAction implements netstack.LinkEndpoint.
func (l *overlayLink) SetOnCloseAction(f func()) {
	l.mu.Lock()
	l.onClose = f
	l.mu.Unlock()
}

// addOverlayNIC creates the overlay NIC with the gateway address.
func (s *Stack) addOverlayNIC() error {
	s.ovl.nicID = s.ns.NextNICID()
	s.ovl.link = &overlayLink{mtu: uint32(s.opts.MTU), remote: &s.remote, frames: &s.framebs, ctr: &s.ovl.ctr, capt: &s.ovlCapt}
	if err := s.ns.CreateNICWithOptions(s.ovl.nicID, s.ovl.link, netstack.NICOptions{Name: "overlay"}); err != nil {
		return fmt.Errorf("create overlay NIC: %s", err)
	}
	gw := tcpip.ProtocolAddress{
		Protocol:          header.IPv4ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(s.gw4).WithPrefix(),
	}
	if err := s.ns.AddProtocolAddress(s.ovl.nicID, gw, netstack.AddressProperties{}); err != nil {
		return fmt.Errorf("add gateway address to overlay NIC: %s", err)
	}
	return nil
}
