package stack

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	netstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/podnet/podnet/tap"
)

// gsoMaxSize bounds the TCP super-segments gVisor hands to a pod link: its
// TCP payload stays below gsoMaxSize minus the largest TCP header, so the IPv4
// packet fits the 16-bit total length with a maximal IP header to spare.
const gsoMaxSize = 1<<16 - 1 - header.IPv4MaximumHeaderSize

// podLink is the netstack's link endpoint for one pod: IP only (no ARP in
// gVisor: the pod's MAC is known from its address), joined to the pod's Port.
//
// Inbound, the pod's reader goroutines (one per queue) call deliver with
// frames the fast path did not take, possibly at the same time. Outbound,
// WritePackets adds the Ethernet header (GatewayMAC to PodMAC) and a
// virtio_net_hdr describing gVisor's host GSO, and writes the frame to port,
// the pod's first queue.
type podLink struct {
	port   Port
	podMAC [6]byte
	gwMAC  [6]byte
	mtu    atomic.Uint32
	frames *sync.Pool  // of *[]byte, MaxFrameLen long, shared by all links
	ctr    *counters   // the pod's counters
	capt   *captureSet // the pod's captures

	mu         sync.RWMutex
	dispatcher netstack.NetworkDispatcher // guarded by mu
	onClose    func()                     // guarded by mu

	acks delayedAcks

	// replyNAT, if set, translates back what the netstack sends the pod on a Service flow whose
	// endpoint is no pod (the netstack spliced it to the host): the pod must see the Service
	// address as the source. It reports whether it translated.
	replyNAT func(ip []byte, partial bool) bool
}

var (
	_ netstack.LinkEndpoint = (*podLink)(nil)
	_ netstack.GSOEndpoint  = (*podLink)(nil)
)

// deliver hands frame, read from the pod, to the netstack and returns the
// verdict to count: verdictStack if the frame was delivered, verdictBadFrame
// or verdictUnsupported if not. scratch is the calling reader's buffer for
// cutting UDP GSO frames into datagrams, grown as needed.
func (l *podLink) deliver(frame []byte, scratch *[]byte) verdict {
	if len(frame) < netOff {
		return verdictBadFrame
	}
	l.mu.RLock()
	d := l.dispatcher
	l.mu.RUnlock()
	if d == nil {
		return verdictUnsupported
	}
	var proto tcpip.NetworkProtocolNumber
	switch binary.BigEndian.Uint16(frame[ethOff+12:]) {
	case etherTypeIPv4:
		proto = header.IPv4ProtocolNumber
	case etherTypeIPv6:
		proto = header.IPv6ProtocolNumber
	default:
		return verdictUnsupported
	}
	h, _ := tap.DecodeVirtioNetHdr(frame)
	pkt := frame[netOff:]
	switch h.GSOType &^ tap.GSOECN {
	case tap.GSONone, tap.GSOTCPv4, tap.GSOTCPv6:
		// gVisor's TCP accepts a super-segment whole; its checksum is
		// partial (NEEDS_CSUM), which CapabilityRXChecksumOffload covers.
		deliverPacket(d, proto, pkt)
		return verdictStack
	case tap.GSOUDPL4:
		if proto != header.IPv4ProtocolNumber {
			return verdictUnsupported
		}
		var ok bool
		*scratch, ok = splitUDP4(*scratch, pkt, int(h.GSOSize), func(dgram []byte) {
			deliverPacket(d, proto, dgram)
		})
		if !ok {
			return verdictBadFrame
		}
		return verdictStack
	default:
		return verdictUnsupported
	}
}

