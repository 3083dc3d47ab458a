package stack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	netstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// spliceBufLen is the size of each copy buffer of a forwarded connection.
const spliceBufLen = 64 << 10

// spliceBufs holds *[]byte of spliceBufLen.
var spliceBufs = sync.Pool{New: func() any {
	b := make([]byte, spliceBufLen)
	return &b
}}

// installForwarders makes the netstack hand connections it has no endpoint
// for to the Stack: refused for cluster destinations (returning false makes
// gVisor answer with a RST or an ICMP port unreachable), forwarded to the
// host otherwise.
func (s *Stack) installForwarders() {
	tcpFwd := tcp.NewForwarder(s.ns, 0, s.opts.MaxPendingHandshakes, s.forwardTCP)
	s.ns.SetTransportProtocolHandler(tcp.ProtocolNumber, func(id netstack.TransportEndpointID, pkt *netstack.PacketBuffer) bool {
		if id.LocalAddress.Len() != 4 {
			return false
		}
		if ls, ok := s.localFor(id.LocalAddress.As4(), id.LocalPort); ok && ls.tcp != nil {
			return tcpFwd.HandlePacket(id, pkt)
		}
		if s.refused(id.LocalAddress) {
			s.egress.refused.Add(1)
			return false
		}
		return tcpFwd.HandlePacket(id, pkt)
	})
	udpFwd := udp.NewForwarder(s.ns, s.forwardUDP)
	s.ns.SetTransportProtocolHandler(udp.ProtocolNumber, func(id netstack.TransportEndpointID, pkt *netstack.PacketBuffer) bool {
		if s.refused(id.LocalAddress) {
			s.egress.refused.Add(1)
			return false
		}
		return udpFwd.HandlePacket(id, pkt)
	})
}

// refused reports whether connections to dst must not leave the node: dst is
// in the pod CIDR or a cluster prefix, or is the gateway and there is no
// HostLoopback to map it to.
func (s *Stack) refused(dst tcpip.Address) bool {
	if dst.Len() != 4 {
		return true
	}
	a := netip.AddrFrom4(dst.As4())
	if a == s.opts.Gateway {
		return !s.opts.HostLoopback.IsValid()
	}
	for _, p := range s.refuse {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// hostAddress is where a connection to dst:port goes on the host.
func (s *Stack) hostAddress(dst tcpip.Address, port uint16) string {
	a := netip.AddrFrom4(dst.As4())
	if a == s.opts.Gateway {
		a = s.opts.HostLoopback
	}
	return net.JoinHostPort(a.String(), strconv.Itoa(int(port)))
}

// startEgress registers a goroutine of a forwarded connection with Close. It
// reports false once Close has begun; the caller must then give up.
func (s *Stack) startEgress() bool {
	s.egressMu.Lock()
	defer s.egressMu.Unlock()
	if s.egressDone {
		return false
	}
	s.egressWG.Add(1)
	return true
}

// forwardTCP handles a TCP connection request from a pod, in a goroutine
// gVisor starts for it: dial the host first, so that a refused or
// unreachable destination resets the pod's connection, then complete the
// handshake and splice.
func (s *Stack) forwardTCP(r *tcp.ForwarderRequest) {
	if !s.startEgress() {
		r.Complete(true)
		return
	}
	defer s.egressWG.Done()
	select {
	case s.hostConns <- struct{}{}:
	default:
		s.egress.limitDrops.Add(1)
		r.Complete(true)
		return
	}
	defer func() { <-s.hostConns }()

	id := r.ID()
	if ls, ok := s.localFor(id.LocalAddress.As4(), id.LocalPort); ok && ls.tcp != nil {
		s.serveLocalTCP(r, ls.tcp)
		return
	}
	p := s.pods.Load().lookup(id.RemoteAddress.As4())
	if p == nil {
		// Detached meanwhile.
		r.Complete(true)
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, s.opts.HostDialTimeout)
	host, err := s.opts.HostDialer.DialContext(ctx, "tcp", s.hostAddress(id.LocalAddress, id.LocalPort))
	cancel()
	if err != nil {
		s.egress.dialErrors.Add(1)
		r.Complete(true)
		return
	}
	// Active from the host connection on, before the pod's handshake completes: a pod that
	// sees its connection established finds it counted.
	s.egress.tcpActive.Add(1)
	defer s.egress.tcpActive.Add(-1)
	var wq waiter.Queue
	ep, tcpErr := r.CreateEndpoint(&wq)
	r.Complete(false)
	if tcpErr != nil {
		// The pod gave up, or the handshake failed.
		host.Close()
		return
	}
	s.egress.tcpConns.Add(1)
	s.spliceTCP(p.ctx, gonet.NewTCPConn(&wq, ep), host)
}

// serveLocalTCP completes the handshake of a connection to a local service
// and runs its handler; the connection is closed when the handler returns,
// the client's pod is detached (for a local pod) or the Stack closes.
func (s *Stack) serveLocalTCP(r *tcp.ForwarderRequest, serve func(net.Conn)) {
	id := r.ID()
	ctx := s.ctx
	if p := s.pods.Load().lookup(id.RemoteAddress.As4()); p != nil {
		ctx = p.ctx
	}
	var wq waiter.Queue
	ep, tcpErr := r.CreateEndpoint(&wq)
	r.Complete(false)
	if tcpErr != nil {
		return
	}
	c := gonet.NewTCPConn(&wq, ep)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	serve(c)
}

// spliceTCP copies between the pod's connection and the host's until both
// directions end. An end of stream is passed on as a half-close; an error in
// either direction, or the end of ctx (the pod's), closes both connections.
func (s *Stack) spliceTCP(ctx context.Context, pod *gonet.TCPConn, host net.Conn) {
	var once sync.Once
	abort := func() {
		once.Do(func() {
			pod.Close()
			host.Close()
		})
	}
	stop := context.AfterFunc(ctx, abort)
	defer stop()
	defer abort()

	done := make(chan struct{})
	s.egressWG.Add(1) // the caller holds a count, so Close is still waiting
	go func() {
		defer s.egressWG.Done()
		defer close(done)
		copyHalf(host, pod, abort)
	}()
	copyHalf(pod, host, abort)
	<-done
}

// copyHalf copies src to dst until src ends, then half-closes dst. On an
// error it calls abort.
func copyHalf(dst, src net.Conn, abort func()) {
	bp := spliceBufs.Get().(*[]byte)
	defer spliceBufs.Put(bp)
	buf := *bp
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				abort()
				return
			}
		}
		if errors.Is(err, io.EOF) {
			closeWrite(dst)
			return
		}
		if err != nil {
			abort()
			return
		}
	}
}

