package stack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	netstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/podnet/podnet/tap"
)

// Defaults of the Options limits.
const (
	DefaultMTU                  = 1500
	DefaultMaxPendingHandshakes = 256
	DefaultMaxHostConns         = 4096
	DefaultMaxUDPFlows          = 1024
	DefaultUDPIdleTimeout       = 30 * time.Second
	DefaultHostDialTimeout      = 30 * time.Second
	// A new flow across nodes costs about 50 µs of CPU in all (hping3's SYNs to a
	// ClusterIP: the SYN, the SYN-ACK and the client's RST, each read, translated,
	// encrypted, sent, received, decrypted and written, one at a time): 1,000 a second
	// is a twentieth of a core, and a pod may take that much of each CPU the agent has
	// (DefaultMaxNewFlowsPerPod). On 2 vCPUs a flooding pod held to a tenth of a core
	// by its CPU limit still took a third of another pod's iperf3 throughput at 20,000
	// a second, and up to two fifths in the real cluster at 5,000; and podnet carries
	// about 2,000 real connections a second there, so a pod starting more would
	// already have the node to itself.
	NewFlowsPerPodPerCPU = 1000
)

// DefaultMaxNewFlowsPerPod is the bound on each pod's new flows a second when
// Options.MaxNewFlowsPerPod is 0: NewFlowsPerPodPerCPU for each CPU the agent may
// use (GOMAXPROCS, which follows the CPU limit of its cgroup).
func DefaultMaxNewFlowsPerPod() int {
	return NewFlowsPerPodPerCPU * runtime.GOMAXPROCS(0)
}

// HostDialer opens host connections for egress; *net.Dialer satisfies it.
type HostDialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Options configure a Stack. PodCIDR and Gateway are required; every other
// field has a usable zero value.
type Options struct {
	// Logger receives control-plane events (a port that failed, a
	// connection that could not be set up); the packet path only counts. If
	// nil, nothing is logged.
	Logger *slog.Logger

	// PodCIDR is this node's IPv4 pod range, e.g. 10.244.1.0/24. Attached
	// pods must have addresses in it.
	PodCIDR netip.Prefix

	// Gateway is the node's gateway address in PodCIDR, conventionally its
	// first host address (10.244.1.1). The Stack owns it: pods route
	// everything through it, it answers ICMP echo, and connections to it
	// go to HostLoopback if that is set (and are refused if not).
	Gateway netip.Addr

	// ClusterPrefixes are the cluster and service CIDRs. Connections from
	// pods to them that reach the netstack are never forwarded to the host:
	// TCP gets a RST, UDP an ICMP port unreachable. PodCIDR is always
	// treated as one of them (except the Gateway).
	ClusterPrefixes []netip.Prefix

	// MTU is the pods' MTU; 0 means DefaultMTU (1500).
	MTU int

	// HostLoopback, if valid, is where connections from pods to
	// Gateway:port go, on the same port: with 127.0.0.1, pods reach the
	// host's loopback services at their gateway (the lab's hostLoopback
	// setting, like slirp4netns's and pasta's mapping). The zero Addr means
	// no mapping: connections to the gateway are refused, except to local
	// services (SetLocalService).
	HostLoopback netip.Addr

	// HostDialer opens the host side of every forwarded connection
	// (network "tcp" or "udp", address "ip:port"). If nil, &net.Dialer{}.
	HostDialer HostDialer

	// MaxPendingHandshakes bounds the TCP connections from pods being set up
	// (the host dial in progress); further SYNs are ignored until one
	// completes, and the pod retransmits. 0 means
	// DefaultMaxPendingHandshakes (256).
	MaxPendingHandshakes int

	// MaxHostConns bounds the TCP connections spliced to the host,
	// including those being set up; further connections are reset. Each
	// costs two goroutines and up to twice the netstack's 8 MiB buffers.
	// 0 means DefaultMaxHostConns (4096).
	MaxHostConns int

	// MaxUDPFlows bounds the UDP flows relayed through host sockets;
	// datagrams of further flows are dropped. 0 means DefaultMaxUDPFlows
	// (1024).
	MaxUDPFlows int

	// UDPIdleTimeout is how long a UDP flow lives without a datagram in
	// either direction. 0 means DefaultUDPIdleTimeout (30 s).
	UDPIdleTimeout time.Duration

	// HostDialTimeout bounds each host dial. 0 means
	// DefaultHostDialTimeout (30 s).
	HostDialTimeout time.Duration

	// Services picks the backends of new flows from pods to addresses in
	// ServicePrefixes (Service NAT, nat.go). If nil, there is no Service
	// NAT and such traffic is refused like any cluster address that is not
	// a pod.
	Services ServiceBalancer

	// ServicePrefixes are the Service CIDRs: TCP and UDP from pods to them
	// is translated by Services. They should also be in ClusterPrefixes,
	// so that what is not translated is refused.
	ServicePrefixes []netip.Prefix

	// MaxNewFlowsPerPod bounds the new flows each pod may start a second
	// (TCP SYNs, first datagrams of UDP and SCTP flows; per queue of a
	// multi-queue pod, its share): further ones are dropped where they
	// are read, before any other work, and counted. A TCP reset without
	// ACK counts as well but is never dropped: the pod's kernel disowns a
	// SYN-ACK with one, when the SYN was forged. It keeps a pod that
	// floods (hping3 --flood) from taking the node's connection tracking,
	// overlay and CPU from other pods' established flows. 0 means
	// DefaultMaxNewFlowsPerPod() (1,000 for each CPU); negative means no
	// bound.
	MaxNewFlowsPerPod int

	// MaxConntrack bounds the translated flows tracked at once; the first
	// packets of further flows are dropped. 0 means DefaultMaxConntrack.
	MaxConntrack int
	// ConntrackFile, if set, is a file (best on a tmpfs, such as /run) that keeps a copy of
	// the connection-tracking table, so that a Stack made after this process is gone, even
	// killed, takes the tracked flows back: Service flows keep their backend, admitted UDP
	// flows their verdict. New reads it, then keeps it up to date (ctstore.go).
	ConntrackFile string
}

