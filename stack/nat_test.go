package stack_test

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/podnet/podnet/stack"
	"github.com/podnet/podnet/stack/stacktest"
)

// fakeBalancer maps Service addresses to backends, round robin.
type fakeBalancer struct {
	mu       sync.Mutex
	backends map[netip.AddrPort][]netip.AddrPort // guarded by mu
	next     int                                 // guarded by mu
	picks    atomic.Int64
}

func newFakeBalancer() *fakeBalancer {
	return &fakeBalancer{backends: map[netip.AddrPort][]netip.AddrPort{}}
}

func (f *fakeBalancer) set(vip netip.AddrPort, backends ...netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.backends[vip] = backends
}

func (f *fakeBalancer) Pick(proto uint8, client, vip netip.Addr, port uint16) (netip.AddrPort, stack.PickResult) {
	f.picks.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	bs, ok := f.backends[netip.AddrPortFrom(vip, port)]
	if !ok {
		return netip.AddrPort{}, stack.PickNotService
	}
	if len(bs) == 0 {
		return netip.AddrPort{}, stack.PickNoEndpoint
	}
	f.next++
	return bs[f.next%len(bs)], stack.PickBackend
}

var svcPrefix = netip.MustParsePrefix("10.96.0.0/12")

func withServices(b stack.ServiceBalancer) func(*stack.Options) {
	return func(o *stack.Options) {
		o.Services = b
		o.ServicePrefixes = []netip.Prefix{svcPrefix}
	}
}

// transfer sends n bytes from p's connection to dst and returns the reply of
// a sinkServer: the data's hash and the peer address the server saw.
func transfer(t *testing.T, c net.Conn, n int) (sum [32]byte, reply string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	data := testData(n)
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data), string(b)
}

// sendThrough has client send n bytes over TCP to dst, which leads to server's port 8080 (a
// Service address, or the server itself), and checks that the server got them whole and saw
// wantPeer as the client's address.
func sendThrough(t *testing.T, client, server *stacktest.Pod, dst netip.AddrPort, n int, wantPeer netip.Addr) {
	t.Helper()
	ln, err := server.ListenTCP(8080)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := sinkServer(t, ln)
	c, err := client.DialTCP(timeout(t, 10*time.Second), dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().String(); got != dst.String() {
		t.Errorf("client connected to %s, want %s", got, dst)
	}
	sum, reply := transfer(t, c, n)
	if r := <-done; r != "ok" {
		t.Fatal(r)
	}
	if want := fmt.Sprintf("%x %s", sum, wantPeer); reply != want {
		t.Fatalf("backend saw %q, want %q (the data's hash, the client's address)", reply, want)
	}
}

func TestServiceTCPSameNode(t *testing.T) {
	vip := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.50"), 80)
	for _, gso := range []bool{false, true} {
		t.Run(fmt.Sprintf("gso=%v", gso), func(t *testing.T) {
			lb := newFakeBalancer()
			s := newStack(t, withServices(lb))
			a := addPod(t, s, podA, gso)
			b := addPod(t, s, podB, gso)
			lb.set(vip, netip.AddrPortFrom(podB, 8080))
			sendThrough(t, a, b, vip, 2<<20, podA)
			st := s.Stats()
			if st.NATFlows != 1 || st.NATActive != 1 || st.NATPackets < 10 || st.ToStackFrames != 0 {
				t.Errorf("stats %+v: want one flow, all packets translated, none to the netstack", st)
			}
		})
	}
}

func TestServiceCrossNode(t *testing.T) {
	vip := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.51"), 80)
	lb := newFakeBalancer()
	nodes, _ := newNodesWith(t, 2, withServices(lb))
	a := addNodePod(t, nodes[0], nodes[0].host(10), true)
	b := addNodePod(t, nodes[1], nodes[1].host(20), true)
	lb.set(vip, netip.AddrPortFrom(b.IP, 8080))
	sendThrough(t, a, b, vip, 2<<20, a.IP)

	// UDP through the same Service address, to the other node.
	udpVIP := netip.AddrPortFrom(vip.Addr(), 53)
	lb.set(udpVIP, netip.AddrPortFrom(b.IP, 5353))
	srv, err := b.ListenUDP(5353)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go echoFrom(srv)
	u, err := a.DialUDP(udpVIP)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if got := udpRoundTrip(t, u, "hello"); got != a.IP.String()+" hello" {
		t.Errorf("UDP reply %q, want the client's address and the message", got)
	}
	if st := nodes[1].Stats(); st.NATFlows != 0 {
		t.Errorf("the backend's node tracked %d flows; the client's node should", st.NATFlows)
	}
}

// echoFrom answers each datagram on c with "<sender address> <datagram>".
func echoFrom(c net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		ip, _, _ := net.SplitHostPort(from.String())
		c.WriteTo(append([]byte(ip+" "), buf[:n]...), from)
	}
}