// deliverPacket copies the network-layer packet b into a PacketBuffer and
// delivers it.
func deliverPacket(d netstack.NetworkDispatcher, proto tcpip.NetworkProtocolNumber, b []byte) {
	pkt := netstack.NewPacketBuffer(netstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	d.DeliverNetworkPacket(proto, pkt)
	pkt.DecRef()
}

// splitUDP4 cuts the UDP/IPv4 GSO packet ip (USO: one IP and UDP header
// followed by datagrams of segSize payload bytes each, the last one possibly
// shorter) into datagrams with their own headers and checksums, and calls emit
// with each; emit must not retain its argument. scratch is a reusable buffer,
// returned grown as needed. ok is false if ip is malformed.
func splitUDP4(scratch, ip []byte, segSize int, emit func([]byte)) (_ []byte, ok bool) {
	if len(ip) < header.IPv4MinimumSize || ip[0]>>4 != 4 || segSize <= 0 {
		return scratch, false
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ihl < header.IPv4MinimumSize || total > len(ip) || total < ihl+header.UDPMinimumSize ||
		ip[9] != uint8(header.UDPProtocolNumber) {
		return scratch, false
	}
	hdrLen := ihl + header.UDPMinimumSize
	payload := ip[hdrLen:total]
	if need := hdrLen + min(segSize, len(payload)); cap(scratch) < need {
		scratch = make([]byte, need)
	}
	id := binary.BigEndian.Uint16(ip[4:])
	src, dst := tcpip.AddrFrom4([4]byte(ip[12:16])), tcpip.AddrFrom4([4]byte(ip[16:20]))
	for i := 0; len(payload) > 0 || i == 0; i++ {
		n := min(segSize, len(payload))
		d := scratch[:hdrLen+n]
		copy(d, ip[:hdrLen])
		copy(d[hdrLen:], payload[:n])
		payload = payload[n:]

		h := header.IPv4(d)
		h.SetTotalLength(uint16(len(d)))
		h.SetID(id + uint16(i))
		h.SetChecksum(0)
		h.SetChecksum(^h.CalculateChecksum())
		u := header.UDP(d[ihl:])
		u.SetLength(uint16(header.UDPMinimumSize + n))
		u.SetChecksum(0)
		xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, uint16(len(u)))
		if c := ^checksum.Checksum(u, xsum); c != 0 {
			u.SetChecksum(c)
		} else {
			u.SetChecksum(0xffff)
		}
		emit(d)
	}
	return scratch, true
}

// MTU implements netstack.LinkEndpoint.
func (l *podLink) MTU() uint32 { return l.mtu.Load() }

// SetMTU implements netstack.LinkEndpoint.
func (l *podLink) SetMTU(mtu uint32) { l.mtu.Store(mtu) }

// MaxHeaderLength implements netstack.LinkEndpoint: the Ethernet and virtio
// headers are written into a separate buffer, not pushed onto packets.
func (*podLink) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements netstack.LinkEndpoint.
func (l *podLink) LinkAddress() tcpip.LinkAddress { return tcpip.LinkAddress(l.gwMAC[:]) }

// SetLinkAddress implements netstack.LinkEndpoint; the address is fixed.
func (*podLink) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements netstack.LinkEndpoint. Frames from a pod were built
// in memory by its kernel and cross no wire: their checksums are either
// complete or partial with NEEDS_CSUM, never corrupt, so the netstack need
// not verify them.
func (*podLink) Capabilities() netstack.LinkEndpointCapabilities {
	return netstack.CapabilityRXChecksumOffload
}

// GSOMaxSize implements netstack.GSOEndpoint.
func (*podLink) GSOMaxSize() uint32 { return gsoMaxSize }

// SupportedGSO implements netstack.GSOEndpoint: the pod's kernel segments
// and checksums what the virtio_net_hdr describes.
func (*podLink) SupportedGSO() netstack.SupportedGSO { return netstack.HostGSOSupported }

// Attach implements netstack.LinkEndpoint.
func (l *podLink) Attach(d netstack.NetworkDispatcher) {
	l.mu.Lock()
	l.dispatcher = d
	l.mu.Unlock()
}

// IsAttached implements netstack.LinkEndpoint.
func (l *podLink) IsAttached() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.dispatcher != nil
}

// Wait implements netstack.LinkEndpoint; the link starts no goroutines (the
// pod's reader belongs to the Stack).
func (*podLink) Wait() {}

// ARPHardwareType implements netstack.LinkEndpoint.
func (*podLink) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements netstack.LinkEndpoint; see MaxHeaderLength.
func (*podLink) AddHeader(*netstack.PacketBuffer) {}

