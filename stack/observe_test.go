package stack_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/podnet/podnet/stack"
	"github.com/podnet/podnet/stack/stacktest"
)

// flowRecorder collects a Stack's flows.
type flowRecorder struct {
	mu  sync.Mutex
	evs []stack.FlowEvent
}

func (r *flowRecorder) observe(ev *stack.FlowEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, *ev)
}

// matching returns the flows to dst (port 0: any) of protocol proto.
func (r *flowRecorder) matching(proto uint8, dst netip.AddrPort) []stack.FlowEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []stack.FlowEvent
	for _, ev := range r.evs {
		if ev.Proto == proto && ev.Dst.Addr() == dst.Addr() && (dst.Port() == 0 || ev.Dst.Port() == dst.Port()) {
			out = append(out, ev)
		}
	}
	return out
}

// settled returns the flows to dst of protocol proto once there are want of them, or what
// there is after 2 s: a flow is told after its first packet is on its way, so its answer can
// reach the client first.
func (r *flowRecorder) settled(proto uint8, dst netip.AddrPort, want int) []stack.FlowEvent {
	deadline := time.Now().Add(2 * time.Second)
	for {
		evs := r.matching(proto, dst)
		if len(evs) >= want || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(time.Millisecond)
	}
}

// acceptAndClose serves port of p: it accepts connections and closes them.
func acceptAndClose(t *testing.T, p *stacktest.Pod, port uint16) {
	t.Helper()
	ln, err := p.Greet(port, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
}

// TestFlowObserver: every new flow is told once, with what the data path decided: the
// Filter's verdicts on each side it judged, the Service translation, a Service without
// endpoints; a flow across nodes is seen leaving one node and arriving at the other.
func TestFlowObserver(t *testing.T) {
	nodes, _ := newNodesWith(t, 2, nil)
	a := addNodePod(t, nodes[0], nodes[0].host(10), true)
	b := addNodePod(t, nodes[0], nodes[0].host(20), true)
	c := addNodePod(t, nodes[1], nodes[1].host(30), true)
	var rec0, rec1 flowRecorder
	nodes[0].SetFlowObserver(rec0.observe)
	nodes[1].SetFlowObserver(rec1.observe)
	f := &fakeFilter{
		ingress: map[netip.Addr]bool{b.IP: true},
		allow:   map[flowKey]bool{{a.IP, b.IP, 80, 6, false}: true, {c.IP, b.IP, 80, 6, false}: true, {a.IP, b.IP, 53, 17, false}: true},
	}
	nodes[0].SetFilter(f)
	acceptAndClose(t, b, 80)
	for _, from := range []*podDialer{{a.DialTCP}, {c.DialTCP}} {
		conn, err := from.dial(timeout(t, 5*time.Second), netip.AddrPortFrom(b.IP, 80))
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	// A denied SYN, sent again and again by the client: one flow.
	dialFails(t, func() error {
		conn, err := a.DialTCP(timeout(t, 1500*time.Millisecond), netip.AddrPortFrom(b.IP, 81))
		if err == nil {
			conn.Close()
		}
		return err
	})
	// UDP: many datagrams, one flow.
	srv, err := b.ListenUDP(53)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go echoFrom(srv)
	u, err := a.DialUDP(netip.AddrPortFrom(b.IP, 53))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for range 3 {
		udpRoundTrip(t, u, "q")
	}

	tcp80 := rec0.matching(6, netip.AddrPortFrom(b.IP, 80))
	var local, fromOverlay []stack.FlowEvent
	for _, ev := range tcp80 {
		switch {
		case ev.Src.Addr() == a.IP && ev.Point == stack.FlowFromPod:
			local = append(local, ev)
		case ev.Src.Addr() == c.IP && ev.Point == stack.FlowFromOverlay:
			fromOverlay = append(fromOverlay, ev)
		default:
			t.Errorf("unexpected flow %+v", ev)
		}
	}
	for name, evs := range map[string][]stack.FlowEvent{"same node": local, "from the other node": fromOverlay} {
		if len(evs) != 1 {
			t.Errorf("%s: %d flows to b:80, want 1: %+v", name, len(evs), evs)
			continue
		}
		ev := evs[0]
		if ev.Verdict != stack.FlowForwarded || !ev.IngressJudged || ev.EgressJudged || ev.IngressDecider != 1 || ev.Filter == nil {
			t.Errorf("%s: %+v; want forwarded, judged for ingress by the fake filter (decider 1)", name, ev)
		}
	}
	if evs := rec1.matching(6, netip.AddrPortFrom(b.IP, 80)); len(evs) != 1 || evs[0].Point != stack.FlowFromPod ||
		evs[0].Verdict != stack.FlowForwarded || evs[0].IngressJudged || evs[0].Time.IsZero() {
		t.Errorf("the client's node told %+v; want one flow leaving its pod, not judged there", evs)
	}
	if evs := rec0.matching(6, netip.AddrPortFrom(b.IP, 81)); len(evs) != 1 || evs[0].Verdict != stack.FlowDenied ||
		evs[0].DeniedEgress || evs[0].IngressDecider != 2 {
		t.Errorf("denied flow: %+v; want one flow, denied for ingress (decider 2)", evs)
	}
	if evs := rec0.matching(17, netip.AddrPortFrom(b.IP, 53)); len(evs) != 1 || evs[0].Verdict != stack.FlowForwarded {
		t.Errorf("UDP: %+v; want one forwarded flow", evs)
	}
}

// TestFlowObserverService: a Service flow is told with the Service's address and the backend
// it got; a Service port without endpoints is told as refused.
func TestFlowObserverService(t *testing.T) {
	vip := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.60"), 80)
	empty := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.61"), 80)
	lb := newFakeBalancer()
	s := newStack(t, withServices(lb))
	a := addPod(t, s, podA, false)
	b := addPod(t, s, podB, false)
	var rec flowRecorder
	s.SetFlowObserver(rec.observe)
	lb.set(vip, netip.AddrPortFrom(podB, 8080))
	lb.set(empty)
	acceptAndClose(t, b, 8080)
	conn, err := a.DialTCP(timeout(t, 5*time.Second), vip)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if _, err := a.DialTCP(timeout(t, 2*time.Second), empty); err == nil {
		t.Error("a Service without endpoints accepted a connection")
	}
	if evs := rec.settled(6, netip.AddrPortFrom(podB, 8080), 1); len(evs) != 1 || evs[0].Service != vip ||
		evs[0].Src.Addr() != podA || evs[0].Verdict != stack.FlowForwarded || evs[0].Filter != nil {
		t.Errorf("Service flow: %+v; want one, from a, through %v, forwarded, not judged", evs, vip)
	}
	if evs := rec.settled(6, empty, 1); len(evs) != 1 || evs[0].Verdict != stack.FlowNoEndpoint || evs[0].Service != empty {
		t.Errorf("flow to a Service without endpoints: %+v; want one, no-endpoint", evs)
	}
}

// captured is a packet a capture saw.
type captured struct {
	pkt []byte
	in  bool
}

type captureRecorder struct {
	mu   sync.Mutex
	pkts []captured
}

func (r *captureRecorder) capture(pkt []byte, in bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pkts = append(r.pkts, captured{slices.Clone(pkt), in})
}

func (r *captureRecorder) all() []captured {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pkts)
}

// checkIPv4TCP checks that ip is a whole IPv4 packet of at most mtu bytes with correct header
// and TCP checksums, and returns its TCP payload length.
func checkIPv4TCP(t *testing.T, ip []byte, mtu int) int {
	t.Helper()
	h := header.IPv4(ip)
	if !h.IsValid(len(ip)) || int(h.TotalLength()) != len(ip) || len(ip) > mtu {
		t.Fatalf("captured packet: bad IPv4 header or longer than %d (%d bytes)", mtu, len(ip))
	}
	if h.CalculateChecksum() != 0xffff {
		t.Errorf("captured packet: bad IPv4 header checksum")
	}
	if h.TransportProtocol() != header.TCPProtocolNumber {
		return -1
	}
	tcp := header.TCP(h.Payload())
	pseudo := header.PseudoHeaderChecksum(header.TCPProtocolNumber, h.SourceAddress(), h.DestinationAddress(), uint16(len(tcp)))
	if checksum.Checksum(tcp, pseudo) != 0xffff {
		t.Errorf("captured TCP segment %v > %v: bad checksum", h.SourceAddress(), h.DestinationAddress())
	}
	return len(tcp) - int(tcp.DataOffset())
}

// uniquePayload adds up the payload of TCP segments, once for each sequence number: a segment
// sent again (a retransmission) counts once.
type uniquePayload struct {
	seen  map[uint32]bool
	bytes int
}

// add counts the segment ip, with n bytes of payload.
func (u *uniquePayload) add(ip header.IPv4, n int) {
	seq := header.TCP(ip.Payload()).SequenceNumber()
	if n <= 0 || u.seen[seq] {
		return
	}
	if u.seen == nil {
		u.seen = map[uint32]bool{}
	}
	u.seen[seq] = true
	u.bytes += n
}

// TestCapturePod: a capture of a pod sees its frames both ways, GSO super-frames as
// segments of at most the MTU with complete checksums, and every byte of the payload; it sees
// nothing after it stopped.
func TestCapturePod(t *testing.T) {
	s := newStack(t, nil)
	a := addPod(t, s, podA, true)
	b := addPod(t, s, podB, true)
	if _, err := s.CapturePod(netip.MustParseAddr("10.244.1.99"), func([]byte, bool) {}); err == nil {
		t.Error("a capture of an address no pod has started")
	}
	var rec captureRecorder
	stop, err := s.CapturePod(podB, rec.capture)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := b.ListenTCP(80)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		got <- int(n)
	}()
	conn, err := a.DialTCP(timeout(t, 5*time.Second), netip.AddrPortFrom(podB, 80))
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 20
	if _, err := conn.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if n := <-got; n != size {
		t.Fatalf("server got %d bytes, want %d", n, size)
	}
	stop()
	pkts := rec.all()
	var toB uniquePayload
	fromB, syn := 0, false
	for _, p := range pkts {
		if len(p.pkt) < 14 || binary.BigEndian.Uint16(p.pkt[12:]) != uint16(header.IPv4ProtocolNumber) {
			continue
		}
		ip := header.IPv4(p.pkt[14:])
		n := checkIPv4TCP(t, ip, stack.DefaultMTU)
		switch {
		case !p.in && ip.DestinationAddress() == tcpip.AddrFrom4(podB.As4()):
			toB.add(ip, n)
			syn = syn || header.TCP(ip.Payload()).Flags() == header.TCPFlagSyn
		case p.in && ip.SourceAddress() == tcpip.AddrFrom4(podB.As4()):
			fromB += n
		}
	}
	if toB.bytes != size || !syn {
		t.Errorf("capture saw %d payload bytes to b (SYN seen: %v), want %d", toB.bytes, syn, size)
	}
	if fromB != 0 {
		t.Errorf("capture saw %d payload bytes from b, want 0 (it only acknowledged)", fromB)
	}
	// A connection made after the capture stopped is not in it. (The last packets of the first
	// connection may be: a reader that took a frame before stop may still hand it over.)
	conn2, err := a.DialTCP(timeout(t, 5*time.Second), netip.AddrPortFrom(podB, 80))
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(conn2.LocalAddr().(*net.TCPAddr).Port)
	conn2.Close()
	time.Sleep(50 * time.Millisecond)
	for _, p := range rec.all() {
		if len(p.pkt) < 14 || binary.BigEndian.Uint16(p.pkt[12:]) != uint16(header.IPv4ProtocolNumber) {
			continue
		}
		ip := header.IPv4(p.pkt[14:])
		if tcp := header.TCP(ip.Payload()); tcp.SourcePort() == port || tcp.DestinationPort() == port {
			t.Errorf("a packet of a connection made after the capture stopped was captured")
			break
		}
	}
}