func udpRoundTrip(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("UDP %q: %v", msg, err)
	}
	return string(buf[:n])
}

func TestServiceHairpin(t *testing.T) {
	vip := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.52"), 80)
	lb := newFakeBalancer()
	s := newStack(t, withServices(lb))
	a := addPod(t, s, podA, true)
	lb.set(vip, netip.AddrPortFrom(podA, 8080))
	// The pod's kernel drops packets from its own address, so a pod that
	// reaches itself sees the Service address as the client.
	sendThrough(t, a, a, vip, 1<<20, vip.Addr())
}

func TestServiceWithoutEndpointRefused(t *testing.T) {
	vip := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.53"), 80)
	lb := newFakeBalancer()
	s := newStack(t, withServices(lb))
	a := addPod(t, s, podA, false)
	lb.set(vip) // no endpoints
	start := time.Now()
	_, err := a.DialTCP(timeout(t, 5*time.Second), vip)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial %v: %v, want connection refused", vip, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refused after %v, want at once", d)
	}
	if st := s.Stats(); st.NATNoEndpoint != 1 || st.NATActive != 0 || st.Refused != 1 {
		t.Errorf("stats %+v: want one no-endpoint refusal and no entry", st)
	}
}

func TestServiceUDPFlush(t *testing.T) {
	vip := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.54"), 53)
	lb := newFakeBalancer()
	s := newStack(t, withServices(lb))
	a := addPod(t, s, podA, false)
	b := addPod(t, s, podB, false)
	podC := netip.MustParseAddr("10.244.1.30")
	c := addPod(t, s, podC, false)
	for _, srvPod := range []struct {
		ip   netip.Addr
		conn func() (net.PacketConn, error)
	}{
		{podB, func() (net.PacketConn, error) { return b.ListenUDP(5353) }},
		{podC, func() (net.PacketConn, error) { return c.ListenUDP(5353) }},
	} {
		srv, err := srvPod.conn()
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		go echoFrom(srv)
	}
	lb.set(vip, netip.AddrPortFrom(podB, 5353))
	u, err := a.DialUDP(vip)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if got := udpRoundTrip(t, u, "one"); got != podA.String()+" one" {
		t.Fatalf("reply %q", got)
	}
	// B goes away as an endpoint; C takes over. Without the flush the
	// flow would stick to B for its timeout.
	lb.set(vip, netip.AddrPortFrom(podC, 5353))
	if got := udpRoundTrip(t, u, "two"); got != podA.String()+" two" {
		t.Fatalf("reply %q", got)
	}
	if picks := lb.picks.Load(); picks != 1 {
		t.Fatalf("%d picks before the flush, want 1 (the flow is tracked)", picks)
	}
	if n := s.FlushUDPBackends([]netip.AddrPort{netip.AddrPortFrom(podB, 5353)}); n != 1 {
		t.Fatalf("FlushUDPBackends removed %d entries, want 1", n)
	}
	if got := udpRoundTrip(t, u, "three"); got != podA.String()+" three" {
		t.Fatalf("reply %q", got)
	}
	if picks := lb.picks.Load(); picks != 2 {
		t.Errorf("%d picks after the flush, want 2", picks)
	}
	// The reply came from C: its source was translated back all the same;
	// check the entry now points at C.
	if st := s.Stats(); st.NATFlushed != 1 || st.NATActive != 1 {
		t.Errorf("stats %+v", st)
	}
	// Detaching the client removes its entries.
	if err := s.DetachPod(podA); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.NATActive != 0 {
		t.Errorf("NATActive = %d after the client was detached, want 0", st.NATActive)
	}
}