// Stack is a node's data path. Its methods are safe for concurrent use.
type Stack struct {
	opts    Options // normalized: every default filled in
	log     *slog.Logger
	gw4     [4]byte
	gwMAC   [6]byte
	refuse  []netip.Prefix // PodCIDR and ClusterPrefixes
	ns      *netstack.Stack
	framebs sync.Pool // of *[]byte of MaxFrameLen, for podLink.WritePackets

	// pods and remote are the snapshots the readers use; they are
	// replaced under mu.
	pods   atomic.Pointer[podTable]
	remote atomic.Pointer[remoteTable] // nil: no remote routes
	ovl    overlayNIC

	mu      sync.Mutex       // guards byIP, closed, retired
	byIP    map[[4]byte]*pod // the attached pods
	closed  bool
	retired Stats // frame counters of detached pods

	// Egress goroutines (forwarded connections) are tracked in egressWG;
	// egressMu orders their start against Close.
	ctx        context.Context
	cancel     context.CancelFunc
	egressMu   sync.Mutex // guards egressDone, taken around egressWG.Add
	egressDone bool
	egressWG   sync.WaitGroup
	hostConns  chan struct{} // semaphore of MaxHostConns
	egress     egressCounters

	policyDenied atomic.Uint64 // new flows the Filter denied

	// flowObs is the observer of new flows (nil: none), seen the flows it
	// was told of lately; ovlCapt the captures of the overlay (observe.go).
	flowObs atomic.Pointer[flowObserverBox]
	seen    seenFlows
	clock   atomic.Uint32 // Unix seconds, set by the sweeper: seen's clock
	// rest pauses a pod's reader after a frame the pod should not have
	// sent (restAfter); time.Sleep but in tests.
	rest    func(time.Duration)
	ovlCapt captureSet

	// ct is the connection tracking of translated flows (Service NAT,
	// when nat: Options.Services is set) and of UDP flows admitted by the
	// Filter; svcNets are the ServicePrefixes. The sweeper goroutine ends
	// when sweepStop is closed and closes sweepDone.
	ct        *conntrack
	nat       bool
	svcNets   []netip.Prefix
	filter    atomic.Pointer[filterBox]  // SetFilter; nil: no NetworkPolicy
	local     atomic.Pointer[localTable] // SetLocalService; nil: none
	fragID    atomic.Uint32              // IP IDs of WriteDatagram
	sweepStop chan struct{}
	sweepDone chan struct{}
}