// TestCaptureOverlay: a capture of the overlay sees the inner packets both ways, each a valid
// IPv4 packet of at most the overlay's MTU.
func TestCaptureOverlay(t *testing.T) {
	nodes, _ := newNodesWith(t, 2, nil)
	a := addNodePod(t, nodes[0], nodes[0].host(10), true)
	c := addNodePod(t, nodes[1], nodes[1].host(30), true)
	var rec captureRecorder
	stop := nodes[0].CaptureOverlay(rec.capture)
	defer stop()
	ln, err := c.ListenTCP(80)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan int, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- -1
			return
		}
		n, _ := io.Copy(io.Discard, conn)
		conn.Close()
		done <- int(n)
	}()
	conn, err := a.DialTCP(timeout(t, 5*time.Second), netip.AddrPortFrom(c.IP, 80))
	if err != nil {
		t.Fatal(err)
	}
	const size = 256 << 10
	conn.Write(make([]byte, size))
	conn.Close()
	if n := <-done; n != size {
		t.Fatalf("server got %d bytes", n)
	}
	var out uniquePayload
	in := 0
	for _, p := range rec.all() {
		n := checkIPv4TCP(t, p.pkt, overlayMTU)
		if p.in {
			in++
		} else {
			out.add(header.IPv4(p.pkt), n)
		}
	}
	if out.bytes != size || in == 0 {
		t.Errorf("overlay capture: %d payload bytes out (want %d), %d packets in (want some)", out.bytes, size, in)
	}
}