func TestConntrackExpiry(t *testing.T) {
	vip := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.55"), 53)
	lb := newFakeBalancer()
	lb.set(vip, netip.AddrPortFrom(podB, 5353))
	s := newStack(t, withServices(lb))
	pkt := udpPacket(netip.AddrPortFrom(podA, 40000), vip, "x")
	if !s.NATOut(pkt, false) {
		t.Fatal("first datagram not translated")
	}
	if st := s.Stats(); st.NATActive != 1 {
		t.Fatalf("NATActive = %d", st.NATActive)
	}
	s.SweepConntrack(time.Now().Add(10 * time.Second))
	if st := s.Stats(); st.NATActive != 1 {
		t.Fatalf("entry expired after 10 s; an unanswered UDP flow lives 30 s")
	}
	s.SweepConntrack(time.Now().Add(40 * time.Second))
	if st := s.Stats(); st.NATActive != 0 || st.NATExpired != 1 {
		t.Fatalf("stats %+v: want the entry expired", st)
	}
}

func TestConntrackLimit(t *testing.T) {
	vip := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.56"), 53)
	lb := newFakeBalancer()
	lb.set(vip, netip.AddrPortFrom(podB, 5353))
	s := newStack(t, func(o *stack.Options) { withServices(lb)(o); o.MaxConntrack = 3 })
	for i := range 5 {
		ok := s.NATOut(udpPacket(netip.AddrPortFrom(podA, uint16(40000+i)), vip, "x"), false)
		if ok != (i < 3) {
			t.Errorf("flow %d translated: %v; want only the first 3", i, ok)
		}
	}
	if st := s.Stats(); st.NATActive != 3 || st.NATDropped != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestServiceReplyClash: a client reuses one source port for two Services that lead to the same
// backend. The second flow's reply tuple is the first's; it gets another source port, so both
// flows are translated and each reply finds its own flow (the old bug: the second flow's SYNs
// were dropped until the first flow's entry expired).
func TestServiceReplyClash(t *testing.T) {
	vip1 := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.57"), 80)
	vip2 := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.58"), 80)
	backend := netip.AddrPortFrom(podB, 8080)
	lb := newFakeBalancer()
	lb.set(vip1, backend)
	lb.set(vip2, backend)
	s := newStack(t, withServices(lb))
	client := netip.AddrPortFrom(podA, 41000)
	first := tcpPacket(client, vip1, header.TCPFlagSyn, "", false)
	if !s.NATOut(first, false) {
		t.Fatal("first flow not translated")
	}
	second := tcpPacket(client, vip2, header.TCPFlagSyn, "", false)
	if !s.NATOut(second, false) {
		t.Fatal("second flow, same client port, same backend: not translated")
	}
	h1, h2 := header.IPv4(first), header.IPv4(second)
	t1, t2 := header.TCP(h1.Payload()), header.TCP(h2.Payload())
	if got := netip.AddrPortFrom(netip.AddrFrom4(h2.DestinationAddress().As4()), t2.DestinationPort()); got != backend {
		t.Errorf("second flow goes to %v, want %v", got, backend)
	}
	if netip.AddrFrom4(h2.SourceAddress().As4()) != podA {
		t.Errorf("second flow's source %v: the backend must see the client's address", h2.SourceAddress())
	}
	if t1.SourcePort() != 41000 || t2.SourcePort() == 41000 {
		t.Errorf("source ports %d and %d: want the first kept and the second remapped", t1.SourcePort(), t2.SourcePort())
	}
	if !checksumsValid(second) {
		t.Error("bad checksums after the remap")
	}
	// Each reply goes back to the client's own port, from the Service it asked.
	for _, tc := range []struct {
		port uint16
		vip  netip.AddrPort
	}{{t1.SourcePort(), vip1}, {t2.SourcePort(), vip2}} {
		reply := tcpPacket(backend, netip.AddrPortFrom(podA, tc.port), header.TCPFlagSyn|header.TCPFlagAck, "", false)
		if !s.NATReply(reply) {
			t.Fatalf("reply to port %d not translated", tc.port)
		}
		h := header.IPv4(reply)
		th := header.TCP(h.Payload())
		from := netip.AddrPortFrom(netip.AddrFrom4(h.SourceAddress().As4()), th.SourcePort())
		if from != tc.vip || th.DestinationPort() != 41000 || !checksumsValid(reply) {
			t.Errorf("reply to port %d: from %v to port %d; want from %v to 41000", tc.port, from, th.DestinationPort(), tc.vip)
		}
	}
	if st := s.Stats(); st.NATRemapped != 1 || st.NATDropped != 0 || st.NATActive != 2 {
		t.Errorf("stats %+v: want one remapped flow, none dropped, two active", st)
	}
}

// udpPacket returns an IPv4 UDP packet with valid checksums.
func udpPacket(src, dst netip.AddrPort, payload string) []byte {
	ip := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
	header.IPv4(ip).Encode(&header.IPv4Fields{
		TotalLength: uint16(len(ip)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.Addr().As4()), DstAddr: tcpip.AddrFrom4(dst.Addr().As4()),
	})
	header.IPv4(ip).SetChecksum(^header.IPv4(ip).CalculateChecksum())
	u := header.UDP(ip[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(len(u))})
	copy(u.Payload(), payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, header.IPv4(ip).SourceAddress(), header.IPv4(ip).DestinationAddress(), uint16(len(u)))
	u.SetChecksum(^checksum.Checksum(u, xsum))
	return ip
}

// tcpPacket returns an IPv4 TCP packet; partial leaves the pseudo-header sum
// in the checksum field, as a NEEDS_CSUM frame does.
func tcpPacket(src, dst netip.AddrPort, flags header.TCPFlags, payload string, partial bool) []byte {
	ip := make([]byte, header.IPv4MinimumSize+header.TCPMinimumSize+len(payload))
	header.IPv4(ip).Encode(&header.IPv4Fields{
		TotalLength: uint16(len(ip)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.Addr().As4()), DstAddr: tcpip.AddrFrom4(dst.Addr().As4()),
	})
	header.IPv4(ip).SetChecksum(^header.IPv4(ip).CalculateChecksum())
	tc := header.TCP(ip[header.IPv4MinimumSize:])
	tc.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: 1, Flags: flags, DataOffset: header.TCPMinimumSize, WindowSize: 1000})
	copy(tc[header.TCPMinimumSize:], payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, header.IPv4(ip).SourceAddress(), header.IPv4(ip).DestinationAddress(), uint16(len(tc)))
	if partial {
		tc.SetChecksum(xsum)
	} else {
		tc.SetChecksum(^checksum.Checksum(tc, xsum))
	}
	return ip
}