// pod is one attached pod.
type pod struct {
	ip    netip.Addr
	ip4   [4]byte
	mac   [6]byte
	nicID tcpip.NICID
	link  *podLink // writes to queues[0]

	// queues are the pod's link, one Port each (a multi-queue TAP has
	// several); each has a reader. Frames to the pod go to the queue of
	// their flow (queueFor).
	queues []*podQueue

	// ctx is cancelled when the pod is detached; it ends the pod's
	// forwarded connections.
	ctx    context.Context
	cancel context.CancelFunc

	stopping atomic.Bool // set before the Stack closes the ports
	ctr      counters

	// ingressIso and egressIso say whether the Filter isolates the pod
	// (set by SetFilter and at attach).
	ingressIso, egressIso atomic.Bool

	capt captureSet // the captures of the pod's frames (observe.go)
}

// podQueue is one queue of a pod: its Port and its reader's state.
type podQueue struct {
	port Port
	done chan struct{} // closed when the reader has returned

	// The reader's scratch space; only the reader touches it.
	reply [arpReplyLen]byte // ARP replies
	udp   []byte            // UDP GSO frames cut for the netstack
	tx    podTx             // frames cut for the overlay
	flow  FlowEvent         // the new flow being handled, for the FlowObserver
	// newFlows counts the new flows read in second newFlowsAt (the Stack's
	// clock), against the queue's share of MaxNewFlowsPerPod.
	newFlows, newFlowsAt, newFlowsMax uint32
}

// queueFor returns the queue of p that the frame whose IPv4 packet is ip
// (checked by the caller: at least a valid header) is written to. Every
// frame of a flow goes to one queue, chosen by a hash of the flow
// (flowHash): frames written to different queues of a TAP may be handed to
// the pod's kernel in another order, and the kernel sends a flow's replies
// on the queue its frames were last written to, so keeping a flow on one
// queue also keeps its replies on one reader. A pod with one queue costs a
// comparison.
func (p *pod) queueFor(ip []byte) *podQueue {
	if len(p.queues) == 1 {
		return p.queues[0]
	}
	return p.queues[uint64(flowHash(ip))*uint64(len(p.queues))>>32]
}

