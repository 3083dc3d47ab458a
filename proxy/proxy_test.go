package proxy_test

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podnet/podnet/proxy"
)

var (
	ip = netip.MustParseAddr
	ap = netip.MustParseAddrPort
)

// sequence returns a Rand that answers 0, 1, 2, ... modulo n.
func sequence() func(int) int {
	var i atomic.Int64
	return func(n int) int { return int(i.Add(1)-1) % n }
}

// clock is a fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func ep(addr, node string, local, ready bool) proxy.Endpoint {
	return proxy.Endpoint{Addr: ap(addr), Node: node, Local: local, Ready: ready}
}

// web is a Service with endpoints on node-a (this node) and node-b, one of
// them not ready.
func web() proxy.Service {
	return proxy.Service{
		Namespace: "default", Name: "web",
		ClusterIP: ip("10.96.0.10"),
		Ports: []proxy.Port{{
			Name: "http", Protocol: proxy.TCP, Port: 80, NodePort: 30080,
			Endpoints: []proxy.Endpoint{
				ep("10.244.0.2:8080", "node-a", true, true),
				ep("10.244.1.2:8080", "node-b", false, true),
				ep("10.244.1.3:8080", "node-b", false, true),
				ep("10.244.0.9:8080", "node-a", true, false),
			},
		}},
	}
}

func TestPickSpreadsOverReadyEndpoints(t *testing.T) {
	p := proxy.New(proxy.Options{Rand: sequence()})
	svc := web()
	svc.Ports[0].Endpoints = append(svc.Ports[0].Endpoints, svc.Ports[0].Endpoints[1]) // a duplicate counts once
	p.Update([]proxy.Service{svc})
	got := map[netip.AddrPort]int{}
	for range 30 {
		be, r := p.Pick(proxy.TCP, ip("10.244.2.7"), ip("10.96.0.10"), 80)
		if r != proxy.Picked {
			t.Fatalf("Pick = %v, want Picked", r)
		}
		got[be]++
	}
	want := map[netip.AddrPort]int{ap("10.244.0.2:8080"): 10, ap("10.244.1.2:8080"): 10, ap("10.244.1.3:8080"): 10}
	if !mapsEqual(got, want) {
		t.Errorf("backends chosen %v, want %v (each ready endpoint, never the unready one)", got, want)
	}
}

func TestPickSpreadDefaultRand(t *testing.T) {
	p := proxy.New(proxy.Options{})
	p.Update([]proxy.Service{web()})
	got := map[netip.AddrPort]int{}
	for range 3000 {
		be, _ := p.Pick(proxy.TCP, ip("10.244.2.7"), ip("10.96.0.10"), 80)
		got[be]++
	}
	if len(got) != 3 {
		t.Fatalf("backends chosen %v, want the 3 ready ones", got)
	}
	for be, n := range got {
		if n < 800 || n > 1200 { // 1000 expected; this bound is > 7 sigma
			t.Errorf("%v chosen %d times of 3000, want about 1000", be, n)
		}
	}
}