// checksumsValid reports whether ip's header checksum and its complete
// TCP/UDP checksum verify.
func checksumsValid(ip []byte) bool {
	h := header.IPv4(ip)
	if h.CalculateChecksum() != 0xffff {
		return false
	}
	l4 := ip[h.HeaderLength():]
	if h.Protocol() == uint8(header.UDPProtocolNumber) && header.UDP(l4).Checksum() == 0 {
		return true
	}
	xsum := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(h.Protocol()), h.SourceAddress(), h.DestinationAddress(), uint16(len(l4)))
	return checksum.Checksum(l4, xsum) == 0xffff
}

func TestRewriteFlowChecksums(t *testing.T) {
	a := netip.MustParseAddrPort("10.244.1.10:40000")
	v := netip.MustParseAddrPort("10.96.0.10:80")
	b := netip.MustParseAddrPort("10.244.2.20:8080")
	for _, tc := range []struct {
		name    string
		pkt     []byte
		partial bool
	}{
		{"udp", udpPacket(a, v, "hello"), false},
		{"udp-odd", udpPacket(a, v, "hello!!"), false},
		{"tcp", tcpPacket(a, v, header.TCPFlagAck, "some payload", false), false},
		{"tcp-syn", tcpPacket(a, v, header.TCPFlagSyn, "", false), false},
		{"tcp-partial", tcpPacket(a, v, header.TCPFlagAck, "partial payload", true), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ip := tc.pkt
			stack.RewriteFlow(ip, header.IPv4MinimumSize, tc.partial, a.Addr().As4(), b.Addr().As4(), a.Port(), b.Port())
			h := header.IPv4(ip)
			if h.DestinationAddress() != tcpip.AddrFrom4(b.Addr().As4()) || binary.BigEndian.Uint16(ip[22:]) != b.Port() {
				t.Fatalf("destination not rewritten: % x", ip[:24])
			}
			if tc.partial {
				// The field must be the pseudo-header sum of the new addresses.
				tcp := header.TCP(ip[header.IPv4MinimumSize:])
				want := header.PseudoHeaderChecksum(header.TCPProtocolNumber, h.SourceAddress(), h.DestinationAddress(), uint16(len(tcp)))
				if tcp.Checksum() != want {
					t.Fatalf("partial checksum %#x, want %#x", tcp.Checksum(), want)
				}
				tcp.SetChecksum(^checksum.Checksum(tcp, 0)) // complete it, as the pod's kernel does
			}
			if !checksumsValid(ip) {
				t.Fatal("checksums invalid after the rewrite")
			}
		})
	}
}

