package stack_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"

	"github.com/podnet/podnet/stack"
	"github.com/podnet/podnet/stack/stacktest"
)

// fakeFilter isolates the pods in ingress/egress and allows the flows in allow:
// "src->dst:port/proto/dir" keys with addresses only (src port ignored).
type fakeFilter struct {
	ingress, egress map[netip.Addr]bool
	mu              sync.Mutex
	allow           map[flowKey]bool
	asked           []flowKey
}

type flowKey struct {
	src, dst netip.Addr
	port     uint16
	proto    uint8
	egress   bool
}

func (f *fakeFilter) Isolated(a netip.Addr) (bool, bool) { return f.ingress[a], f.egress[a] }

func (f *fakeFilter) Allow(proto uint8, src, dst netip.AddrPort, egress bool) (bool, uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := flowKey{src.Addr(), dst.Addr(), dst.Port(), proto, egress}
	f.asked = append(f.asked, k)
	if f.allow[k] {
		return true, 1
	}
	return false, 2
}

func dialFails(t *testing.T, dial func() error) {
	t.Helper()
	if err := dial(); err == nil {
		t.Error("connection admitted; want it dropped")
	}
}

func TestPolicyTCPIngress(t *testing.T) {
	nodes, _ := newNodesWith(t, 2, nil)
	a := addNodePod(t, nodes[0], nodes[0].host(10), true)
	b := addNodePod(t, nodes[0], nodes[0].host(20), true)
	c := addNodePod(t, nodes[1], nodes[1].host(30), true)
	f := &fakeFilter{
		ingress: map[netip.Addr]bool{b.IP: true},
		allow:   map[flowKey]bool{{a.IP, b.IP, 80, 6, false}: true, {c.IP, b.IP, 80, 6, false}: true},
	}
	nodes[0].SetFilter(f)
	for _, port := range []uint16{80, 81} {
		ln, err := b.Greet(port, []byte("hi"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
	}
	try := func(from *podDialer, port uint16) error {
		c, err := from.dial(timeout(t, 300*time.Millisecond), netip.AddrPortFrom(b.IP, port))
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := try(&podDialer{a.DialTCP}, 80); err != nil {
		t.Errorf("allowed same-node connection: %v", err)
	}
	if err := try(&podDialer{c.DialTCP}, 80); err != nil {
		t.Errorf("allowed cross-node connection (judged at the destination's node): %v", err)
	}
	dialFails(t, func() error { return try(&podDialer{a.DialTCP}, 81) })
	if st := nodes[0].Stats(); st.PolicyDenied == 0 {
		t.Errorf("PolicyDenied = 0 after a denied SYN")
	}
	// NodePort-style dials into the isolated pod are judged too.
	if _, err := nodes[0].DialTCP(timeout(t, time.Second), netip.Addr{}, netip.AddrPortFrom(b.IP, 80)); !errors.Is(err, stack.ErrPolicyDenied) {
		t.Errorf("DialTCP from the gateway to an isolated pod: %v, want ErrPolicyDenied", err)
	}
	// Removing the filter lets everything in.
	nodes[0].SetFilter(nil)
	if err := try(&podDialer{a.DialTCP}, 81); err != nil {
		t.Errorf("without a filter: %v", err)
	}
}

// TestPolicyUDPStateful: the server is isolated for egress and allows nothing out, yet the
// answers to an admitted flow pass; a flow it did not admit is dropped.
func TestPolicyUDPStateful(t *testing.T) {
	s := newStack(t, nil)
	a := addPod(t, s, podA, false)
	b := addPod(t, s, podB, false)
	podC := netip.MustParseAddr("10.244.1.30")
	c := addPod(t, s, podC, false)
	f := &fakeFilter{
		ingress: map[netip.Addr]bool{podB: true},
		egress:  map[netip.Addr]bool{podB: true},
		allow:   map[flowKey]bool{{podA, podB, 53, 17, false}: true},
	}
	s.SetFilter(f)
	srv, err := b.ListenUDP(53)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go echoFrom(srv)
	u, err := a.DialUDP(netip.AddrPortFrom(podB, 53))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if got := udpRoundTrip(t, u, "q"); got != podA.String()+" q" {
		t.Errorf("answer %q", got)
	}
	uc, err := c.DialUDP(netip.AddrPortFrom(podB, 53))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.SetDeadline(time.Now().Add(300 * time.Millisecond))
	uc.Write([]byte("q"))
	if n, err := uc.Read(make([]byte, 100)); err == nil {
		t.Errorf("a denied UDP flow got an answer (%d bytes)", n)
	}
}

// TestPolicyService: a Service flow is judged against the backend it was translated to.
func TestPolicyService(t *testing.T) {
	vip := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.60"), 80)
	lb := newFakeBalancer()
	s := newStack(t, withServices(lb))
	a := addPod(t, s, podA, false)
	b := addPod(t, s, podB, false)
	lb.set(vip, netip.AddrPortFrom(podB, 8080))
	ln, err := b.Greet(8080, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f := &fakeFilter{ingress: map[netip.Addr]bool{podB: true}, allow: map[flowKey]bool{}}
	s.SetFilter(f)
	dialFails(t, func() error {
		c, err := a.DialTCP(timeout(t, 300*time.Millisecond), vip)
		if err == nil {
			c.Close()
		}
		return err
	})
	f.mu.Lock()
	asked := f.asked
	f.mu.Unlock()
	if len(asked) == 0 || asked[0] != (flowKey{podA, podB, 8080, 6, false}) {
		t.Errorf("the filter was asked %v; want the backend's address and port", asked)
	}
	f.mu.Lock()
	f.allow[flowKey{podA, podB, 8080, 6, false}] = true
	f.mu.Unlock()
	c, err := a.DialTCP(timeout(t, 5*time.Second), vip)
	if err != nil {
		t.Fatalf("allowed Service connection: %v", err)
	}
	c.Close()
}

// podDialer wraps a pod's DialTCP.
type podDialer struct {
	d func(context.Context, netip.AddrPort) (*gonet.TCPConn, error)
}

func (p *podDialer) dial(ctx context.Context, dst netip.AddrPort) (*gonet.TCPConn, error) {
	return p.d(ctx, dst)
}

// TestPolicyUDPRepliesToIsolatedClient: the client is isolated for ingress, the server not at all;
// the server's answers are replies and must pass (on one node and across nodes), and so must the
// answers of a server isolated only for egress.
func TestPolicyUDPRepliesToIsolatedClient(t *testing.T) {
	nodes, _ := newNodesWith(t, 2, nil)
	client := addNodePod(t, nodes[0], nodes[0].host(10), false)
	local := addNodePod(t, nodes[0], nodes[0].host(20), false)
	remote := addNodePod(t, nodes[1], nodes[1].host(30), false)
	egressOnly := addNodePod(t, nodes[1], nodes[1].host(40), false)
	iso := &fakeFilter{
		ingress: map[netip.Addr]bool{client.IP: true},
		egress:  map[netip.Addr]bool{egressOnly.IP: true},
		allow:   map[flowKey]bool{},
	}
	nodes[0].SetFilter(iso)
	nodes[1].SetFilter(iso)
	for _, srv := range []*stacktest.Pod{local, remote, egressOnly} {
		c, err := srv.ListenUDP(53)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go echoFrom(c)
		u, err := client.DialUDP(netip.AddrPortFrom(srv.IP, 53))
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		if got := udpRoundTrip(t, u, "q"); got != client.IP.String()+" q" {
			t.Errorf("answer from %v: %q", srv.IP, got)
		}
	}
}