func mapsEqual[K comparable](a, b map[K]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestPick(t *testing.T) {
	internal := web()
	internal.Name, internal.ClusterIP, internal.InternalLocal = "internal", ip("10.96.0.11"), true
	internal.Ports[0].NodePort = 0
	noLocal := web()
	noLocal.Name, noLocal.ClusterIP, noLocal.InternalLocal = "nolocal", ip("10.96.0.12"), true
	noLocal.Ports[0].NodePort = 0
	noLocal.Ports[0].Endpoints = noLocal.Ports[0].Endpoints[1:] // only node-b and an unready local one
	unready := web()
	unready.Name, unready.ClusterIP = "unready", ip("10.96.0.13")
	unready.Ports[0].NodePort = 0
	unready.Ports[0].Endpoints = []proxy.Endpoint{ep("10.244.0.2:8080", "node-a", true, false)}
	empty := web()
	empty.Name, empty.ClusterIP = "empty", ip("10.96.0.14")
	empty.Ports[0].NodePort = 0
	empty.Ports[0].Endpoints = nil
	headless := web()
	headless.Name, headless.ClusterIP = "headless", netip.Addr{}
	headless.Ports[0].NodePort = 0
	dns := proxy.Service{Namespace: "kube-system", Name: "dns", ClusterIP: ip("10.96.0.10"), Ports: []proxy.Port{
		{Name: "dns", Protocol: proxy.UDP, Port: 53, Endpoints: []proxy.Endpoint{ep("10.244.1.5:53", "node-b", false, true)}},
		{Name: "dns-tcp", Protocol: proxy.TCP, Port: 53, Endpoints: []proxy.Endpoint{ep("10.244.1.5:5353", "node-b", false, true)}},
	}}
	p := proxy.New(proxy.Options{Rand: func(int) int { return 0 }})
	p.Update([]proxy.Service{web(), internal, noLocal, unready, empty, headless, dns})
	if got := p.Services(); got != 7 {
		t.Errorf("Services() = %d, want 7", got)
	}

	client := ip("10.244.2.7")
	for _, tc := range []struct {
		name  string
		proto proxy.Protocol
		vip   netip.Addr
		port  uint16
		want  netip.AddrPort
		res   proxy.Result
	}{
		{"cluster", proxy.TCP, ip("10.96.0.10"), 80, ap("10.244.0.2:8080"), proxy.Picked},
		{"IPv4-mapped VIP", proxy.TCP, ip("::ffff:10.96.0.10"), 80, ap("10.244.0.2:8080"), proxy.Picked},
		{"other port", proxy.TCP, ip("10.96.0.10"), 81, netip.AddrPort{}, proxy.NotService},
		{"UDP on a TCP port", proxy.UDP, ip("10.96.0.10"), 80, netip.AddrPort{}, proxy.NotService},
		{"other address", proxy.TCP, ip("10.96.0.99"), 80, netip.AddrPort{}, proxy.NotService},
		{"IPv6", proxy.TCP, ip("fd00::10"), 80, netip.AddrPort{}, proxy.NotService},
		{"nodePort is not a ClusterIP port", proxy.TCP, ip("10.96.0.10"), 30080, netip.AddrPort{}, proxy.NotService},
		{"internalTrafficPolicy Local", proxy.TCP, ip("10.96.0.11"), 80, ap("10.244.0.2:8080"), proxy.Picked},
		{"internalTrafficPolicy Local, no local endpoint", proxy.TCP, ip("10.96.0.12"), 80, netip.AddrPort{}, proxy.NoEndpoint},
		{"no ready endpoint", proxy.TCP, ip("10.96.0.13"), 80, netip.AddrPort{}, proxy.NoEndpoint},
		{"no endpoint", proxy.TCP, ip("10.96.0.14"), 80, netip.AddrPort{}, proxy.NoEndpoint},
		{"multi-port UDP", proxy.UDP, ip("10.96.0.10"), 53, ap("10.244.1.5:53"), proxy.Picked},
		{"multi-port TCP", proxy.TCP, ip("10.96.0.10"), 53, ap("10.244.1.5:5353"), proxy.Picked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, res := p.Pick(tc.proto, client, tc.vip, tc.port)
			if be != tc.want || res != tc.res {
				t.Errorf("Pick(%v, %v:%d) = %v, %v; want %v, %v", tc.proto, tc.vip, tc.port, be, res, tc.want, tc.res)
			}
		})
	}
	// internalTrafficPolicy Local never picks another node's endpoint.
	for range 10 {
		p2 := proxy.New(proxy.Options{})
		p2.Update([]proxy.Service{internal})
		if be, _ := p2.Pick(proxy.TCP, client, ip("10.96.0.11"), 80); be != ap("10.244.0.2:8080") {
			t.Fatalf("internalTrafficPolicy Local picked %v, want the local 10.244.0.2:8080", be)
		}
	}
}