// ParseHeader implements netstack.LinkEndpoint; deliver strips the
// Ethernet header.
func (*podLink) ParseHeader(*netstack.PacketBuffer) bool { return true }

// Close implements netstack.LinkEndpoint. The port is closed by the Stack.
func (l *podLink) Close() {
	l.acks.stop()
	l.mu.Lock()
	f := l.onClose
	l.onClose = nil
	l.mu.Unlock()
	if f != nil {
		f()
	}
}

// SetOnCloseAction implements netstack.LinkEndpoint.
func (l *podLink) SetOnCloseAction(f func()) {
	l.mu.Lock()
	l.onClose = f
	l.mu.Unlock()
}

// WritePackets implements netstack.LinkEndpoint: one frame per packet. It may
// be called concurrently.
func (l *podLink) WritePackets(pkts netstack.PacketBufferList) (int, tcpip.Error) {
	bp := l.frames.Get().(*[]byte)
	defer l.frames.Put(bp)
	b := *bp
	n := 0
	for _, pkt := range pkts.AsSlice() {
		size := l.encodeFrame(b, pkt)
		if size == 0 {
			l.ctr.fromStackErrors.Add(1)
			continue
		}
		if l.replyNAT != nil && pkt.NetworkProtocolNumber == header.IPv4ProtocolNumber {
			l.replyNAT(b[netOff:size], b[0]&tap.FlagNeedsCsum != 0)
		}
		if l.acks.hold(l, b[:size]) {
			n++ // sent later, or carried by the next segment of its flow
			continue
		}
		if err := l.writeFrame(b[:size]); err != nil {
			l.ctr.fromStackErrors.Add(1)
			continue
		}
		l.ctr.fromStack.Add(1)
		n++
	}
	if n == 0 && pkts.Len() > 0 {
		return 0, &tcpip.ErrClosedForSend{}
	}
	return n, nil
}

// writeFrame writes f to the pod's first queue, after its captures saw it.
func (l *podLink) writeFrame(f []byte) error {
	if l.capt != nil {
		if fns := l.capt.active(); fns != nil {
			captureFrame(fns, f, false)
		}
	}
	return l.port.WriteFrame(f)
}

// encodeFrame lays pkt out in b as a pod receives it and returns the frame
// length, or 0 if it does not fit.
func (l *podLink) encodeFrame(b []byte, pkt *netstack.PacketBuffer) int {
	size := netOff + pkt.Size()
	if size > len(b) {
		return 0
	}
	vnetHdrFor(pkt).Encode(b)
	copy(b[ethOff:], l.podMAC[:])
	copy(b[ethOff+6:], l.gwMAC[:])
	binary.BigEndian.PutUint16(b[ethOff+12:], uint16(pkt.NetworkProtocolNumber))
	n := netOff
	views, off := pkt.AsViewList()
	for v := views.Front(); v != nil; v = v.Next() {
		s := v.AsSlice()
		if off >= len(s) {
			off -= len(s)
			continue
		}
		n += copy(b[n:], s[off:])
		off = 0
	}
	return n
}

// vnetHdrFor translates the netstack's GSO request for pkt into a
// virtio_net_hdr. Packets without GSO options have complete checksums and a
// zero header.
func vnetHdrFor(pkt *netstack.PacketBuffer) tap.VirtioNetHdr {
	gso := pkt.GSOOptions
	if gso.Type != netstack.GSOTCPv4 && gso.Type != netstack.GSOTCPv6 {
		return tap.VirtioNetHdr{}
	}
	var h tap.VirtioNetHdr
	l3 := len(pkt.NetworkHeader().Slice())
	if gso.NeedsCsum {
		h.Flags = tap.FlagNeedsCsum
		h.CsumStart = uint16(ethLen + l3)
		h.CsumOffset = gso.CsumOffset
	}
	if gso.MSS > 0 && pkt.Data().Size() > int(gso.MSS) {
		if gso.Type == netstack.GSOTCPv4 {
			h.GSOType = tap.GSOTCPv4
		} else {
			h.GSOType = tap.GSOTCPv6
		}
		h.GSOSize = gso.MSS
		h.HdrLen = uint16(ethLen + l3 + len(pkt.TransportHeader().Slice()))
	}
	return h
}