// TestRepliesAreNoNewFlows: a UDP server's answers belong to its clients' flows, so a server that
// answers more clients a second than its own bound loses none of its answers.
func TestRepliesAreNoNewFlows(t *testing.T) {
	s := newStack(t, func(o *stack.Options) { o.MaxNewFlowsPerPod = 4 })
	podC := netip.MustParseAddr("10.244.1.30")
	a := addFramePort(t, s, podA)
	b := addFramePort(t, s, podB)
	c := addFramePort(t, s, podC)
	ctx := timeout(t, 10*time.Second)
	server := netip.AddrPortFrom(podB, 53)
	var clients []netip.AddrPort
	for _, cl := range []struct {
		port *stacktest.FramePort
		ip   netip.Addr
	}{{a, podA}, {c, podC}} {
		for port := range uint16(4) { // each client within its own bound
			from := netip.AddrPortFrom(cl.ip, 1000+port)
			cl.port.Send(ctx, stack.UDPFrame(from, server, gateway, 64, []byte("q")))
			if _, err := b.Next(ctx); err != nil {
				t.Fatalf("query from %v: %v", from, err)
			}
			clients = append(clients, from)
		}
	}
	// Eight answers, twice the server's bound.
	for _, to := range clients {
		b.Send(ctx, stack.UDPFrame(server, to, gateway, 64, []byte("a")))
	}
	for range 4 {
		if _, err := a.Next(ctx); err != nil {
			t.Fatalf("an answer to %v did not arrive: %v", podA, err)
		}
		if _, err := c.Next(ctx); err != nil {
			t.Fatalf("an answer to %v did not arrive: %v", podC, err)
		}
	}
	if st := s.Stats(); st.DroppedNewFlows != 0 {
		t.Errorf("DroppedNewFlows = %d, want 0", st.DroppedNewFlows)
	}
}