func TestAffinity(t *testing.T) {
	clk := newClock()
	p := proxy.New(proxy.Options{Rand: sequence(), Now: clk.Now})
	svc := web()
	svc.AffinityTimeout = 10 * time.Second
	svc.Ports = append(svc.Ports, proxy.Port{Name: "https", Protocol: proxy.TCP, Port: 443, Endpoints: svc.Ports[0].Endpoints})
	p.Update([]proxy.Service{svc})
	vip := ip("10.96.0.10")
	a, b := ip("10.244.2.7"), ip("10.244.2.8")
	pick := func(client netip.Addr, port uint16) netip.AddrPort {
		t.Helper()
		be, r := p.Pick(proxy.TCP, client, vip, port)
		if r != proxy.Picked {
			t.Fatalf("Pick = %v", r)
		}
		return be
	}

	first := pick(a, 80)
	if other := pick(b, 80); other == first {
		t.Fatalf("with a sequential Rand the second client got the same backend %v", other)
	}
	for range 5 { // pinned while used within the timeout, which restarts at each pick
		clk.Advance(9 * time.Second)
		if got := pick(a, 80); got != first {
			t.Fatalf("after 9 s: client moved from %v to %v", first, got)
		}
	}
	if got := pick(a, 443); got == first {
		t.Errorf("port 443 shares port 80's pin (%v); affinity is per Service port", got)
	}
	pick(b, 443) // takes the sequence's next value, which is first's
	clk.Advance(10 * time.Second)
	if got := pick(a, 80); got == first {
		t.Errorf("after the timeout the client kept %v; want a new pick", got)
	}
	pinned := pick(a, 80)

	// A backend that stays ready keeps its pins across Updates.
	p.Update([]proxy.Service{svc})
	if got := pick(a, 80); got != pinned {
		t.Errorf("after an Update that kept the backend: %v, want %v", got, pinned)
	}
	// A backend that turns unready loses them.
	svc2 := web()
	svc2.AffinityTimeout = 10 * time.Second
	for i := range svc2.Ports[0].Endpoints {
		if svc2.Ports[0].Endpoints[i].Addr == pinned {
			svc2.Ports[0].Endpoints[i].Ready = false
		}
	}
	p.Update([]proxy.Service{svc2})
	for range 10 {
		if got := pick(a, 80); got == pinned {
			t.Fatalf("client still pinned to %v, which is not ready any more", got)
		}
	}
	// Affinity turned off: spread again.
	p.Update([]proxy.Service{web()})
	seen := map[netip.AddrPort]bool{}
	for range 6 {
		seen[pick(a, 80)] = true
	}
	if len(seen) != 3 {
		t.Errorf("without affinity one client reached %d backends, want 3", len(seen))
	}
	if n := p.AffinityEntries(); n != 0 {
		t.Errorf("%d affinity entries left after affinity was turned off, want 0", n)
	}
}

func TestAffinityHonoursPolicy(t *testing.T) {
	// A pin made by external traffic (any endpoint) does not send internal
	// traffic (internalTrafficPolicy Local) to another node.
	clk := newClock()
	p := proxy.New(proxy.Options{Rand: sequence(), Now: clk.Now})
	svc := web()
	svc.AffinityTimeout = time.Minute
	svc.InternalLocal = true
	p.Update([]proxy.Service{svc})
	client := ip("10.244.0.5")
	p.PickExternal(proxy.TCP, client, ip("127.0.0.1"), 30080) // sequence 0: 10.244.0.2
	be, _, _ := p.PickExternal(proxy.TCP, client, ip("127.0.0.1"), 30080)
	if be != ap("10.244.0.2:8080") {
		t.Fatalf("external pick %v", be)
	}
	other := ip("10.244.0.6")
	p.PickExternal(proxy.TCP, other, ip("127.0.0.1"), 30080) // sequence 1: 10.244.1.2 (remote)
	for range 5 {
		if be, _ := p.Pick(proxy.TCP, other, ip("10.96.0.10"), 80); be != ap("10.244.0.2:8080") {
			t.Fatalf("internalTrafficPolicy Local: Pick = %v, want the local endpoint", be)
		}
	}
}

func TestAffinityBounded(t *testing.T) {
	clk := newClock()
	p := proxy.New(proxy.Options{Now: clk.Now, MaxAffinity: 100})
	svc := web()
	svc.AffinityTimeout = time.Hour
	p.Update([]proxy.Service{svc})
	for i := range 1000 {
		p.Pick(proxy.TCP, netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)}), ip("10.96.0.10"), 80)
	}
	if n := p.AffinityEntries(); n != 100 {
		t.Errorf("%d affinity entries, want the bound 100", n)
	}
}