// New creates a Stack. It starts no goroutines until pods are attached.
func New(opts Options) (*Stack, error) {
	if err := normalize(&opts); err != nil {
		return nil, fmt.Errorf("new stack: %w", err)
	}
	s := &Stack{
		opts:      opts,
		log:       opts.Logger,
		rest:      time.Sleep,
		gw4:       opts.Gateway.As4(),
		gwMAC:     macFor(opts.Gateway),
		refuse:    append([]netip.Prefix{opts.PodCIDR}, opts.ClusterPrefixes...),
		byIP:      make(map[[4]byte]*pod),
		hostConns: make(chan struct{}, opts.MaxHostConns),
	}
	s.framebs.New = func() any {
		b := make([]byte, MaxFrameLen)
		return &b
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.ns = netstack.New(netstack.Options{
		NetworkProtocols:   []netstack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []netstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	if err := tuneTCP(s.ns); err != nil {
		s.ns.Destroy()
		return nil, fmt.Errorf("new stack: %w", err)
	}
	if err := s.addOverlayNIC(); err != nil {
		s.ns.Destroy()
		return nil, fmt.Errorf("new stack: %w", err)
	}
	s.installForwarders()
	s.ct = newConntrack(opts.MaxConntrack)
	if opts.ConntrackFile != "" {
		store, recs, err := openCtStore(opts.ConntrackFile, opts.MaxConntrack)
		if err != nil {
			s.ns.Destroy()
			return nil, fmt.Errorf("new stack: %w", err)
		}
		s.ct.store = store
		if n := s.ct.restore(recs); n > 0 || len(recs) > 0 {
			s.log.Info("connection tracking taken back from the previous agent", "entries", n, "records", len(recs), "file", opts.ConntrackFile)
		}
	}
	if opts.Services != nil {
		s.nat = true
		s.svcNets = opts.ServicePrefixes
	}
	s.clock.Store(uint32(time.Now().Unix()))
	s.sweepStop, s.sweepDone = make(chan struct{}), make(chan struct{})
	go s.sweepConntrack()
	return s, nil
}

// sweepConntrack advances the connection-tracking clock and removes expired
// entries once a second until Close.
func (s *Stack) sweepConntrack() {
	defer close(s.sweepDone)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.sweepStop:
			return
		case now := <-t.C:
			s.clock.Store(uint32(now.Unix()))
			s.ct.sweep(now)
		}
	}
}

// normalize validates opts and fills in defaults.
func normalize(o *Options) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if !o.PodCIDR.IsValid() || !o.PodCIDR.Addr().Is4() {
		return fmt.Errorf("PodCIDR %v: want an IPv4 prefix", o.PodCIDR)
	}
	o.PodCIDR = o.PodCIDR.Masked()
	o.Gateway = o.Gateway.Unmap()
	if !o.Gateway.Is4() || !o.PodCIDR.Contains(o.Gateway) || o.Gateway == o.PodCIDR.Addr() {
		return fmt.Errorf("Gateway %v: want a host address in PodCIDR %v", o.Gateway, o.PodCIDR)
	}
	prefixes := make([]netip.Prefix, 0, len(o.ClusterPrefixes))
	for _, p := range o.ClusterPrefixes {
		if !p.IsValid() {
			return fmt.Errorf("ClusterPrefixes: invalid prefix %v", p)
		}
		prefixes = append(prefixes, p.Masked())
	}
	o.ClusterPrefixes = prefixes
	if o.MTU == 0 {
		o.MTU = DefaultMTU
	}
	if o.MTU < 576 || o.MTU > 65535-ethLen {
		return fmt.Errorf("MTU %d: want 576 to %d", o.MTU, 65535-ethLen)
	}
	if o.HostDialer == nil {
		o.HostDialer = &net.Dialer{}
	}
	if o.MaxPendingHandshakes <= 0 {
		o.MaxPendingHandshakes = DefaultMaxPendingHandshakes
	}
	if o.MaxHostConns <= 0 {
		o.MaxHostConns = DefaultMaxHostConns
	}
	if o.MaxUDPFlows <= 0 {
		o.MaxUDPFlows = DefaultMaxUDPFlows
	}
	if o.UDPIdleTimeout <= 0 {
		o.UDPIdleTimeout = DefaultUDPIdleTimeout
	}
	if o.HostDialTimeout <= 0 {
		o.HostDialTimeout = DefaultHostDialTimeout
	}
	if o.MaxNewFlowsPerPod == 0 {
		o.MaxNewFlowsPerPod = DefaultMaxNewFlowsPerPod()
	}
	if o.MaxConntrack <= 0 {
		o.MaxConntrack = DefaultMaxConntrack
	}
	svc := make([]netip.Prefix, 0, len(o.ServicePrefixes))
	for _, p := range o.ServicePrefixes {
		if !p.IsValid() || !p.Addr().Is4() {
			return fmt.Errorf("ServicePrefixes: want IPv4 prefixes, got %v", p)
		}
		svc = append(svc, p.Masked())
	}
	o.ServicePrefixes = svc
	return nil
}

// tuneTCP applies the netstack settings that matter for throughput.
func tuneTCP(ns *netstack.Stack) error {
	sack := tcpip.TCPSACKEnabled(true)
	recovery := tcpip.TCPRACKLossDetection
	cc := tcpip.CongestionControlOption("cubic")
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	send := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20}
	recv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20}
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &recovery, &cc, &moderate, &send, &recv} {
		if err := ns.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			return fmt.Errorf("set TCP option %T: %s", opt, err)
		}
	}
	return nil
}

// AttachPod joins port, the link of the pod with address ip, to the Stack
// and starts its reader. ip must be in PodCIDR, not the gateway, and not
// attached already. On success the Stack owns port and closes it in
// DetachPod or Close; on error the caller keeps it.
func (s *Stack) AttachPod(ip netip.Addr, port Port) error {
	return s.AttachPodQueues(ip, []Port{port})
}

// AttachPodQueues is AttachPod for a pod whose link has several queues (the
// Devices of tap.OpenQueues), one Port each: every queue gets a reader of its
// own, so the pod's flows are read in parallel. A frame to the pod is
// written to the queue of its flow, chosen by a hash of its addresses,
// protocol and ports, so the frames of one flow are never spread over
// queues (which could reorder them). The netstack's NIC for the pod reads
// from every queue but writes to ports[0] only. On success the Stack owns
// every port and closes them in DetachPod or Close; on error the caller
// keeps them.
func (s *Stack) AttachPodQueues(ip netip.Addr, ports []Port) error {
	ip = ip.Unmap()
	if err := s.attach(ip, ports); err != nil {
		return fmt.Errorf("attach pod %v: %w", ip, err)
	}
	return nil
}

