package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Dialer opens connections into the cluster through the node's data path
// (the node's stack satisfies it).
type Dialer interface {
	// DialTCP connects to dst (a pod) with source address src; an invalid
	// src means the node's own address in the pod network (its gateway).
	// It returns once the connection is established, or with an error when
	// the backend refuses or ctx ends first. The returned connection should
	// implement CloseWrite() error, or half-closes cannot be carried to it.
	DialTCP(ctx context.Context, src netip.Addr, dst netip.AddrPort) (net.Conn, error)
	// DialUDP opens a connected UDP socket to dst, source as DialTCP. Each
	// Write sends one datagram, each Read returns one; Read must honour
	// SetReadDeadline.
	DialUDP(src netip.Addr, dst netip.AddrPort) (net.Conn, error)
}

// Defaults of NodePortOptions.
const (
	DefaultMaxUDPFlows    = 1024             // flows over all UDP ports; each holds a 64 KiB buffer
	DefaultUDPIdleTimeout = 30 * time.Second // Linux's nf_conntrack_udp_timeout, which kube-proxy leaves as is
	DefaultDialTimeout    = 10 * time.Second
	DefaultMaxConns       = 16384 // spliced TCP connections
)

// NodePortOptions configure NodePorts.
type NodePortOptions struct {
	// Address is the node's address: NodePorts, load-balancer ports and
	// health-check ports are served on host sockets bound to it (such as
	// 127.0.5.2). Required.
	Address netip.Addr
	// Proxy gives each new flow its backend (PickExternal). Required.
	Proxy *Proxy
	// Dialer opens the connections to the backends. Required.
	Dialer Dialer
	// Logger gets listener changes and failures. If nil, nothing is logged.
	Logger *slog.Logger
	// Listen opens the host sockets. If nil, a zero net.ListenConfig.
	Listen *net.ListenConfig
	// MaxUDPFlows bounds the UDP flows (client addresses) of all ports
	// together; a datagram that would start one more is dropped. If zero,
	// DefaultMaxUDPFlows.
	MaxUDPFlows int
	// UDPIdleTimeout ends a UDP flow that saw no datagram either way for
	// that long. If zero, DefaultUDPIdleTimeout.
	UDPIdleTimeout time.Duration
	// DialTimeout bounds DialTCP. If zero, DefaultDialTimeout.
	DialTimeout time.Duration
	// MaxConns bounds the spliced TCP connections; a connection accepted
	// beyond it is reset. If zero, DefaultMaxConns.
	MaxConns int
}

// NodePortStats are counters of a NodePorts since it was made.
type NodePortStats struct {
	TCPAccepted   uint64 // connections accepted
	TCPRefused    uint64 // reset at once: no Service, no endpoint, denied, or over MaxConns
	TCPDialFailed uint64 // reset because DialTCP failed
	TCPActive     int64  // spliced connections now
	UDPFlows      int64  // UDP flows now
	UDPDropped    uint64 // datagrams dropped: no Service, no endpoint, denied, over MaxUDPFlows, dial failed
}

// NodePorts serves a node's NodePorts, load-balancer ports and health-check
// ports on host sockets (see the package doc). Its methods are safe for
// concurrent use.
type NodePorts struct {
	addr        netip.Addr
	proxy       *Proxy
	dialer      Dialer
	log         *slog.Logger
	lc          *net.ListenConfig
	maxFlows    int64
	maxConns    int64
	idle        time.Duration
	dialTimeout time.Duration
	epoch       time.Time // monotonic base of UDP flow times

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine of this NodePorts

	syncMu    sync.Mutex // serializes Sync, FlushUDP and Close; guards listeners, closed
	listeners map[listenKey]*listener
	closed    bool

	mu      sync.Mutex // guards conns, closing
	conns   map[net.Conn]struct{}
	closing bool

	tcpAccepted, tcpRefused, tcpDialFailed, udpDropped atomic.Uint64
	tcpActive, udpFlows                                atomic.Int64
}