func TestPickExternal(t *testing.T) {
	node := ip("127.0.5.2")
	cluster := web()
	local := web()
	local.Name, local.ClusterIP, local.ExternalLocal = "local", ip("10.96.0.11"), true
	local.Ports[0].NodePort = 30081
	noLocal := web()
	noLocal.Name, noLocal.ClusterIP, noLocal.ExternalLocal = "nolocal", ip("10.96.0.12"), true
	noLocal.Ports[0].NodePort = 30082
	noLocal.Ports[0].Endpoints = noLocal.Ports[0].Endpoints[1:]
	lb := web()
	lb.Name, lb.ClusterIP = "lb", ip("10.96.0.13")
	lb.Ports[0].NodePort = 30083
	lb.LoadBalancerIPs = []netip.Addr{node, ip("192.0.2.1")}
	lb.SourceRanges = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("127.0.0.0/8")}
	p := proxy.New(proxy.Options{Rand: sequence()})
	p.Update([]proxy.Service{cluster, local, noLocal, lb})

	for _, tc := range []struct {
		name    string
		proto   proxy.Protocol
		client  netip.Addr
		dst     netip.Addr
		port    uint16
		res     proxy.Result
		svc     string
		backend func(netip.AddrPort) bool
	}{
		{"nodePort, Cluster", proxy.TCP, ip("198.51.100.7"), node, 30080, proxy.Picked, "web", anyReady},
		{"nodePort, Local", proxy.TCP, ip("198.51.100.7"), node, 30081, proxy.Picked, "local", isLocal},
		{"nodePort, Local, none here", proxy.TCP, ip("198.51.100.7"), node, 30082, proxy.NoEndpoint, "nolocal", nil},
		{"nodePort, UDP", proxy.UDP, ip("198.51.100.7"), node, 30080, proxy.NotService, "", nil},
		{"unknown port", proxy.TCP, ip("198.51.100.7"), node, 30099, proxy.NotService, "", nil},
		{"ClusterIP port on the node", proxy.TCP, ip("198.51.100.7"), node, 81, proxy.NotService, "", nil},
		{"load-balancer IP, allowed", proxy.TCP, ip("192.0.2.77"), ip("192.0.2.1"), 80, proxy.Picked, "lb", anyReady},
		{"load-balancer IP, IPv4-mapped client", proxy.TCP, ip("::ffff:192.0.2.77"), ip("192.0.2.1"), 80, proxy.Picked, "lb", anyReady},
		{"load-balancer IP, denied", proxy.TCP, ip("198.51.100.7"), ip("192.0.2.1"), 80, proxy.Denied, "lb", nil},
		{"node address as load-balancer IP", proxy.TCP, ip("127.0.0.1"), node, 80, proxy.Picked, "lb", anyReady},
		{"node address as load-balancer IP, denied", proxy.TCP, ip("198.51.100.7"), node, 80, proxy.Denied, "lb", nil},
		{"nodePort ignores source ranges", proxy.TCP, ip("198.51.100.7"), node, 30083, proxy.Picked, "lb", anyReady},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 4 {
				be, svc, res := p.PickExternal(tc.proto, tc.client, tc.dst, tc.port)
				if res != tc.res {
					t.Fatalf("PickExternal = %v, want %v", res, tc.res)
				}
				name := ""
				if svc != nil {
					name = svc.Name
				}
				if name != tc.svc {
					t.Errorf("service %q, want %q", name, tc.svc)
				}
				if tc.backend != nil && !tc.backend(be) {
					t.Errorf("backend %v not allowed here", be)
				}
			}
		})
	}
}

func anyReady(a netip.AddrPort) bool {
	return slices.Contains([]netip.AddrPort{ap("10.244.0.2:8080"), ap("10.244.1.2:8080"), ap("10.244.1.3:8080")}, a)
}

func isLocal(a netip.AddrPort) bool { return a == ap("10.244.0.2:8080") }