func (s *Stack) attach(ip netip.Addr, ports []Port) error {
	if len(ports) == 0 {
		return errors.New("no port")
	}
	for _, port := range ports {
		if port == nil {
			return errors.New("nil port")
		}
	}
	if !ip.Is4() || !s.opts.PodCIDR.Contains(ip) {
		return fmt.Errorf("address not in pod CIDR %v", s.opts.PodCIDR)
	}
	if ip == s.opts.Gateway || ip == s.opts.PodCIDR.Addr() {
		return fmt.Errorf("address reserved in pod CIDR %v", s.opts.PodCIDR)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return net.ErrClosed
	}
	ip4 := ip.As4()
	if _, ok := s.byIP[ip4]; ok {
		return errors.New("address already attached")
	}
	p := &pod{
		ip:  ip,
		ip4: ip4,
		mac: macFor(ip),
	}
	var newFlowsMax uint32
	if m := s.opts.MaxNewFlowsPerPod; m > 0 {
		newFlowsMax = uint32(max(1, m/len(ports)))
	}
	for _, port := range ports {
		p.queues = append(p.queues, &podQueue{port: port, done: make(chan struct{}), newFlowsMax: newFlowsMax})
	}
	p.ctx, p.cancel = context.WithCancel(s.ctx)
	p.link = &podLink{port: ports[0], podMAC: p.mac, gwMAC: s.gwMAC, frames: &s.framebs, ctr: &p.ctr, capt: &p.capt}
	if s.nat {
		p.link.replyNAT = s.translateStackReply
	}
	p.link.mtu.Store(uint32(s.opts.MTU))

	p.nicID = s.ns.NextNICID()
	if err := s.addNIC(p); err != nil {
		p.cancel()
		return err
	}
	if fb := s.filter.Load(); fb != nil {
		in, eg := fb.f.Isolated(ip)
		p.ingressIso.Store(in)
		p.egressIso.Store(eg)
	}
	s.byIP[ip4] = p
	s.publishLocked()
	for _, q := range p.queues {
		go s.read(p, q)
	}
	return nil
}

// addNIC creates p's NIC: the gateway address, promiscuous with spoofing so
// the forwarders see connections to any address, and a route to the pod.
func (s *Stack) addNIC(p *pod) error {
	if err := s.ns.CreateNICWithOptions(p.nicID, p.link, netstack.NICOptions{Name: "pod-" + p.ip.String()}); err != nil {
		return fmt.Errorf("create NIC: %s", err)
	}
	fail := func(what string, err tcpip.Error) error {
		s.ns.RemoveNIC(p.nicID)
		return fmt.Errorf("%s: %s", what, err)
	}
	if err := s.ns.SetPromiscuousMode(p.nicID, true); err != nil {
		return fail("set promiscuous", err)
	}
	if err := s.ns.SetSpoofing(p.nicID, true); err != nil {
		return fail("set spoofing", err)
	}
	gw := tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(s.gw4).WithPrefix(),
	}
	if err := s.ns.AddProtocolAddress(p.nicID, gw, netstack.AddressProperties{}); err != nil {
		return fail("add gateway address", err)
	}
	s.ns.AddRoute(tcpip.Route{Destination: tcpip.AddrFrom4(p.ip4).WithPrefix().Subnet(), NIC: p.nicID})
	return nil
}

// publishLocked replaces the readers' snapshot with a copy of byIP.
func (s *Stack) publishLocked() {
	s.pods.Store(&podTable{byIP: maps.Clone(s.byIP)})
}

// DetachPod stops the readers of the pod with address ip, waits for them,
// closes its ports, removes its NIC and closes the pod's connections through
// the host.
func (s *Stack) DetachPod(ip netip.Addr) error {
	ip = ip.Unmap()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ip.Is4() {
		return fmt.Errorf("detach pod %v: not attached", ip)
	}
	p, ok := s.byIP[ip.As4()]
	if !ok {
		return fmt.Errorf("detach pod %v: not attached", ip)
	}
	delete(s.byIP, p.ip4)
	s.publishLocked()
	err := s.stopLocked(p)
	s.flushPod(p.ip4)
	if err != nil {
		return fmt.Errorf("detach pod %v: %w", ip, err)
	}
	return nil
}

