package proxy

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Protocol is an IP protocol number: TCP (6) or UDP (17).
type Protocol uint8

// The protocols a Service port may have.
const (
	TCP Protocol = 6
	UDP Protocol = 17
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	}
	return fmt.Sprintf("protocol(%d)", uint8(p))
}

// Endpoint is one backend of a Service port.
type Endpoint struct {
	Addr  netip.AddrPort // pod IP and the target port resolved for this pod
	Node  string         // the node the pod runs on
	Local bool           // on this agent's node
	Ready bool           // only ready endpoints take new connections
}

// Port is one port of a Service.
type Port struct {
	Name      string // the Service port's name (may be "")
	Protocol  Protocol
	Port      uint16 // at the ClusterIP and the load-balancer addresses
	NodePort  uint16 // 0: none
	Endpoints []Endpoint
}

// Service is what the proxy needs of a Kubernetes Service.
//
// Update and Sync keep references to the Ports and Endpoints slices: the
// caller must not modify them afterwards (build new ones for the next call).
type Service struct {
	Namespace, Name     string
	ClusterIP           netip.Addr     // invalid (zero) for headless and ExternalName: no virtual IP
	LoadBalancerIPs     []netip.Addr   // status.loadBalancer.ingress IPs; served on the ones equal to the NodePorts' Address
	SourceRanges        []netip.Prefix // loadBalancerSourceRanges; empty: any client
	ExternalLocal       bool           // externalTrafficPolicy: Local
	InternalLocal       bool           // internalTrafficPolicy: Local
	AffinityTimeout     time.Duration  // sessionAffinity ClientIP timeout; 0: no affinity
	HealthCheckNodePort uint16
	Ports               []Port
}

// Result of a pick.
type Result uint8

// The results of Pick and PickExternal.
const (
	NotService Result = iota // no Service port at this address, port and protocol
	NoEndpoint               // a Service port without a usable endpoint: reject (TCP RST / ICMP port unreachable)
	Picked                   // the returned backend takes the flow
	Denied                   // PickExternal: a load-balancer IP's client outside loadBalancerSourceRanges: drop
)

func (r Result) String() string {
	switch r {
	case NotService:
		return "NotService"
	case NoEndpoint:
		return "NoEndpoint"
	case Picked:
		return "Picked"
	case Denied:
		return "Denied"
	}
	return fmt.Sprintf("Result(%d)", uint8(r))
}

// DefaultMaxAffinity is the bound of a Proxy's ClientIP affinity entries
// when Options.MaxAffinity is zero.
const DefaultMaxAffinity = 65536

// Options configure a Proxy.
type Options struct {
	// Logger gets the control-plane messages of Update (never one per
	// packet). If nil, nothing is logged.
	Logger *slog.Logger
	// Now is the clock of session affinity. If nil, time.Now.
	Now func() time.Time
	// Rand returns a uniformly random int in [0, n), n > 0; it must be safe
	// for concurrent use. If nil, math/rand/v2's IntN. Tests make picks
	// deterministic with it.
	Rand func(n int) int
	// MaxAffinity bounds the ClientIP affinity entries of the Proxy. If
	// zero, DefaultMaxAffinity.
	MaxAffinity int
}

// Proxy is a node's Service table: an immutable snapshot swapped atomically
// by Update, plus the ClientIP affinity state. Its methods are safe for
// concurrent use. It starts no goroutines and needs no Close.
type Proxy struct {
	log   *slog.Logger
	now   func() time.Time
	rand  func(n int) int
	table atomic.Pointer[table]
	aff   affinity

	mu     sync.Mutex        // serializes Update; guards ids, nextID
	ids    map[spName]uint32 // affinity identity of each Service port with affinity
	nextID uint32            // last id handed out; ids are never reused
}