func TestExternalSource(t *testing.T) {
	local := &proxy.Service{ExternalLocal: true}
	cluster := &proxy.Service{}
	for _, tc := range []struct {
		svc    *proxy.Service
		client netip.Addr
		want   netip.Addr
	}{
		{cluster, ip("198.51.100.7"), netip.Addr{}},
		{local, ip("198.51.100.7"), ip("198.51.100.7")},
		{local, ip("::ffff:198.51.100.7"), ip("198.51.100.7")},
		{local, ip("192.168.1.20"), ip("192.168.1.20")},
		{local, ip("127.0.0.1"), netip.Addr{}},
		{local, ip("127.0.5.9"), netip.Addr{}},
		{local, ip("0.0.0.0"), netip.Addr{}},
		{local, ip("169.254.1.1"), netip.Addr{}},
		{local, ip("224.0.0.1"), netip.Addr{}},
		{local, ip("255.255.255.255"), netip.Addr{}},
		{local, ip("::1"), netip.Addr{}},
		{local, ip("fe80::1"), netip.Addr{}},
		{local, netip.Addr{}, netip.Addr{}},
	} {
		if got := proxy.ExternalSource(tc.svc, tc.client); got != tc.want {
			t.Errorf("ExternalSource(ExternalLocal=%v, %v) = %v, want %v", tc.svc.ExternalLocal, tc.client, got, tc.want)
		}
	}
}

func TestUpdateRemovedUDP(t *testing.T) {
	dns := func(eps ...proxy.Endpoint) proxy.Service {
		return proxy.Service{Namespace: "kube-system", Name: "dns", ClusterIP: ip("10.96.0.10"), Ports: []proxy.Port{
			{Name: "dns", Protocol: proxy.UDP, Port: 53, Endpoints: eps},
			{Name: "dns-tcp", Protocol: proxy.TCP, Port: 53, Endpoints: []proxy.Endpoint{ep("10.244.0.7:53", "node-a", true, true)}},
		}}
	}
	other := func(eps ...proxy.Endpoint) proxy.Service {
		return proxy.Service{Namespace: "default", Name: "syslog", ClusterIP: ip("10.96.0.20"), Ports: []proxy.Port{
			{Protocol: proxy.UDP, Port: 514, Endpoints: eps},
		}}
	}
	a := ep("10.244.0.2:53", "node-a", true, true)
	b := ep("10.244.1.2:53", "node-b", false, true)
	c := ep("10.244.1.3:53", "node-b", false, true)
	bUnready := b
	bUnready.Ready = false
	udpOnly := dns(a)
	udpOnly.Ports = udpOnly.Ports[:1]
	p := proxy.New(proxy.Options{})
	steps := []struct {
		name string
		svcs []proxy.Service
		want []netip.AddrPort
	}{
		{"first table", []proxy.Service{dns(a, b, c)}, nil},
		{"same again", []proxy.Service{dns(a, b, c)}, nil},
		{"b unready, c deleted", []proxy.Service{dns(a, bUnready)}, []netip.AddrPort{b.Addr, c.Addr}},
		{"b ready, also behind another Service", []proxy.Service{dns(a, b), other(b)}, nil},
		{"b leaves dns but stays ready in syslog", []proxy.Service{dns(a), other(b)}, nil},
		{"TCP port and syslog deleted: only the UDP endpoint is reported", []proxy.Service{udpOnly}, []netip.AddrPort{b.Addr}},
		{"Service deleted", nil, []netip.AddrPort{a.Addr}},
	}
	for _, s := range steps {
		if got := p.Update(s.svcs); !slices.Equal(got, s.want) {
			t.Errorf("%s: Update removed %v, want %v", s.name, got, s.want)
		}
	}
}

func TestPickDuringUpdates(t *testing.T) {
	// Run with -race: Pick, PickExternal and Update concurrently.
	clk := newClock()
	p := proxy.New(proxy.Options{Now: clk.Now, MaxAffinity: 64})
	aff := web()
	aff.Name, aff.ClusterIP, aff.AffinityTimeout = "aff", ip("10.96.0.11"), time.Second
	aff.Ports[0].NodePort = 30081
	p.Update([]proxy.Service{web(), aff})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				client := netip.AddrFrom4([4]byte{10, 244, byte(g), byte(i)})
				if _, r := p.Pick(proxy.TCP, client, ip("10.96.0.10"), 80); r != proxy.Picked {
					t.Errorf("Pick = %v", r)
					return
				}
				if _, r := p.Pick(proxy.TCP, client, ip("10.96.0.11"), 80); r != proxy.Picked {
					t.Errorf("Pick with affinity = %v", r)
					return
				}
				p.PickExternal(proxy.TCP, client, ip("127.0.0.1"), 30081)
			}
		})
	}
	for range 200 {
		clk.Advance(100 * time.Millisecond)
		p.Update([]proxy.Service{web(), aff})
	}
	close(stop)
	wg.Wait()
}