// stopLocked stops an unpublished pod: ends its forwarded connections,
// closes its ports, waits for its readers, removes its NIC and keeps its
// counters.
func (s *Stack) stopLocked(p *pod) error {
	p.cancel()
	p.stopping.Store(true)
	var errs []error
	for i, q := range p.queues {
		if err := q.port.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close port %d: %w", i, err))
		}
	}
	for _, q := range p.queues {
		<-q.done
	}
	s.ns.RemoveNIC(p.nicID)
	p.ctr.addTo(&s.retired)
	return errors.Join(errs...)
}

// floodRest is how long a pod's reader rests after a frame the pod should not
// have sent: a new flow beyond its bound, a spoofed source, a malformed frame,
// a tiny fragment. A flood is then read at most about a thousand frames a
// second beyond what passes; the rest waits in the pod's TAP queue, and when
// that is full the pod's own kernel drops it, on the pod's CPU. Without the
// rest, the agent read and dropped about 11,000 frames a second from an hping3
// held to a tenth of a core, and as many as an unlimited one could send. The
// pod's own flows wait with the flood; other pods' do not.
const floodRest = time.Millisecond

// read is the reader of p's queue q: it moves every frame from q's port to
// its destination until the port fails or is closed.
func (s *Stack) read(p *pod, q *podQueue) {
	defer close(q.done)
	buf := make([]byte, MaxFrameLen)
	for {
		n, err := q.port.ReadFrame(buf)
		if err != nil {
			if !p.stopping.Load() {
				s.log.Warn("pod port failed; no longer reading it", "pod", p.ip, "err", err)
			}
			return
		}
		s.handleFrame(p, q, buf[:n])
	}
}

// handleFrame is the per-frame work of the reader of p's queue q: the
// captures of p see the frame, and a new flow is told to the FlowObserver
// once route has decided it.
func (s *Stack) handleFrame(p *pod, q *podQueue, frame []byte) {
	if fns := p.capt.active(); fns != nil {
		captureFrame(fns, frame, true)
	}
	ob := s.flowObs.Load()
	if (ob == nil && q.newFlowsMax == 0) || len(frame) < netOff+20 || binary.BigEndian.Uint16(frame[ethOff+12:]) != etherTypeIPv4 {
		s.route(p, q, frame, nil)
		return
	}
	ip := frame[netOff:]
	if ip[0]>>4 != 4 || int(ip[0]&0x0f)*4 < 20 || int(binary.BigEndian.Uint16(ip[2:])) > len(ip) {
		s.route(p, q, frame, nil)
		return
	}
	switch s.flowStart(ip) {
	case inFlow:
		s.route(p, q, frame, nil)
		return
	case disowns:
		if q.newFlowsMax != 0 {
			q.countNewFlow(s.clock.Load()) // counted, never dropped: it ends the flow it answers
		}
		s.route(p, q, frame, nil)
		return
	}
	if q.newFlowsMax != 0 {
		if !q.countNewFlow(s.clock.Load()) {
			p.ctr.newFlowDrops.Add(1)
			s.rest(floodRest)
			return
		}
	}
	if ob == nil {
		s.route(p, q, frame, nil)
		return
	}
	ev := &q.flow
	startFlow(ev, FlowFromPod, ip, time.Now())
	s.route(p, q, frame, ev)
	finishFlow(ev, ip)
	ob.f(ev)
}

// countNewFlow counts a new flow in second now against q's bound, and reports whether it
// was within it.
func (q *podQueue) countNewFlow(now uint32) bool {
	if q.newFlowsAt != now {
		q.newFlowsAt, q.newFlows = now, 0
	}
	if q.newFlows >= q.newFlowsMax {
		return false
	}
	q.newFlows++
	return true
}