// closeWrite half-closes c where it can, and closes it where it cannot.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// forwardUDP handles the first datagram of a new UDP flow from a pod. It
// runs on the pod's reader goroutine, so it only creates the netstack
// endpoint and leaves the host side to a goroutine.
func (s *Stack) forwardUDP(r *udp.ForwarderRequest) {
	if s.egress.udpActive.Load() >= int64(s.opts.MaxUDPFlows) {
		s.egress.limitDrops.Add(1)
		return
	}
	id := r.ID()
	p := s.pods.Load().lookup(id.RemoteAddress.As4())
	if p == nil || !s.startEgress() {
		return
	}
	var wq waiter.Queue
	ep, err := r.CreateEndpoint(&wq)
	if err != nil {
		s.egressWG.Done()
		return
	}
	s.egress.udpActive.Add(1)
	pod := gonet.NewUDPConn(&wq, ep)
	target := s.hostAddress(id.LocalAddress, id.LocalPort)
	go func() {
		defer s.egressWG.Done()
		defer s.egress.udpActive.Add(-1)
		s.relayUDP(p.ctx, pod, target)
	}()
}

// relayUDP dials target and relays datagrams between it and the pod's flow
// until the flow has been idle for UDPIdleTimeout, either side fails, or ctx
// (the pod's) ends.
func (s *Stack) relayUDP(podCtx context.Context, pod *gonet.UDPConn, target string) {
	ctx, cancel := context.WithTimeout(podCtx, s.opts.HostDialTimeout)
	host, err := s.opts.HostDialer.DialContext(ctx, "udp", target)
	cancel()
	if err != nil {
		s.egress.dialErrors.Add(1)
		pod.Close()
		return
	}
	s.egress.udpFlows.Add(1)

	var once sync.Once
	abort := func() {
		once.Do(func() {
			pod.Close()
			host.Close()
		})
	}
	stop := context.AfterFunc(podCtx, abort)
	defer stop()
	defer abort()

	var last atomic.Int64 // time of the last datagram, in Unix nanoseconds
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	s.egressWG.Add(1) // the caller holds a count, so Close is still waiting
	go func() {
		defer s.egressWG.Done()
		defer close(done)
		s.relayDatagrams(host, pod, &last)
		abort()
	}()
	s.relayDatagrams(pod, host, &last)
	abort()
	<-done
}

// relayDatagrams copies datagrams from src to dst until src fails, dst
// fails, or no datagram has passed in either direction (as recorded in last)
// for UDPIdleTimeout.
func (s *Stack) relayDatagrams(dst, src net.Conn, last *atomic.Int64) {
	bp := spliceBufs.Get().(*[]byte)
	defer spliceBufs.Put(bp)
	buf := *bp
	idle := s.opts.UDPIdleTimeout
	src.SetReadDeadline(time.Unix(0, last.Load()).Add(idle))
	for {
		n, err := src.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				deadline := time.Unix(0, last.Load()).Add(idle)
				if time.Now().Before(deadline) {
					src.SetReadDeadline(deadline) // the other direction kept the flow alive
					continue
				}
			}
			return
		}
		last.Store(time.Now().UnixNano())
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}