type listenKey struct {
	proto Protocol
	port  uint16
}

func (k listenKey) String() string { return fmt.Sprintf("%d/%s", k.port, k.proto) }

type listenKind uint8

const (
	forwardListener listenKind = iota // TCP or UDP to backends
	healthListener                    // kube-proxy's health-check HTTP server
)

// listener is one open host socket and what serves it.
type listener struct {
	key    listenKey
	kind   listenKind
	tcp    net.Listener
	udp    *udpPort
	http   *http.Server
	health atomic.Pointer[healthState] // healthListener: the Service and its local endpoints

	httpConns sync.WaitGroup // the connection goroutines of http
}

// NewNodePorts returns a NodePorts that serves nothing until Sync.
func NewNodePorts(opts NodePortOptions) *NodePorts {
	n := &NodePorts{
		addr:        opts.Address.Unmap(),
		proxy:       opts.Proxy,
		dialer:      opts.Dialer,
		log:         opts.Logger,
		lc:          opts.Listen,
		maxFlows:    int64(cmp.Or(opts.MaxUDPFlows, DefaultMaxUDPFlows)),
		maxConns:    int64(cmp.Or(opts.MaxConns, DefaultMaxConns)),
		idle:        cmp.Or(opts.UDPIdleTimeout, DefaultUDPIdleTimeout),
		dialTimeout: cmp.Or(opts.DialTimeout, DefaultDialTimeout),
		epoch:       time.Now(),
		listeners:   map[listenKey]*listener{},
		conns:       map[net.Conn]struct{}{},
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.lc == nil {
		n.lc = &net.ListenConfig{}
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n
}

// Stats returns the counters.
func (n *NodePorts) Stats() NodePortStats {
	return NodePortStats{
		TCPAccepted:   n.tcpAccepted.Load(),
		TCPRefused:    n.tcpRefused.Load(),
		TCPDialFailed: n.tcpDialFailed.Load(),
		TCPActive:     n.tcpActive.Load(),
		UDPFlows:      n.udpFlows.Load(),
		UDPDropped:    n.udpDropped.Load(),
	}
}

// want is a listener that Sync wants open.
type want struct {
	kind   listenKind
	owner  string // for errors: "service NS/NAME port P nodePort"
	svc    *Service
	health *healthState
}

// Sync opens and closes host listeners to match svcs: TCP or UDP on
// Address:NodePort for every port with a NodePort; on Address:Port for every
// Service whose LoadBalancerIPs contain Address; an HTTP server on
// Address:HealthCheckNodePort for every ExternalLocal Service that has one.
// Listeners that stay are kept, and no established TCP connection is
// dropped. Call it with the same Services as every Proxy.Update: it also
// refreshes the health checks' local endpoint counts.
//
// Errors (a port in use, a port below 1024 without privilege, two Services
// on one port) are returned joined, each naming the Service and port; the
// other listeners open all the same, and a later Sync tries again.
func (n *NodePorts) Sync(svcs []Service) error {
	n.syncMu.Lock()
	defer n.syncMu.Unlock()
	if n.closed {
		return errors.New("proxy: sync node ports: closed")
	}
	if !n.addr.IsValid() {
		return errors.New("proxy: sync node ports: no node address (NodePortOptions.Address)")
	}
	var errs []error
	wants := map[listenKey]*want{}
	add := func(k listenKey, w *want) {
		if k.proto != TCP && k.proto != UDP {
			errs = append(errs, fmt.Errorf("%s: protocol %s is not supported", w.owner, k.proto))
			return
		}
		if o := wants[k]; o != nil {
			if o.svc != w.svc || o.kind != w.kind {
				errs = append(errs, fmt.Errorf("%s: %s on %s is already used by %s", w.owner, k, n.addr, o.owner))
			}
			return
		}
		wants[k] = w
	}
	order := make([]*Service, len(svcs))
	for i := range svcs {
		order[i] = &svcs[i]
	}
	slices.SortFunc(order, func(a, b *Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for _, s := range order {
		lb := slices.ContainsFunc(s.LoadBalancerIPs, func(a netip.Addr) bool { return a.Unmap() == n.addr })
		for _, p := range s.Ports {
			if p.NodePort != 0 {
				add(listenKey{p.Protocol, p.NodePort}, &want{kind: forwardListener, svc: s,
					owner: fmt.Sprintf("service %s/%s port %s nodePort", s.Namespace, s.Name, portName(&p))})
			}
			if lb {
				add(listenKey{p.Protocol, p.Port}, &want{kind: forwardListener, svc: s,
					owner: fmt.Sprintf("service %s/%s port %s load-balancer port", s.Namespace, s.Name, portName(&p))})
			}
		}
		if s.ExternalLocal && s.HealthCheckNodePort != 0 {
			add(listenKey{TCP, s.HealthCheckNodePort}, &want{kind: healthListener, svc: s,
				owner:  fmt.Sprintf("service %s/%s healthCheckNodePort", s.Namespace, s.Name),
				health: &healthState{namespace: s.Namespace, name: s.Name, local: localReadyIPs(s)}})
		}
	}

	for k, l := range n.listeners {
		if w := wants[k]; w == nil || w.kind != l.kind {
			n.log.Info("closing host listener", "address", n.addr, "port", k)
			n.closeListenerLocked(l)
			delete(n.listeners, k)
		}
	}
	for k, w := range wants {
		if l := n.listeners[k]; l != nil {
			if w.health != nil {
				l.health.Store(w.health)
			}
			continue
		}
		l, err := n.openLocked(k, w)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", w.owner, k, err))
			n.log.Warn("host listener failed", "owner", w.owner, "port", k, "err", err)
			continue
		}
		n.log.Info("host listener open", "owner", w.owner, "address", n.addr, "port", k)
		n.listeners[k] = l
	}
	return errors.Join(errs...)
}

func portName(p *Port) string {
	if p.Name != "" {
		return fmt.Sprintf("%q (%d/%s)", p.Name, p.Port, p.Protocol)
	}
	return fmt.Sprintf("%d/%s", p.Port, p.Protocol)
}

// openLocked opens the listener k for w and starts its goroutine.
func (n *NodePorts) openLocked(k listenKey, w *want) (*listener, error) {
	addr := netip.AddrPortFrom(n.addr, k.port).String()
	l := &listener{key: k, kind: w.kind}
	switch {
	case w.kind == healthListener:
		ln, err := n.lc.Listen(n.ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		l.health.Store(w.health)
		l.http = n.newHealthServer(l)
		n.wg.Go(func() { n.serveHealth(l, ln) })
	case k.proto == TCP:
		ln, err := n.lc.Listen(n.ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		l.tcp = ln
		n.wg.Go(func() { n.acceptTCP(ln, k.port) })
	case k.proto == UDP:
		pc, err := n.lc.ListenPacket(n.ctx, "udp", addr)
		if err != nil {
			return nil, err
		}
		l.udp = &udpPort{n: n, port: k.port, conn: pc.(*net.UDPConn), flows: map[netip.AddrPort]*udpFlow{}}
		n.wg.Go(l.udp.serve)
	}
	return l, nil
}

// closeListenerLocked closes l's socket; its goroutines end on their own.
func (n *NodePorts) closeListenerLocked(l *listener) {
	switch {
	case l.http != nil:
		l.http.Close()
	case l.tcp != nil:
		l.tcp.Close()
	case l.udp != nil:
		l.udp.conn.Close()
	}
}

// FlushUDP ends the UDP flows to backends (Proxy.Update's removed list): the
// client's next datagram starts a new flow to a ready backend.
func (n *NodePorts) FlushUDP(backends []netip.AddrPort) {
	if len(backends) == 0 {
		return
	}
	n.syncMu.Lock()
	defer n.syncMu.Unlock()
	for _, l := range n.listeners {
		if l.udp != nil {
			l.udp.flush(backends)
		}
	}
}

// Close closes every listener and every spliced connection and UDP flow, and
// waits for all goroutines of n to end. A later Sync fails.
func (n *NodePorts) Close() error {
	n.syncMu.Lock()
	if n.closed {
		n.syncMu.Unlock()
		return nil
	}
	n.closed = true
	for k, l := range n.listeners {
		n.closeListenerLocked(l)
		delete(n.listeners, k)
	}
	n.syncMu.Unlock()

	n.cancel()
	n.mu.Lock()
	n.closing = true
	for c := range n.conns {
		c.Close()
	}
	n.mu.Unlock()
	n.wg.Wait()
	return nil
}

// track registers c to be closed by Close; false if Close has begun (c is
// then closed here).
func (n *NodePorts) track(c net.Conn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closing {
		c.Close()
		return false
	}
	n.conns[c] = struct{}{}
	return true
}

func (n *NodePorts) untrack(c net.Conn) {
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
}

// acceptTCP accepts on ln until it is closed.
func (n *NodePorts) acceptTCP(ln net.Listener, port uint16) {
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, as net/http does.
			n.log.Warn("node port accept", "port", port, "err", err, "retryIn", backoff)
			select {
			case <-time.After(backoff):
			case <-n.ctx.Done():
				ln.Close()
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		n.tcpAccepted.Add(1)
		if n.tcpActive.Add(1) > n.maxConns {
			n.tcpActive.Add(-1)
			n.tcpRefused.Add(1)
			reset(c)
			continue
		}
		// Registered under n.mu so that Close either sees it or it sees Close.
		n.mu.Lock()
		if n.closing {
			n.mu.Unlock()
			n.tcpActive.Add(-1)
			reset(c)
			continue
		}
		n.conns[c] = struct{}{}
		n.wg.Go(func() { n.serveTCP(c, port) })
		n.mu.Unlock()
	}
}

// serveTCP gives c a backend and splices them.
func (n *NodePorts) serveTCP(c net.Conn, port uint16) {
	defer n.tcpActive.Add(-1)
	defer n.untrack(c)
	client := addrPortOf(c.RemoteAddr())
	backend, svc, res := n.proxy.PickExternal(TCP, client.Addr(), n.addr, port)
	if res != Picked {
		n.tcpRefused.Add(1)
		reset(c)
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.dialTimeout)
	bc, err := n.dialer.DialTCP(ctx, ExternalSource(svc, client.Addr()), backend)
	cancel()
	if err != nil {
		n.tcpDialFailed.Add(1)
		n.log.Debug("node port dial", "service", svc.Namespace+"/"+svc.Name, "backend", backend, "err", err)
		reset(c)
		return
	}
	if !n.track(bc) {
		reset(c)
		return
	}
	defer n.untrack(bc)
	splice(c, bc)
}

// splice copies a to b and b to a until both directions end, carrying a
// half-close (CloseWrite) across, and a reset from b back to a. Then it
// closes both.
func splice(a, b net.Conn) {
	done := make(chan struct{})
	go func() { // owned: splice waits for it
		defer close(done)
		if !copyHalf(b, a) {
			b.Close()
			reset(a)
		}
	}()
	if !copyHalf(a, b) {
		reset(a) // the backend reset, or the client went away
		b.Close()
	}
	<-done
	a.Close()
	b.Close()
}

var copyBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// copyHalf copies src to dst until src's EOF, then half-closes dst. It
// reports false when a read (other than EOF) or a write failed.
func copyHalf(dst, src net.Conn) bool {
	buf := copyBufs.Get().(*[32 << 10]byte)
	defer copyBufs.Put(buf)
	for {
		nr, rerr := src.Read(buf[:])
		if nr > 0 {
			if _, werr := dst.Write(buf[:nr]); werr != nil {
				return false
			}
		}
		if rerr == io.EOF {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			return true
		}
		if rerr != nil {
			return false
		}
	}
}

// reset closes c with a TCP RST when it is a host TCP connection.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// addrPortOf returns a net.Addr's address and port, IPv4 unmapped.
func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
