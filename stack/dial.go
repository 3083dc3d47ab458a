package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// ErrPolicyDenied is the error of a DialTCP or DialUDP that NetworkPolicy
// denies.
var ErrPolicyDenied = errors.New("denied by NetworkPolicy")

// bindFor returns the local address a connection to dst from src uses: on
// the NIC of dst's pod if dst is attached here, with src as the source
// address if it is a valid IPv4 address (the pod NICs allow spoofing, and
// the pod's answers to an address outside the cluster come back through the
// netstack), and from the gateway otherwise; for any other dst (another
// node's pod) from the gateway on the overlay NIC, whatever src is: an
// answer to another address would not come back to this node.
func (s *Stack) bindFor(src netip.Addr, dst netip.Addr) (tcpip.FullAddress, error) {
	if !dst.Is4() {
		return tcpip.FullAddress{}, fmt.Errorf("%v is not an IPv4 address", dst)
	}
	if p := s.pods.Load().lookup(dst.As4()); p != nil {
		la := tcpip.FullAddress{NIC: p.nicID, Addr: tcpip.AddrFrom4(s.gw4)}
		if src = src.Unmap(); src.Is4() && src != dst {
			la.Addr = tcpip.AddrFrom4(src.As4())
		}
		return la, nil
	}
	if s.remote.Load().routes(dst.As4()) {
		return tcpip.FullAddress{NIC: s.ovl.nicID, Addr: tcpip.AddrFrom4(s.gw4)}, nil
	}
	return tcpip.FullAddress{}, fmt.Errorf("%v is not the address of a pod this node reaches", dst)
}

// DialTCP opens a TCP connection through the netstack to dst, a pod of this
// node or of another, with source address src (see bindFor: honoured only
// for a pod of this node; an invalid src means the gateway). NodePorts use
// it to carry outside clients into the cluster.
func (s *Stack) DialTCP(ctx context.Context, src netip.Addr, dst netip.AddrPort) (net.Conn, error) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	la, err := s.bindFor(src, dst.Addr())
	if err != nil {
		return nil, fmt.Errorf("dial tcp %v: %w", dst, err)
	}
	if !s.admitDial(protoTCP, netip.AddrPortFrom(netip.AddrFrom4(la.Addr.As4()), 0), dst) {
		return nil, fmt.Errorf("dial tcp %v: %w", dst, ErrPolicyDenied)
	}
	ra := tcpip.FullAddress{NIC: la.NIC, Addr: tcpip.AddrFrom4(dst.Addr().As4()), Port: dst.Port()}
	return s.dialTCP(ctx, la, ra, dst)
}

// TCPConn is a connection DialTCP opened: a gonet.TCPConn that can also tell
// whether it has something to read without reading it.
type TCPConn struct {
	*gonet.TCPConn
	ep tcpip.Endpoint
}

// Readable reports whether a read would not block: data, the peer's FIN or
// reset, or an error are there. On a connection idle in a pool, true means
// it cannot be used again (the Ingress controller asks before reusing one).
func (c *TCPConn) Readable() bool {
	return c.ep.Readiness(waiter.ReadableEvents)&waiter.ReadableEvents != 0
}

// dialTCP connects as gonet.DialTCPWithBind does, keeping the endpoint for
// TCPConn (and closing it when Bind fails).
func (s *Stack) dialTCP(ctx context.Context, la, ra tcpip.FullAddress, dst netip.AddrPort) (*TCPConn, error) {
	opErr := func(err string) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(dst), Err: errors.New(err)}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var wq waiter.Queue
	ep, terr := s.ns.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		return nil, opErr(terr.String())
	}
	entry, notify := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	if terr := ep.Bind(la); terr != nil {
		ep.Close()
		return nil, opErr("bind " + terr.String())
	}
	terr = ep.Connect(ra)
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ctx.Done():
			ep.Close()
			return nil, ctx.Err()
		case <-notify:
		}
		terr = ep.LastError()
	}
	if terr != nil {
		ep.Close()
		return nil, opErr(terr.String())
	}
	return &TCPConn{TCPConn: gonet.NewTCPConn(&wq, ep), ep: ep}, nil
}

// DialUDP opens a connected UDP socket through the netstack to dst, with
// source address src as for DialTCP.
func (s *Stack) DialUDP(src netip.Addr, dst netip.AddrPort) (net.Conn, error) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	la, err := s.bindFor(src, dst.Addr())
	if err != nil {
		return nil, fmt.Errorf("dial udp %v: %w", dst, err)
	}
	if !s.admitDial(protoUDP, netip.AddrPortFrom(netip.AddrFrom4(la.Addr.As4()), 0), dst) {
		return nil, fmt.Errorf("dial udp %v: %w", dst, ErrPolicyDenied)
	}
	ra := tcpip.FullAddress{NIC: la.NIC, Addr: tcpip.AddrFrom4(dst.Addr().As4()), Port: dst.Port()}
	c, err := gonet.DialUDP(s.ns, &la, &ra, ipv4.ProtocolNumber)
	if err != nil {
		return nil, fmt.Errorf("dial udp %v: %w", dst, err)
	}
	// The pod's answers must pass its egress policy: track the flow.
	if l, ok := c.LocalAddr().(*net.UDPAddr); ok && s.filter.Load() != nil {
		src := netip.AddrPortFrom(netip.AddrFrom4(la.Addr.As4()), uint16(l.Port))
		s.trackPlain(makeKey(src.Addr().As4(), dst.Addr().As4(), src.Port(), dst.Port(), protoUDP))
	}
	return c, nil
}