// TestFloodRest: after a frame its pod should not have sent (a new flow beyond the bound, a spoofed
// source, a tiny fragment) the pod's reader rests before it reads the next, so a flood waits in the
// pod's own queue instead of costing the agent a read a frame; the frames behind it pass after the
// rest, and a pod that sends nothing wrong never makes its reader rest.
func TestFloodRest(t *testing.T) {
	s := newStack(t, func(o *stack.Options) { o.MaxNewFlowsPerPod = 2 })
	rests := make(chan time.Duration)
	resume := make(chan struct{})
	s.SetRest(func(d time.Duration) {
		rests <- d
		<-resume
	})
	a := addFramePort(t, s, podA)
	b := addFramePort(t, s, podB)
	ctx := timeout(t, 10*time.Second)
	udp := func(port uint16) []byte {
		return stack.UDPFrame(netip.AddrPortFrom(podA, port), netip.AddrPortFrom(podB, 9), gateway, 64, []byte("x"))
	}
	// Two new flows pass, and their next datagrams: nothing rests.
	for _, port := range []uint16{1, 2, 1, 2} {
		a.Send(ctx, udp(port))
		if _, err := b.Next(ctx); err != nil {
			t.Fatalf("datagram from port %d: %v", port, err)
		}
	}
	bad := map[string][]byte{
		"a third new flow": udp(3),
		"a spoofed source": stack.ICMPEchoFrame(podB, podA, gateway),
		"a tiny fragment":  stack.FragmentFrames(udp(1), 8)[0],
	}
	for what, f := range bad {
		a.Send(ctx, f)
		a.Send(ctx, udp(1)) // a known flow's datagram behind it
		select {
		case d := <-rests:
			if d != stack.FloodRest {
				t.Errorf("after %s the reader rested %v, want %v", what, d, stack.FloodRest)
			}
		case <-ctx.Done():
			t.Fatalf("after %s the reader did not rest", what)
		}
		expectNoFrame(t, b) // the datagram behind waits while the reader rests
		resume <- struct{}{}
		if _, err := b.Next(ctx); err != nil {
			t.Fatalf("the datagram behind %s: %v", what, err)
		}
	}
	if st := s.Stats(); st.DroppedNewFlows != 1 || st.DroppedSpoofed != 1 || st.DroppedTinyFragments != 1 {
		t.Errorf("dropped: %d new flows, %d spoofed, %d tiny fragments; want 1 each", st.DroppedNewFlows, st.DroppedSpoofed, st.DroppedTinyFragments)
	}
}