// New returns a Proxy with an empty table.
func New(opts Options) *Proxy {
	p := &Proxy{
		log:  opts.Logger,
		now:  opts.Now,
		rand: opts.Rand,
		ids:  map[spName]uint32{},
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.rand == nil {
		p.rand = rand.IntN
	}
	max := opts.MaxAffinity
	if max <= 0 {
		max = DefaultMaxAffinity
	}
	p.aff.init(max)
	p.table.Store(&table{})
	return p
}

// Update replaces the table with one built from svcs. It returns the UDP
// backends (address and port) that were ready endpoints of some Service port
// before and are not a ready endpoint of any Service port any more, sorted:
// the caller flushes their connection-tracking entries (and NodePorts.FlushUDP),
// as kube-proxy does. Affinity entries whose backend is gone are dropped.
//
// Update keeps svcs' Ports and Endpoints (see Service).
func (p *Proxy) Update(svcs []Service) (removed []netip.AddrPort) {
	start := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.table.Load()
	t := p.buildLocked(svcs)
	p.table.Store(t)
	dropped := p.aff.prune(t, p.now().UnixNano())
	removed = subtractSorted(old.udpReady, t.udpReady)
	p.log.Debug("service table updated", "services", len(t.svcs), "ports", t.ports, "endpoints", t.endpoints,
		"removedUDP", len(removed), "affinityDropped", dropped, "took", time.Since(start))
	return removed
}

// Services returns the number of Services in the current table.
func (p *Proxy) Services() int { return len(p.table.Load().svcs) }

// AffinityEntries returns the number of ClientIP affinity entries held.
func (p *Proxy) AffinityEntries() int {
	p.aff.mu.Lock()
	defer p.aff.mu.Unlock()
	return len(p.aff.index)
}

// Pick returns the backend of a new flow from a pod (client) to a ClusterIP
// (vip, port). It is called once per new connection on the packet path,
// concurrently: for a Service without affinity it takes no lock and
// allocates nothing.
func (p *Proxy) Pick(proto Protocol, client netip.Addr, vip netip.Addr, port uint16) (netip.AddrPort, Result) {
	vip = vip.Unmap()
	if !vip.Is4() {
		return netip.AddrPort{}, NotService
	}
	e := p.table.Load().cluster[key{vip: vip.As4(), port: port, proto: uint8(proto)}]
	if e == nil {
		return netip.AddrPort{}, NotService
	}
	return p.pick(&e.cluster, client)
}

// PickExternal returns the backend of a new flow from outside the cluster
// that arrived at a load-balancer IP (dst in a Service's LoadBalancerIPs,
// port the Service port) or else at a NodePort (dst the node's address, port
// the nodePort: any dst that is not a load-balancer IP of that port counts as
// the node's), and the Service it belongs to (nil for NotService; shared with
// the table: do not modify it). Load-balancer traffic from a client outside
// the Service's SourceRanges gets Denied.
func (p *Proxy) PickExternal(proto Protocol, client netip.Addr, dst netip.Addr, port uint16) (netip.AddrPort, *Service, Result) {
	client = client.Unmap()
	dst = dst.Unmap()
	t := p.table.Load()
	if dst.Is4() {
		if e := t.lb[key{vip: dst.As4(), port: port, proto: uint8(proto)}]; e != nil {
			if !e.allowed(client) {
				return netip.AddrPort{}, e.svc, Denied
			}
			be, r := p.pick(&e.external, client)
			return be, e.svc, r
		}
	}
	e := t.nodePort[key{port: port, proto: uint8(proto)}]
	if e == nil {
		return netip.AddrPort{}, nil, NotService
	}
	be, r := p.pick(&e.external, client)
	return be, e.svc, r
}

func (p *Proxy) pick(t *target, client netip.Addr) (netip.AddrPort, Result) {
	n := len(t.eps.list)
	switch {
	case n == 0:
		return netip.AddrPort{}, NoEndpoint
	case t.affinity > 0:
		return p.aff.pick(p, t, client), Picked
	case n == 1:
		return t.eps.list[0], Picked
	}
	return t.eps.list[p.rand(n)], Picked
}

// ExternalSource returns the source address a backend should see for an
// external client of svc (see the package doc): the client's address for
// externalTrafficPolicy Local when it is routable unicast, otherwise the
// invalid Addr, which means the node's own address in the pod network.
func ExternalSource(svc *Service, client netip.Addr) netip.Addr {
	client = client.Unmap()
	if svc == nil || !svc.ExternalLocal || !routable(client) {
		return netip.Addr{}
	}
	return client
}

// routable reports whether a can be a packet's source inside the pod network.
func routable(a netip.Addr) bool {
	return a.IsValid() && !a.IsLoopback() && !a.IsUnspecified() && !a.IsLinkLocalUnicast() &&
		!a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// subtractSorted returns the elements of a (sorted, no duplicates) that are
// not in b (sorted, no duplicates).
func subtractSorted(a, b []netip.AddrPort) []netip.AddrPort {
	var out []netip.AddrPort
	for _, x := range a {
		i, found := slices.BinarySearchFunc(b, x, netip.AddrPort.Compare)
		b = b[i:]
		if !found {
			out = append(out, x)
		}
	}
	return out
}