// route sends frame, read from p's queue q, on its way; ev, if not nil, is
// the new flow it starts, in which route notes what it decided.
func (s *Stack) route(p *pod, q *podQueue, frame []byte, ev *FlowEvent) {
	remote := s.remote.Load()
	v, dst := classifyRoute(frame, p.ip4, s.gw4, s.pods.Load(), remote)
	switch v {
	case verdictOverlay:
		if !s.policyOut(p, nil, frame, ev) {
			return
		}
		if !s.sendToOverlay(p, &q.tx, frame, remote.via) {
			p.ctr.overlayDropped.Add(1)
		}
		return
	case verdictForward:
		if s.ct.mayBeClient(dst.ip4) && s.translateReply(frame[netOff:], frame[0]&tap.FlagNeedsCsum != 0) {
			s.forward(p, dst, frame) // a reply of a Service flow: admitted with the flow
			return
		}
		if !s.policyOut(p, dst, frame, ev) {
			return
		}
		s.forward(p, dst, frame)
		return
	case verdictARPReply:
		n := buildARPReply(q.reply[:], frame, s.gwMAC)
		if err := p.writeFrame(q, q.reply[:n]); err != nil {
			p.ctr.writeErrors.Add(1)
			return
		}
	case verdictStack:
		if s.serveLocalUDP(p, frame, ev) {
			return
		}
		if s.nat && s.toService(frame) {
			switch s.translateOut(p, frame[netOff:], frame[0]&tap.FlagNeedsCsum != 0, ev) {
			case natDone:
				s.routeTranslated(p, q, frame, remote)
				return
			case natDropped: // counted in the conntrack's or the policy's counters
				return
			}
		}
		if !s.policyOut(p, nil, frame, ev) {
			return
		}
		v = p.link.deliver(frame, &q.udp)
	case verdictBadFrame, verdictSpoofed, verdictTinyFragment:
		p.ctr.count(v)
		s.rest(floodRest)
		return
	}
	p.ctr.count(v)
}

// forward writes frame (classified verdictForward) from p to the local pod
// dst.
func (s *Stack) forward(p, dst *pod, frame []byte) {
	rewriteForward(frame, &dst.mac, &s.gwMAC)
	if err := dst.writeFrame(dst.queueFor(frame[netOff:]), frame); err != nil {
		p.ctr.writeErrors.Add(1)
		return
	}
	p.ctr.fastPathFrames.Add(1)
	p.ctr.fastPathBytes.Add(uint64(len(frame) - vnetLen))
}

// toService reports whether frame (an IPv4 frame that classifyRoute
// checked) is addressed to a Service prefix.
func (s *Stack) toService(frame []byte) bool {
	if binary.BigEndian.Uint16(frame[ethOff+12:]) != etherTypeIPv4 {
		return false
	}
	dst := netip.AddrFrom4([4]byte(frame[netOff+16 : netOff+20]))
	for _, n := range s.svcNets {
		if n.Contains(dst) {
			return true
		}
	}
	return false
}

// routeTranslated sends frame, from p and translated by the Service NAT, on
// by its new destination: a local pod, another node's pod, or (a backend
// that is neither any more) the netstack, which refuses it. The source is
// not checked again: a hairpin flow's source is the Service address.
func (s *Stack) routeTranslated(p *pod, q *podQueue, frame []byte, remote *remoteTable) {
	ip := frame[netOff:]
	dst := [4]byte(ip[16:20])
	if ip[8] <= 1 {
		p.ctr.count(verdictTTL)
		return
	}
	if d := s.pods.Load().lookup(dst); d != nil {
		s.forward(p, d, frame)
		return
	}
	if remote.routes(dst) {
		if !s.sendToOverlay(p, &q.tx, frame, remote.via) {
			p.ctr.overlayDropped.Add(1)
		}
		return
	}
	p.ctr.count(p.link.deliver(frame, &q.udp))
}

// FlushUDPBackends removes the connection-tracking entries of the UDP flows
// translated to any of backends, so that their next datagrams pick a backend
// again (kube-proxy clears them when an endpoint goes away). It returns the
// number of entries removed.
func (s *Stack) FlushUDPBackends(backends []netip.AddrPort) int {
	if len(backends) == 0 {
		return 0
	}
	gone := make(map[ctKey]bool, len(backends)) // by (address, port) of the reply's source
	for _, b := range backends {
		b = netip.AddrPortFrom(b.Addr().Unmap(), b.Port())
		if b.Addr().Is4() {
			gone[makeKey(b.Addr().As4(), [4]byte{}, b.Port(), 0, protoUDP)] = true
		}
	}
	n := s.ct.removeIf(func(e *ctEntry) bool {
		return e.orig.proto() == protoUDP && gone[makeKey(e.reply.src(), [4]byte{}, e.reply.sport(), 0, protoUDP)]
	})
	s.ct.ctr.flushed.Add(uint64(n))
	return n
}