// countFrames reads the frames that reach p until none comes for 200 ms, and counts them.
func countFrames(ctx context.Context, p *stacktest.FramePort) int {
	n := 0
	for {
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := p.Next(short)
		cancel()
		if err != nil {
			return n
		}
		n++
	}
}

// TestDisowningResetsCount: a TCP reset without ACK, what a pod's kernel answers to the SYN-ACK of
// a SYN it did not send, counts against the pod's bound on new flows like a SYN, and is never
// dropped; a reset with ACK (a refused or aborted connection) does not count.
func TestDisowningResetsCount(t *testing.T) {
	s := newStack(t, func(o *stack.Options) { o.MaxNewFlowsPerPod = 4 })
	s.SetRest(func(time.Duration) {})
	a := addFramePort(t, s, podA)
	b := addFramePort(t, s, podB)
	ctx := timeout(t, 10*time.Second)
	tcp := func(port uint16, flags uint8) []byte {
		return stack.TCPFrame(netip.AddrPortFrom(podA, port), netip.AddrPortFrom(podB, 80), gateway, flags)
	}
	// Each second of the Stack's clock starts a new count: try until the whole sequence falls
	// within one second.
	for try := 0; ; try++ {
		if try == 5 {
			t.Fatal("no try fell within one second of the Stack's clock")
		}
		before := s.Stats().DroppedNewFlows
		start := s.ClockSecond()
		base := uint16(1000 + 100*try)
		sent := [][]byte{
			tcp(base, stack.TCPSyn), tcp(base, stack.TCPRst), // a forged SYN, disowned: two of four
			tcp(base+1, stack.TCPRst|stack.TCPAck),               // an aborted connection: none
			tcp(base+2, stack.TCPSyn), tcp(base+2, stack.TCPRst), // four of four
			tcp(base+3, stack.TCPRst), // a fifth reset: counted, not dropped
			tcp(base+4, stack.TCPSyn), // a new flow beyond the bound: dropped
		}
		for _, f := range sent {
			a.Send(ctx, f)
		}
		passed := countFrames(ctx, b)
		if s.ClockSecond() != start {
			continue
		}
		if dropped := s.Stats().DroppedNewFlows - before; passed != len(sent)-1 || dropped != 1 {
			t.Errorf("%d of %d segments passed and %d new flows were dropped; want all but the last SYN, beyond two disowned SYNs", passed, len(sent), dropped)
		}
		return
	}
}

// TestNewFlowLimit: a pod that starts more new flows a second than MaxNewFlowsPerPod loses the
// excess where it is read, counted; the datagrams of a flow it has started pass.
func TestNewFlowLimit(t *testing.T) {
	s := newStack(t, func(o *stack.Options) { o.MaxNewFlowsPerPod = 10 })
	a := addFramePort(t, s, podA)
	b := addFramePort(t, s, podB)
	ctx := timeout(t, 10*time.Second)
	for port := range uint16(100) {
		a.Send(ctx, stack.UDPFrame(netip.AddrPortFrom(podA, 1000+port), netip.AddrPortFrom(podB, 53), gateway, 64, []byte("x")))
	}
	got := countFrames(ctx, b)
	// Within one second of the Stack's clock 10 pass; across a second's edge up to 20.
	if got < 10 || got > 20 {
		t.Errorf("%d of 100 new flows passed, want 10 to 20", got)
	}
	if st := s.Stats(); st.DroppedNewFlows != uint64(100-got) {
		t.Errorf("DroppedNewFlows = %d, want %d", st.DroppedNewFlows, 100-got)
	}
	// The first flow is known: its next datagrams are no new flow, whatever the count.
	for range 30 {
		a.Send(ctx, stack.UDPFrame(netip.AddrPortFrom(podA, 1000), netip.AddrPortFrom(podB, 53), gateway, 64, []byte("y")))
	}
	for i := range 30 {
		if _, err := b.Next(ctx); err != nil {
			t.Fatalf("datagram %d of a known flow: %v", i, err)
		}
	}
}
