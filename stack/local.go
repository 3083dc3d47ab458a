package stack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/podnet/podnet/tap"
)

// Local services: what the node answers itself at an address that belongs to
// no pod, such as the cluster DNS at the Lab's dnsIP:53. A UDP datagram from a
// local pod to such an address is handed straight from the pod's reader to
// the service's DatagramHandler, without the netstack (a DNS query costs a
// parse and an answer, not a socket); the answer comes back through
// WriteDatagram as a frame built here. TCP connections to it are accepted by
// the netstack, like every connection that ends on the node, and handed to
// the service's stream handler.

// DatagramHandler answers UDP datagrams sent to a local service.
type DatagramHandler interface {
	// ServeDatagram is called on the reader goroutine of the sending pod
	// with the datagram's payload, which the caller reuses after it
	// returns. It must not block: it answers through w, at once or later
	// from a goroutine of its own.
	ServeDatagram(src, dst netip.AddrPort, payload []byte, w DatagramWriter)
}

// DatagramWriter sends UDP datagrams to local pods (*Stack satisfies it).
type DatagramWriter interface {
	// WriteDatagram sends payload from the address from to the local pod
	// at to. It may be called concurrently and does not keep payload.
	WriteDatagram(to, from netip.AddrPort, payload []byte) error
}

var _ DatagramWriter = (*Stack)(nil)

// localService is one local service.
type localService struct {
	udp DatagramHandler
	tcp func(net.Conn)
}

// localTable is the immutable snapshot of the local services.
type localTable map[netip.AddrPort]localService

// SetLocalService makes the node answer at addr itself: UDP datagrams from
// local pods go to udp, TCP connections (from local pods and, through the
// overlay, from others) to tcp, each in a goroutine of its own that the
// Stack owns: the connection is closed when the pod is detached or the Stack
// closed. addr must be an IPv4 address outside the PodCIDR (normally in a
// Service prefix). A nil handler leaves that protocol refused; two nil
// handlers remove the service.
func (s *Stack) SetLocalService(addr netip.AddrPort, udp DatagramHandler, tcp func(net.Conn)) error {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if !addr.Addr().Is4() || s.opts.PodCIDR.Contains(addr.Addr()) {
		return fmt.Errorf("local service %v: want an IPv4 address outside the pod CIDR %v", addr, s.opts.PodCIDR)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := localTable{}
	if old := s.local.Load(); old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	if udp == nil && tcp == nil {
		delete(next, addr)
	} else {
		next[addr] = localService{udp: udp, tcp: tcp}
	}
	s.local.Store(&next)
	return nil
}

// localFor returns the local service at addr:port, if any.
func (s *Stack) localFor(addr [4]byte, port uint16) (localService, bool) {
	t := s.local.Load()
	if t == nil {
		return localService{}, false
	}
	ls, ok := (*t)[netip.AddrPortFrom(netip.AddrFrom4(addr), port)]
	return ls, ok
}

// serveLocalUDP hands frame (IPv4 from p, checked by classifyRoute) to a
// local service's datagram handler if it is a UDP datagram to one. It reports
// whether it did.
func (s *Stack) serveLocalUDP(p *pod, frame []byte, ev *FlowEvent) bool {
	if s.local.Load() == nil || binary.BigEndian.Uint16(frame[ethOff+12:]) != etherTypeIPv4 {
		return false
	}
	ip := frame[netOff:]
	ihl, ok := l4(ip)
	if !ok || ip[9] != protoUDP {
		return false
	}
	if h, _ := tap.DecodeVirtioNetHdr(frame); h.GSOType != tap.GSONone {
		return false // a UDP GSO frame to a local service: let the netstack split it
	}
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(ip[ihl+2:]))
	ls, ok := s.localFor(dst.Addr().As4(), dst.Port())
	if !ok || ls.udp == nil {
		return false
	}
	if !s.policyOut(p, nil, frame, ev) {
		return true // dropped by NetworkPolicy
	}
	total := int(binary.BigEndian.Uint16(ip[2:]))
	ulen := int(binary.BigEndian.Uint16(ip[ihl+4:]))
	if ulen < header.UDPMinimumSize || ihl+ulen > total {
		p.ctr.badFrame.Add(1)
		return true
	}
	src := netip.AddrPortFrom(p.ip, binary.BigEndian.Uint16(ip[ihl:]))
	p.ctr.localDatagrams.Add(1)
	ls.udp.ServeDatagram(src, dst, ip[ihl+header.UDPMinimumSize:ihl+ulen], s)
	return true
}