// flushPod removes the connection-tracking entries of the pod with address
// a, as client or as backend.
func (s *Stack) flushPod(a [4]byte) {
	n := s.ct.removeIf(func(e *ctEntry) bool { return e.client == a || e.reply.src() == a })
	s.ct.ctr.flushed.Add(uint64(n))
}

// DialContextTCP opens a TCP connection from the gateway address to dst, an
// attached pod (readiness and liveness probes use it).
func (s *Stack) DialContextTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if !dst.Addr().Is4() {
		return nil, fmt.Errorf("dial %v: not an IPv4 address", dst)
	}
	addr := tcpip.FullAddress{Addr: tcpip.AddrFrom4(dst.Addr().As4()), Port: dst.Port()}
	c, err := gonet.DialContextTCP(ctx, s.ns, addr, ipv4.ProtocolNumber)
	if err != nil {
		return nil, err // gonet's *net.OpError names the operation and address
	}
	return c, nil
}

// Stats returns the counters.
func (s *Stack) Stats() Stats {
	s.mu.Lock()
	st := s.retired
	for _, p := range s.byIP {
		p.ctr.addTo(&st)
	}
	s.mu.Unlock()
	st.HostTCPConns = s.egress.tcpConns.Load()
	st.HostTCPActive = s.egress.tcpActive.Load()
	st.HostUDPFlows = s.egress.udpFlows.Load()
	st.HostUDPActive = s.egress.udpActive.Load()
	st.Refused = s.egress.refused.Load()
	st.HostDialErrors = s.egress.dialErrors.Load()
	st.LimitDrops = s.egress.limitDrops.Load() + s.ns.Stats().TCP.ForwardMaxInFlightDrop.Value()
	oc := &s.ovl.ctr
	st.OverlayTxPackets += oc.fromStack.Load()
	st.OverlayTxBytes += oc.fromStackBytes.Load()
	st.DroppedOverlayTx += oc.fromStackErrors.Load()
	st.OverlayRxPackets = oc.rxPackets.Load()
	st.OverlayRxBytes = oc.rxBytes.Load()
	st.OverlayRxCoalesced = oc.rxCoalesced.Load()
	st.DroppedOverlayRx = oc.rxDropped.Load()
	st.DroppedTTL += oc.rxTTL.Load()
	st.DroppedWrite += oc.rxWriteErrors.Load()
	st.PolicyDenied = s.policyDenied.Load()
	if ct := s.ct; s.nat {
		st.NATFlows = ct.ctr.flows.Load()
		st.NATActive = ct.count.Load()
		st.NATPackets = ct.ctr.packets.Load()
		st.NATNoEndpoint = ct.ctr.noEndpoint.Load()
		st.NATDropped = ct.ctr.full.Load()
		st.NATHalfOpenDropped = ct.ctr.halfOpen.Load()
		st.NATRemapped = ct.ctr.remapped.Load()
		st.NATExpired = ct.ctr.expired.Load()
		st.NATFlushed = ct.ctr.flushed.Load()
	}
	return st
}

// Close detaches every pod, closes every forwarded connection and the
// netstack, and waits for every goroutine the Stack started. It returns the
// first error from closing a port. Close is idempotent.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	pods := s.byIP
	var errs []error
	for _, p := range pods {
		if err := s.stopLocked(p); err != nil {
			errs = append(errs, fmt.Errorf("detach pod %v: %w", p.ip, err))
		}
	}
	// Only now, with no reader left, are the pods and the remote routes taken out of the
	// tables: a frame read before to a pod of this node or of another would reach the netstack,
	// which would answer it with a RST in that pod's name and cut a connection that the next
	// agent of the node could have carried on. (A frame to a pod already stopped goes to its
	// closed port and is dropped; TCP sends it again.)
	s.byIP = make(map[[4]byte]*pod)
	s.publishLocked()
	s.remote.Store(nil)
	s.mu.Unlock()

	// No reader runs any more, so no new UDP flow starts; TCP handshakes
	// in progress see the cancellation or the closed gate.
	s.cancel()
	s.egressMu.Lock()
	s.egressDone = true
	s.egressMu.Unlock()
	s.egressWG.Wait()
	close(s.sweepStop)
	<-s.sweepDone
	s.ns.Destroy()
	if s.ct.store != nil {
		// The file keeps the entries for the next Stack; the readers that wrote them are gone.
		if err := s.ct.store.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
