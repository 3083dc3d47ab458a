// Package stacktest provides fakes of stack.Port for tests that need no
// privileges: FramePort, a port the test drives frame by frame, and Pod, an
// in-process pod (a small gVisor stack with an Ethernet NIC) joined to a
// ChannelPort.
//
// The fakes model a pod's kernel behind a vnet-header TAP: frames they hand
// to the Stack carry a virtio_net_hdr (zero, or describing TCP GSO when a Pod
// is created with GSO), and frames the Stack writes to them may carry
// NEEDS_CSUM and GSO, which a ChannelPort completes (it finishes the partial
// checksum and delivers a GSO super-frame whole, as the Linux stack accepts
// a GSO packet received locally). Nothing here is for production use.
package stacktest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	netstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/podnet/podnet/stack"
	"github.com/podnet/podnet/tap"
)

var (
	_ stack.Port = (*ChannelPort)(nil)
	_ stack.Port = (*FramePort)(nil)
)

// FramePort is a stack.Port driven by a test: Send queues a frame for the
// Stack to read, Next returns the frames the Stack wrote.
type FramePort struct {
	in      chan []byte // frames for ReadFrame
	out     chan []byte // frames from WriteFrame
	closed  chan struct{}
	closeMu sync.Once
}

// NewFramePort returns a FramePort that holds up to queue frames in each
// direction; WriteFrame fails when the outbound queue is full.
func NewFramePort(queue int) *FramePort {
	return &FramePort{
		in:     make(chan []byte, queue),
		out:    make(chan []byte, queue),
		closed: make(chan struct{}),
	}
}