// WriteDatagram implements DatagramWriter: it builds the frame of a UDP
// datagram from from to the local pod at to (IPv4 fragments if it is larger
// than the MTU allows) and writes it to the pod.
func (s *Stack) WriteDatagram(to, from netip.AddrPort, payload []byte) error {
	toA, fromA := to.Addr().Unmap(), from.Addr().Unmap()
	if !toA.Is4() || !fromA.Is4() {
		return errors.New("write datagram: IPv4 addresses only")
	}
	p := s.pods.Load().lookup(toA.As4())
	if p == nil {
		return fmt.Errorf("write datagram to %v: no such pod here", to)
	}
	ulen := header.UDPMinimumSize + len(payload)
	if ulen > 1<<15 { // the fragments must fit the frame buffer after the datagram

		return fmt.Errorf("write datagram to %v: %d bytes is too long", to, len(payload))
	}
	bp := s.framebs.Get().(*[]byte)
	defer s.framebs.Put(bp)
	f := *bp
	// The whole datagram, UDP header first, at the place of the first
	// fragment's payload; fragments are cut from it.
	udp := f[netOff+header.IPv4MinimumSize : netOff+header.IPv4MinimumSize+ulen]
	header.UDP(udp).Encode(&header.UDPFields{SrcPort: from.Port(), DstPort: to.Port(), Length: uint16(ulen)})
	copy(udp[header.UDPMinimumSize:], payload)
	srcA, dstA := tcpip.AddrFrom4(fromA.As4()), tcpip.AddrFrom4(toA.As4())
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, srcA, dstA, uint16(ulen))
	c := ^checksum.Checksum(udp, xsum)
	if c == 0 {
		c = 0xffff
	}
	header.UDP(udp).SetChecksum(c)

	maxData := (s.opts.MTU - header.IPv4MinimumSize) &^ 7
	id := uint16(s.fragID.Add(1))
	for off := 0; off < ulen; off += maxData {
		n := min(maxData, ulen-off)
		more := off+n < ulen
		var frame []byte
		if off == 0 {
			frame = f[:netOff+header.IPv4MinimumSize+n]
		} else {
			// Later fragments: a frame of their own after the datagram.
			start := netOff + header.IPv4MinimumSize + ulen + 64
			frame = f[start : start+netOff+header.IPv4MinimumSize+n]
			copy(frame[netOff+header.IPv4MinimumSize:], udp[off:off+n])
		}
		clear(frame[:vnetLen])
		tap.VirtioNetHdr{Flags: tap.FlagDataValid}.Encode(frame)
		copy(frame[ethOff:], p.mac[:])
		copy(frame[ethOff+6:], s.gwMAC[:])
		binary.BigEndian.PutUint16(frame[ethOff+12:], etherTypeIPv4)
		ipf := header.IPv4(frame[netOff:])
		flags := uint8(0)
		if more {
			flags = header.IPv4FlagMoreFragments
		}
		ipf.Encode(&header.IPv4Fields{
			TotalLength:    uint16(header.IPv4MinimumSize + n),
			ID:             id,
			Flags:          flags,
			FragmentOffset: uint16(off),
			TTL:            64,
			Protocol:       uint8(header.UDPProtocolNumber),
			SrcAddr:        srcA,
			DstAddr:        dstA,
		})
		ipf.SetChecksum(^ipf.CalculateChecksum())
		if err := p.writeFrame(p.queueFor(frame[netOff:]), frame); err != nil {
			p.ctr.fromStackErrors.Add(1)
			return fmt.Errorf("write datagram to %v: %w", to, err)
		}
		p.ctr.fromStack.Add(1)
	}
	return nil
}