func FuzzRewriteFlow(f *testing.F) {
	f.Add([]byte{10, 244, 1, 10}, []byte{10, 96, 0, 1}, uint16(1000), uint16(80), "data", false)
	f.Fuzz(func(t *testing.T, src, dst []byte, sport, dport uint16, payload string, useUDP bool) {
		if len(src) < 4 || len(dst) < 4 {
			return
		}
		s := netip.AddrPortFrom(netip.AddrFrom4([4]byte(src)), sport)
		d := netip.AddrPortFrom(netip.AddrFrom4([4]byte(dst)), dport)
		pkt := tcpPacket(s, d, header.TCPFlagAck, payload, false)
		if useUDP {
			pkt = udpPacket(s, d, payload)
		}
		stack.RewriteFlow(pkt, header.IPv4MinimumSize, false, [4]byte(dst), [4]byte(src), dport, sport)
		if !checksumsValid(pkt) {
			t.Fatalf("checksums invalid after rewriting %v→%v", s, d)
		}
	})
}

// An ICMP echo to a Service address is not translated (and is dropped).
func TestServiceICMPNotTranslated(t *testing.T) {
	lb := newFakeBalancer()
	lb.set(netip.AddrPortFrom(netip.MustParseAddr("10.96.0.57"), 80), netip.AddrPortFrom(podB, 80))
	s := newStack(t, withServices(lb))
	a := addPod(t, s, podA, false)
	if err := a.Ping(timeout(t, 200*time.Millisecond), netip.MustParseAddr("10.96.0.57"), 1); err == nil {
		t.Error("ping to a Service address was answered")
	}
	if lb.picks.Load() != 0 {
		t.Error("an ICMP packet asked for a backend")
	}
	_ = errors.New
}

// constBalancer answers every pick with one backend, without locks: the
// benchmarks measure the data path, not a balancer.
type constBalancer netip.AddrPort

func (b constBalancer) Pick(uint8, netip.Addr, netip.Addr, uint16) (netip.AddrPort, stack.PickResult) {
	return netip.AddrPort(b), stack.PickBackend
}