// Send queues a copy of frame (virtio_net_hdr and Ethernet frame) for the
// Stack to read. It blocks while the queue is full.
func (p *FramePort) Send(ctx context.Context, frame []byte) error {
	select {
	case p.in <- bytes.Clone(frame):
		return nil
	case <-p.closed:
		return net.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Next returns the next frame the Stack wrote to the port.
func (p *FramePort) Next(ctx context.Context) ([]byte, error) {
	select {
	case f := <-p.out:
		return f, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ReadFrame implements stack.Port.
func (p *FramePort) ReadFrame(b []byte) (int, error) {
	select {
	case f := <-p.in:
		return copy(b, f), nil
	case <-p.closed:
		return 0, net.ErrClosed
	}
}

// WriteFrame implements stack.Port.
func (p *FramePort) WriteFrame(b []byte) error {
	select {
	case <-p.closed:
		return net.ErrClosed
	default:
	}
	select {
	case p.out <- bytes.Clone(b):
		return nil
	default:
		return errors.New("stacktest: frame port queue full")
	}
}

// Close implements stack.Port.
func (p *FramePort) Close() error {
	p.closeMu.Do(func() { close(p.closed) })
	return nil
}

// ChannelPort joins a gVisor channel endpoint (the inside of a pod: the
// endpoint of its NIC, usually wrapped by ethernet.New) to a stack.Port.
// Frames the pod's stack sends become frames for ReadFrame, with a
// virtio_net_hdr describing the packet's GSO options; frames written with
// WriteFrame are injected into the pod after their partial checksum, if any,
// is completed.
type ChannelPort struct {
	ep     *channel.Endpoint
	ctx    context.Context
	cancel context.CancelFunc
}

// NewChannelPort returns a port for ep. ep's outbound queue is read only by
// ReadFrame.
func NewChannelPort(ep *channel.Endpoint) *ChannelPort {
	ctx, cancel := context.WithCancel(context.Background())
	return &ChannelPort{ep: ep, ctx: ctx, cancel: cancel}
}

// ReadFrame implements stack.Port.
func (p *ChannelPort) ReadFrame(b []byte) (int, error) {
	pkt := p.ep.ReadContext(p.ctx)
	if pkt == nil {
		return 0, net.ErrClosed
	}
	defer pkt.DecRef()
	hdr := vnetHdrFor(pkt)
	hdr.Encode(b)
	n := tap.VirtioNetHdrLen
	for _, s := range pkt.AsSlices() {
		n += copy(b[n:], s)
	}
	return n, nil
}

// vnetHdrFor describes pkt, as the pod's stack built it, the way a Linux
// TAP does for a packet of its kernel.
func vnetHdrFor(pkt *netstack.PacketBuffer) tap.VirtioNetHdr {
	gso := pkt.GSOOptions
	if gso.Type != netstack.GSOTCPv4 && gso.Type != netstack.GSOTCPv6 {
		return tap.VirtioNetHdr{}
	}
	link := len(pkt.LinkHeader().Slice())
	l3 := len(pkt.NetworkHeader().Slice())
	h := tap.VirtioNetHdr{}
	if gso.NeedsCsum {
		h.Flags = tap.FlagNeedsCsum
		h.CsumStart = uint16(link + l3)
		h.CsumOffset = gso.CsumOffset
	}
	if gso.MSS > 0 && pkt.Data().Size() > int(gso.MSS) {
		h.GSOType = tap.GSOTCPv4
		if gso.Type == netstack.GSOTCPv6 {
			h.GSOType = tap.GSOTCPv6
		}
		h.GSOSize = gso.MSS
		h.HdrLen = uint16(link + l3 + len(pkt.TransportHeader().Slice()))
	}
	return h
}

// WriteFrame implements stack.Port.
func (p *ChannelPort) WriteFrame(b []byte) error {
	if p.ctx.Err() != nil {
		return net.ErrClosed
	}
	h, err := tap.DecodeVirtioNetHdr(b)
	if err != nil {
		return err
	}
	frame := bytes.Clone(b[tap.VirtioNetHdrLen:])
	if err := CompleteChecksum(h, frame); err != nil {
		return err
	}
	pkt := netstack.NewPacketBuffer(netstack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	defer pkt.DecRef()
	p.ep.InjectInbound(0, pkt) // the Ethernet endpoint reads the EtherType
	return nil
}

// Close implements stack.Port. It does not close the endpoint, which
// belongs to the pod's stack.
func (p *ChannelPort) Close() error {
	p.cancel()
	return nil
}

// CompleteChecksum finishes the partial checksum of frame (an Ethernet frame
// without the virtio_net_hdr) if h has NEEDS_CSUM, as a receiving kernel or
// NIC would.
func CompleteChecksum(h tap.VirtioNetHdr, frame []byte) error {
	if h.Flags&tap.FlagNeedsCsum == 0 {
		return nil
	}
	start, off := int(h.CsumStart), int(h.CsumStart)+int(h.CsumOffset)
	if start >= len(frame) || off+2 > len(frame) {
		return fmt.Errorf("stacktest: csum_start %d + csum_offset %d outside a %d-byte frame", h.CsumStart, h.CsumOffset, len(frame))
	}
	// The checksum field holds the pseudo-header sum; summing over it
	// completes the checksum.
	binary.BigEndian.PutUint16(frame[off:], ^checksum.Checksum(frame[start:], 0))
	return nil
}

// PodOptions configure a Pod.
type PodOptions struct {
	// IP is the pod's address; its eth0 gets IP/32 and MAC stack.PodMAC(IP).
	IP netip.Addr
	// Gateway is the next hop of the pod's default route, reachable on
	// link (it resolves its MAC with ARP).
	Gateway netip.Addr
	// MTU of eth0; 0 means 1500.
	MTU int
	// GSO makes the pod's TCP hand TCP segments of up to 32 KiB with a
	// partial checksum to the port, like a Linux pod with TSO on.
	GSO bool
}

// Pod is an in-process pod: a gVisor stack with one Ethernet NIC whose
// channel endpoint is joined to a ChannelPort. Attach Port() to the Stack
// under test.
type Pod struct {
	IP    netip.Addr
	Stack *netstack.Stack
	port  *ChannelPort
}

// NewPod creates a pod.
func NewPod(opts PodOptions) (*Pod, error) {
	if !opts.IP.Is4() || !opts.Gateway.Is4() {
		return nil, fmt.Errorf("stacktest: new pod %v: want IPv4 IP and Gateway", opts.IP)
	}
	mtu := opts.MTU
	if mtu == 0 {
		mtu = 1500
	}
	s := netstack.New(netstack.Options{
		NetworkProtocols:   []netstack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []netstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	sack := tcpip.TCPSACKEnabled(true)
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	ch := channel.New(1024, uint32(mtu), tcpip.LinkAddress(stack.PodMAC(opts.IP)))
	if opts.GSO {
		ch.SupportedGSOKind = netstack.HostGSOSupported
	}
	fail := func(what string, err tcpip.Error) (*Pod, error) {
		s.Destroy()
		return nil, fmt.Errorf("stacktest: new pod %v: %s: %s", opts.IP, what, err)
	}
	if err := s.CreateNIC(1, ethernet.New(ch)); err != nil {
		return fail("create NIC", err)
	}
	addr := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddrFrom4(opts.IP.As4()).WithPrefix()}
	if err := s.AddProtocolAddress(1, addr, netstack.AddressProperties{}); err != nil {
		return fail("add address", err)
	}
	gw := tcpip.AddrFrom4(opts.Gateway.As4())
	s.SetRouteTable([]tcpip.Route{
		{Destination: gw.WithPrefix().Subnet(), NIC: 1},
		{Destination: header.IPv4EmptySubnet, Gateway: gw, NIC: 1},
	})
	return &Pod{IP: opts.IP, Stack: s, port: NewChannelPort(ch)}, nil
}

// Port returns the pod's end of its link, to attach to the Stack. The Stack
// closes it.
func (p *Pod) Port() *ChannelPort { return p.port }

// Close destroys the pod's stack. Close the Port (or detach it) first.
func (p *Pod) Close() {
	p.port.Close()
	p.Stack.Destroy()
}

func fullAddr(a netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{Addr: tcpip.AddrFrom4(a.Addr().As4()), Port: a.Port()}
}

// DialTCP connects from the pod to dst.
func (p *Pod) DialTCP(ctx context.Context, dst netip.AddrPort) (*gonet.TCPConn, error) {
	return gonet.DialContextTCP(ctx, p.Stack, fullAddr(dst), ipv4.ProtocolNumber)
}

// ListenTCP listens on the pod's address and port.
func (p *Pod) ListenTCP(port uint16) (*gonet.TCPListener, error) {
	return gonet.ListenTCP(p.Stack, fullAddr(netip.AddrPortFrom(p.IP, port)), ipv4.ProtocolNumber)
}

// Greet listens on the pod's port and answers every connection with greeting (nil: nothing),
// then closes it, until the returned listener is closed.
func (p *Pod) Greet(port uint16, greeting []byte) (*gonet.TCPListener, error) {
	ln, err := p.ListenTCP(port)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if len(greeting) > 0 {
				c.Write(greeting)
			}
			c.Close()
		}
	}()
	return ln, nil
}

// DialUDP opens a UDP socket on the pod connected to dst.
func (p *Pod) DialUDP(dst netip.AddrPort) (*gonet.UDPConn, error) {
	raddr := fullAddr(dst)
	return gonet.DialUDP(p.Stack, nil, &raddr, ipv4.ProtocolNumber)
}

// ListenUDP opens a UDP socket bound to the pod's address and port.
func (p *Pod) ListenUDP(port uint16) (*gonet.UDPConn, error) {
	laddr := fullAddr(netip.AddrPortFrom(p.IP, port))
	return gonet.DialUDP(p.Stack, &laddr, nil, ipv4.ProtocolNumber)
}

// Ping sends one ICMP echo request with sequence number seq to dst and waits
// for the reply.
func (p *Pod) Ping(ctx context.Context, dst netip.Addr, seq uint16) error {
	var wq waiter.Queue
	ep, err := p.Stack.NewEndpoint(icmp.ProtocolNumber4, ipv4.ProtocolNumber, &wq)
	if err != nil {
		return fmt.Errorf("ping %v: %s", dst, err)
	}
	defer ep.Close()
	entry, readable := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)

	req := make([]byte, header.ICMPv4MinimumSize+8)
	icmpReq := header.ICMPv4(req)
	icmpReq.SetType(header.ICMPv4Echo)
	icmpReq.SetSequence(seq)
	copy(req[header.ICMPv4MinimumSize:], "podnet!!")
	to := tcpip.FullAddress{Addr: tcpip.AddrFrom4(dst.As4())}
	if _, err := ep.Write(bytes.NewReader(req), tcpip.WriteOptions{To: &to}); err != nil {
		return fmt.Errorf("ping %v: %s", dst, err)
	}
	for {
		var b bytes.Buffer
		_, err := ep.Read(&b, tcpip.ReadOptions{})
		if _, ok := err.(*tcpip.ErrWouldBlock); ok {
			select {
			case <-readable:
				continue
			case <-ctx.Done():
				return fmt.Errorf("ping %v: %w", dst, ctx.Err())
			}
		}
		if err != nil {
			return fmt.Errorf("ping %v: %s", dst, err)
		}
		reply := header.ICMPv4(b.Bytes())
		if len(reply) >= header.ICMPv4MinimumSize && reply.Type() == header.ICMPv4EchoReply && reply.Sequence() == seq {
			return nil
		}
	}
}

var _ stack.OverlaySender = (*Underlay)(nil)

// Underlay joins Stacks as the encrypted overlay does, without encryption:
// SendPackets hands copies of the packets to the Deliver function of the node
// whose prefix contains their destination, synchronously. It records the
// largest packet it carried.
type Underlay struct {
	mu    sync.Mutex
	nodes []underlayNode // guarded by mu

	// MaxPacket is the largest packet sent; Dropped counts packets to no
	// node.
	MaxPacket atomic.Int64
	Dropped   atomic.Uint64
}

type underlayNode struct {
	prefix  netip.Prefix
	deliver func([][]byte)
}

// Add makes deliver (normally a Stack's DeliverFromOverlay) receive the
// packets to prefix.
func (u *Underlay) Add(prefix netip.Prefix, deliver func([][]byte)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.nodes = append(u.nodes, underlayNode{prefix, deliver})
}

// SendPackets implements stack.OverlaySender.
func (u *Underlay) SendPackets(pkts [][]byte) error {
	u.mu.Lock()
	nodes := u.nodes
	u.mu.Unlock()
	for _, p := range pkts {
		if n := int64(len(p)); n > u.MaxPacket.Load() {
			u.MaxPacket.Store(n) // racy maximum; good enough for tests
		}
		if len(p) < 20 {
			u.Dropped.Add(1)
			continue
		}
		dst := netip.AddrFrom4([4]byte(p[16:20]))
		delivered := false
		for _, n := range nodes {
			if n.prefix.Contains(dst) {
				n.deliver([][]byte{bytes.Clone(p)})
				delivered = true
				break
			}
		}
		if !delivered {
			u.Dropped.Add(1)
		}
	}
	return nil
}