// BenchmarkNATNewFlow is the data path's cost of a new flow to a Service:
// the lookup that misses, the pick, the entry's insertion under two keys and
// the rewrite.
func BenchmarkNATNewFlow(b *testing.B) {
	s, err := stack.New(stack.Options{PodCIDR: podCIDR, Gateway: gateway, ClusterPrefixes: clusters,
		Services: constBalancer(netip.AddrPortFrom(podB, 8080)), ServicePrefixes: []netip.Prefix{svcPrefix}, MaxConntrack: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	vip := netip.MustParseAddrPort("10.96.0.10:53")
	tmpl := udpPacket(netip.AddrPortFrom(podA, 1), vip, "query")
	pkt := make([]byte, len(tmpl))
	// A client may hold a thirty-second of the table unanswered (1<<20/32 = 32,768 flows), so
	// a new client comes every 16,384 flows; every 131,072 flows, all of them expire.
	const perClient, perSweep = 16384, 8 * 16384
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%perSweep == 0 && i > 0 {
			b.StopTimer()
			s.SweepConntrack(time.Now().Add(time.Duration(i/perSweep) * time.Hour)) // every entry has expired
			b.StartTimer()
		}
		copy(pkt, tmpl)
		src := podA.As4()
		src[2] = byte(i / perClient)
		copy(pkt[12:16], src[:])
		binary.BigEndian.PutUint16(pkt[20:], uint16(1+i%perClient))
		if !s.NATOut(pkt, false) {
			b.Fatal("not translated")
		}
	}
}

// BenchmarkNATEstablished is the per-packet cost of a tracked flow: one
// lookup and the rewrite.
func BenchmarkNATEstablished(b *testing.B) {
	s, err := stack.New(stack.Options{PodCIDR: podCIDR, Gateway: gateway, ClusterPrefixes: clusters,
		Services: constBalancer(netip.AddrPortFrom(podB, 8080)), ServicePrefixes: []netip.Prefix{svcPrefix}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tmpl := udpPacket(netip.AddrPortFrom(podA, 40000), netip.MustParseAddrPort("10.96.0.10:53"), "query")
	pkt := make([]byte, len(tmpl))
	copy(pkt, tmpl)
	s.NATOut(pkt, false)
	b.ReportAllocs()
	for b.Loop() {
		copy(pkt, tmpl)
		if !s.NATOut(pkt, false) {
			b.Fatal("not translated")
		}
	}
}

func TestDialWithSource(t *testing.T) {
	nodes, _ := newNodesWith(t, 2, nil)
	b := addNodePod(t, nodes[0], nodes[0].host(20), false)
	r := addNodePod(t, nodes[1], nodes[1].host(30), false)
	client := netip.MustParseAddr("192.0.2.44")
	for i, tc := range []struct {
		name string
		dst  *podAt
		src  netip.Addr
		want netip.Addr
	}{
		{"local pod, client kept", &podAt{b.IP, b.ListenTCP}, client, client},
		{"local pod, from the gateway", &podAt{b.IP, b.ListenTCP}, netip.Addr{}, nodes[0].gw},
		{"remote pod, always from the gateway", &podAt{r.IP, r.ListenTCP}, client, nodes[0].gw},
	} {
		port := uint16(8080 + i) // a port of its own: the last case's may still be closing
		t.Run(tc.name, func(t *testing.T) {
			ln, err := tc.dst.listen(port)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := sinkServer(t, ln)
			c, err := nodes[0].DialTCP(timeout(t, 5*time.Second), tc.src, netip.AddrPortFrom(tc.dst.ip, port))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sum, reply := transfer(t, c, 100<<10)
			if r := <-done; r != "ok" {
				t.Fatal(r)
			}
			if want := fmt.Sprintf("%x %s", sum, tc.want); reply != want {
				t.Errorf("pod saw %q, want %q", reply, want)
			}
		})
	}
	// UDP to a local pod with the client's address.
	srv, err := b.ListenUDP(5353)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go echoFrom(srv)
	u, err := nodes[0].DialUDP(client, netip.AddrPortFrom(b.IP, 5353))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if got := udpRoundTrip(t, u, "hi"); got != client.String()+" hi" {
		t.Errorf("UDP reply %q", got)
	}
	if _, err := nodes[0].DialTCP(timeout(t, time.Second), netip.Addr{}, netip.MustParseAddrPort("198.51.100.1:80")); err == nil {
		t.Error("DialTCP to an address outside the cluster succeeded")
	}
}

type podAt struct {
	ip     netip.Addr
	listen func(uint16) (*gonet.TCPListener, error)
}

// TestDialTCPReadable: a connection DialTCP opened tells, without reading,
// whether data or the peer's FIN wait: what a pool asks of an idle one.
func TestDialTCPReadable(t *testing.T) {
	nodes, _ := newNodesWith(t, 1, nil)
	b := addNodePod(t, nodes[0], nodes[0].host(20), false)
	ln, err := b.ListenTCP(8090)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	conn, err := nodes[0].DialTCP(timeout(t, 5*time.Second), netip.Addr{}, netip.AddrPortFrom(b.IP, 8090))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, ok := conn.(interface{ Readable() bool })
	if !ok {
		t.Fatalf("DialTCP returned %T, without Readable", conn)
	}
	srv := <-accepted
	defer srv.Close()
	if c.Readable() {
		t.Fatal("readable before the pod sent anything")
	}
	waitReadable := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !c.Readable(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("not readable after %s", what)
			}
		}
	}
	srv.Write([]byte("x"))
	waitReadable("the pod wrote a byte")
	if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if c.Readable() {
		t.Fatal("readable after the byte was read")
	}
	srv.Close()
	waitReadable("the pod closed")
}

// A Service whose endpoint is no pod (the API server behind the `kubernetes` Service, a
// selectorless Service's outside address): the translated flow goes to the netstack, which dials
// the endpoint from the host, and its answers reach the pod from the Service address, not the
// endpoint's.
func TestServiceOutsideEndpoint(t *testing.T) {
	ln := echoHostServer(t)
	dialer := &recordingDialer{to: ln.Addr().String()}
	lb := newFakeBalancer()
	s := newStack(t, func(o *stack.Options) { withServices(lb)(o); o.HostDialer = dialer })
	for _, gso := range []bool{false, true} {
		ip := podA
		if gso {
			ip = podB
		}
		a := addPod(t, s, ip, gso)
		vip := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.1"), 443)
		endpoint := netip.AddrPortFrom(outside, 6443)
		lb.set(vip, endpoint)
		reply, err := roundTrip(t, a, vip, "hello")
		if err != nil {
			t.Fatalf("gso=%v: %v", gso, err)
		}
		if reply != "hello from 127.0.0.1" {
			t.Errorf("gso=%v: reply %q", gso, reply)
		}
	}
	if got := dialer.dials(); len(got) != 2 || got[0] != "tcp 203.0.113.7:6443" {
		t.Errorf("dials %q, want two to the endpoint 203.0.113.7:6443", got)
	}
}

// TestConntrackHalfOpenShare: a pod whose new flows go unanswered fills only its share of the
// table (a thirty-second of it); another pod's new flows still get entries; an answered flow
// leaves the share, so the flooding pod gets room again.
func TestConntrackHalfOpenShare(t *testing.T) {
	vip := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.63"), 53)
	backend := netip.AddrPortFrom(podB, 5353)
	lb := newFakeBalancer()
	lb.set(vip, backend)
	s := newStack(t, func(o *stack.Options) { withServices(lb)(o); o.MaxConntrack = 1 << 15 }) // a client's share: 1,024
	for i := range 1030 {
		ok := s.NATOut(udpPacket(netip.AddrPortFrom(podA, uint16(20000+i)), vip, "x"), false)
		if ok != (i < 1024) {
			t.Fatalf("unanswered flow %d of one client translated: %v; want only the first 1024", i, ok)
		}
	}
	if st := s.Stats(); st.NATHalfOpenDropped != 6 || st.NATDropped != 0 || st.NATActive != 1024 {
		t.Fatalf("stats %+v: want 6 dropped for the half-open share", st)
	}
	other := netip.MustParseAddr("10.244.1.30")
	if !s.NATOut(udpPacket(netip.AddrPortFrom(other, 40000), vip, "x"), false) {
		t.Fatal("another client's new flow was dropped")
	}
	// One of the first client's flows is answered: it leaves the share.
	if !s.NATReply(udpPacket(backend, netip.AddrPortFrom(podA, 20000), "y")) {
		t.Fatal("answer not translated")
	}
	if !s.NATOut(udpPacket(netip.AddrPortFrom(podA, 40100), vip, "x"), false) {
		t.Error("after an answer the client had no room for a new flow")
	}
	if s.NATOut(udpPacket(netip.AddrPortFrom(podA, 40101), vip, "x"), false) {
		t.Error("the client got more than its share")
	}
}
