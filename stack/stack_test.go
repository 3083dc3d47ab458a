package stack_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/podnet/podnet/internal/leakcheck"
	"github.com/podnet/podnet/stack"
	"github.com/podnet/podnet/stack/stacktest"
	"github.com/podnet/podnet/tap"
)

var (
	podCIDR  = netip.MustParsePrefix("10.244.1.0/24")
	gateway  = netip.MustParseAddr("10.244.1.1")
	podA     = netip.MustParseAddr("10.244.1.10")
	podB     = netip.MustParseAddr("10.244.1.20")
	service  = netip.MustParseAddr("10.96.0.10")
	outside  = netip.MustParseAddr("203.0.113.7")
	clusters = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.96.0.0/12")}
)

// checkNoLeaks fails the test if, once its other cleanups have run, any goroutine of this
// package or of gVisor is left. Call it first.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	leakcheck.AtCleanup(t, leakcheck.Options{Match: []string{"podnet/podnet/stack.", "gvisor.dev/gvisor"}})
}

// newStack returns a Stack for 10.244.1.0/24 that is closed when the test
// ends, and checks for leaked goroutines after that.
func newStack(t *testing.T, modify func(*stack.Options)) *stack.Stack {
	t.Helper()
	checkNoLeaks(t)
	// Most tests reach the host's loopback at the gateway, as a lab does.
	opts := stack.Options{PodCIDR: podCIDR, Gateway: gateway, ClusterPrefixes: clusters, HostLoopback: netip.MustParseAddr("127.0.0.1")}
	if modify != nil {
		modify(&opts)
	}
	s, err := stack.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// addPod attaches an in-process pod at ip.
func addPod(t *testing.T, s *stack.Stack, ip netip.Addr, gso bool) *stacktest.Pod {
	t.Helper()
	p, err := stacktest.NewPod(stacktest.PodOptions{IP: ip, Gateway: gateway, GSO: gso})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AttachPod(ip, p.Port()); err != nil {
		p.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.DetachPod(ip) // may have been detached by the test
		p.Close()
	})
	return p
}

// addFramePort attaches a FramePort at ip.
func addFramePort(t *testing.T, s *stack.Stack, ip netip.Addr) *stacktest.FramePort {
	t.Helper()
	p := stacktest.NewFramePort(64)
	if err := s.AttachPod(ip, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// expectNoFrame fails if p receives a frame within a short while.
func expectNoFrame(t *testing.T, p *stacktest.FramePort) {
	t.Helper()
	if f, err := p.Next(timeout(t, 100*time.Millisecond)); err == nil {
		t.Errorf("unexpected frame % x", f)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testData(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + i>>8)
	}
	return b
}

// sinkServer accepts one connection on ln, reads it to the end, and answers
// with the SHA-256 of what it read and the peer address it saw.
func sinkServer(t *testing.T, ln net.Listener) <-chan string {
	result := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			result <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			result <- "read: " + err.Error()
			return
		}
		peer := c.RemoteAddr().(*net.TCPAddr).IP.String()
		fmt.Fprintf(c, "%x %s", h.Sum(nil), peer)
		result <- "ok"
	}()
	return result
}

func TestPodToPodTCP(t *testing.T) {
	for _, gso := range []bool{false, true} {
		t.Run(fmt.Sprintf("gso=%v", gso), func(t *testing.T) {
			s := newStack(t, nil)
			a := addPod(t, s, podA, gso)
			b := addPod(t, s, podB, gso)
			ln, err := b.ListenTCP(8080)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := sinkServer(t, ln)

			c, err := a.DialTCP(timeout(t, 10*time.Second), netip.AddrPortFrom(podB, 8080))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			data := testData(1 << 20)
			if _, err := c.Write(data); err != nil {
				t.Fatal(err)
			}
			c.CloseWrite()
			reply, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if r := <-done; r != "ok" {
				t.Fatal(r)
			}
			want := fmt.Sprintf("%x %s", sha256.Sum256(data), podA)
			if string(reply) != want {
				t.Fatalf("server saw %q, want %q (data hash, sender's pod IP)", reply, want)
			}

			st := s.Stats()
			if st.FastPathFrames == 0 || st.FastPathBytes < 1<<20 {
				t.Errorf("fast path carried %d frames, %d bytes; want the transfer", st.FastPathFrames, st.FastPathBytes)
			}
			if st.ToStackFrames != 0 {
				t.Errorf("%d frames went to the netstack; pod-to-pod traffic should all take the fast path", st.ToStackFrames)
			}
			if st.ARPReplies == 0 {
				t.Error("no ARP replies: how did the pods find the gateway?")
			}
			perFrame := st.FastPathBytes / st.FastPathFrames
			if gso && perFrame < 4000 {
				t.Errorf("GSO pods: %d bytes per fast-path frame, want super-frames", perFrame)
			}
			if !gso && perFrame > 1514 {
				t.Errorf("non-GSO pods: %d bytes per fast-path frame, want at most 1514", perFrame)
			}
			t.Logf("stats: %+v", st)
		})
	}
}

func TestPodToPodUDP(t *testing.T) {
	s := newStack(t, nil)
	a := addPod(t, s, podA, false)
	b := addPod(t, s, podB, false)
	srv, err := b.ListenUDP(9000)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			srv.WriteTo(append([]byte(from.String()+" "), buf[:n]...), from)
		}
	}()
	c, err := a.DialUDP(netip.AddrPortFrom(podB, 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); !strings.HasPrefix(got, podA.String()+":") || !strings.HasSuffix(got, " ping") {
		t.Fatalf("reply %q, want the sender's pod address and ping", got)
	}
}

func TestICMPEcho(t *testing.T) {
	s := newStack(t, nil)
	a := addPod(t, s, podA, false)
	addPod(t, s, podB, false)
	if err := a.Ping(timeout(t, 5*time.Second), gateway, 1); err != nil {
		t.Errorf("ping gateway: %v", err)
	}
	if err := a.Ping(timeout(t, 5*time.Second), podB, 2); err != nil {
		t.Errorf("ping pod: %v", err)
	}
	if err := a.Ping(timeout(t, 200*time.Millisecond), outside, 3); err == nil {
		t.Error("ping to an outside address was answered; the node cannot reach it")
	}
	if st := s.Stats(); st.DroppedNoRoute != 1 {
		t.Errorf("DroppedNoRoute = %d, want 1", st.DroppedNoRoute)
	}
}

func TestARP(t *testing.T) {
	s := newStack(t, nil)
	p := addFramePort(t, s, podA)
	ctx := timeout(t, 5*time.Second)
	for _, target := range []netip.Addr{gateway, podB, outside} {
		if err := p.Send(ctx, stack.ARPRequestFrame(podA, target)); err != nil {
			t.Fatal(err)
		}
		f, err := p.Next(ctx)
		if err != nil {
			t.Fatalf("no ARP reply for %v: %v", target, err)
		}
		a := header.ARP(f[stack.NetOff:])
		if !a.IsValid() || a.Op() != header.ARPReply {
			t.Fatalf("not an ARP reply: % x", f)
		}
		if got := net.HardwareAddr(a.HardwareAddressSender()); got.String() != stack.GatewayMAC(gateway).String() {
			t.Errorf("%v is at %v, want GatewayMAC %v", target, got, stack.GatewayMAC(gateway))
		}
		if got, _ := netip.AddrFromSlice(a.ProtocolAddressSender()); got != target {
			t.Errorf("reply for %v, want %v", got, target)
		}
	}
	// Nobody answers for the pod's own address.
	p.Send(ctx, stack.ARPRequestFrame(podA, podA))
	expectNoFrame(t, p)
	if st := s.Stats(); st.ARPReplies != 3 || st.DroppedUnsupported != 1 {
		t.Errorf("ARPReplies = %d, DroppedUnsupported = %d; want 3, 1", st.ARPReplies, st.DroppedUnsupported)
	}
}

// TestTinyFragmentsDropped: fragments of 16 bytes (hping3 -f) are dropped where they are read and
// counted, all but the last, which no size rule can tell from a real one; the fragments a kernel
// cuts at a path MTU pass, every one.
func TestTinyFragmentsDropped(t *testing.T) {
	s := newStack(t, nil)
	a := addFramePort(t, s, podA)
	b := addFramePort(t, s, podB)
	ctx := timeout(t, 5*time.Second)
	datagram := stack.UDPFrame(netip.AddrPortFrom(podA, 1000), netip.AddrPortFrom(podB, 9), gateway, 64, make([]byte, 1200))
	tiny := stack.FragmentFrames(datagram, 16)
	for _, f := range tiny {
		a.Send(ctx, f)
	}
	last, err := b.Next(ctx)
	if err != nil {
		t.Fatalf("the last fragment did not arrive: %v", err)
	}
	if off := binary.BigEndian.Uint16(last[stack.NetOff+6:]); off&0x2000 != 0 || off&0x1fff != 1200/8 {
		t.Errorf("got a fragment at offset %d (more fragments %v), want only the last, at %d", (off&0x1fff)*8, off&0x2000 != 0, 1200)
	}
	expectNoFrame(t, b)
	if st := s.Stats(); st.DroppedTinyFragments != uint64(len(tiny)-1) {
		t.Errorf("DroppedTinyFragments = %d, want %d", st.DroppedTinyFragments, len(tiny)-1)
	}
	// Cut at Linux's least path MTU (552: 528 bytes a fragment), every fragment passes.
	for _, f := range stack.FragmentFrames(datagram, 528) {
		a.Send(ctx, f)
		got, err := b.Next(ctx)
		if err != nil {
			t.Fatalf("a %d-byte fragment did not arrive: %v", len(f)-stack.NetOff, err)
		}
		if !bytes.Equal(got[stack.NetOff+20:], f[stack.NetOff+20:]) {
			t.Errorf("fragment payload changed on the way")
		}
	}
}

func TestSpoofedSourceDropped(t *testing.T) {
	s := newStack(t, nil)
	a := addFramePort(t, s, podA)
	b := addFramePort(t, s, podB)
	ctx := timeout(t, 5*time.Second)
	spoofed := netip.MustParseAddr("10.244.1.99")
	a.Send(ctx, stack.UDPFrame(netip.AddrPortFrom(spoofed, 1), netip.AddrPortFrom(podB, 2), gateway, 64, []byte("x")))
	a.Send(ctx, stack.UDPFrame(netip.AddrPortFrom(podB, 1), netip.AddrPortFrom(gateway, 53), gateway, 64, []byte("x")))
	expectNoFrame(t, b)
	if st := s.Stats(); st.DroppedSpoofed != 2 || st.FastPathFrames != 0 || st.ToStackFrames != 0 {
		t.Errorf("DroppedSpoofed = %d, FastPath = %d, ToStack = %d; want 2, 0, 0", st.DroppedSpoofed, st.FastPathFrames, st.ToStackFrames)
	}
	// The genuine source passes.
	a.Send(ctx, stack.UDPFrame(netip.AddrPortFrom(podA, 1), netip.AddrPortFrom(podB, 2), gateway, 64, []byte("x")))
	if _, err := b.Next(ctx); err != nil {
		t.Fatalf("genuine frame not forwarded: %v", err)
	}
}

func TestForwardRewritesFrame(t *testing.T) {
	s := newStack(t, nil)
	a := addFramePort(t, s, podA)
	b := addFramePort(t, s, podB)
	ctx := timeout(t, 5*time.Second)
	tests := []struct {
		name  string
		frame []byte
	}{
		{"udp", stack.UDPFrame(netip.AddrPortFrom(podA, 1), netip.AddrPortFrom(podB, 2), gateway, 64, []byte("hello"))},
		{"tcp gso super-frame", stack.TCPGSOFrame(netip.AddrPortFrom(podA, 1), netip.AddrPortFrom(podB, 2), gateway, 1448, 64000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := a.Send(ctx, tt.frame); err != nil {
				t.Fatal(err)
			}
			got, err := b.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := bytes.Clone(tt.frame)
			copy(want[stack.EthOff:], stack.PodMAC(podB))
			copy(want[stack.EthOff+6:], stack.GatewayMAC(gateway))
			want[stack.NetOff+8]--                                             // TTL
			copy(want[stack.NetOff+10:], got[stack.NetOff+10:stack.NetOff+12]) // checksum, checked below
			if !bytes.Equal(got, want) {
				t.Fatalf("forwarded frame differs beyond MACs, TTL and checksum:\n got % x\nwant % x", got[:64], want[:64])
			}
			if !stack.IPv4HeaderValid(got) {
				t.Fatal("IPv4 header checksum invalid")
			}
			if h, _ := tap.DecodeVirtioNetHdr(got); h.GSOType != 0 && h.GSOSize != 1448 {
				t.Fatalf("virtio_net_hdr %+v", h)
			}
		})
	}
	a.Send(ctx, stack.UDPFrame(netip.AddrPortFrom(podA, 1), netip.AddrPortFrom(podB, 2), gateway, 1, []byte("x")))
	expectNoFrame(t, b)
	if st := s.Stats(); st.DroppedTTL != 1 || st.FastPathFrames != 2 {
		t.Errorf("DroppedTTL = %d, FastPathFrames = %d; want 1, 2", st.DroppedTTL, st.FastPathFrames)
	}
}

// echoHostServer accepts connections on a host listener; for each it reads
// to the end of the stream and then answers with what it read and the peer
// address it saw.
func echoHostServer(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				b, _ := io.ReadAll(c)
				fmt.Fprintf(c, "%s from %s", b, c.RemoteAddr().(*net.TCPAddr).IP)
			}()
		}
	}()
	return ln
}

// roundTrip sends msg on a connection from pod to dst, half-closes, and
// returns the reply read to its end.
func roundTrip(t *testing.T, p *stacktest.Pod, dst netip.AddrPort, msg string) (string, error) {
	t.Helper()
	c, err := p.DialTCP(timeout(t, 10*time.Second), dst)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	if err := c.CloseWrite(); err != nil {
		return "", err
	}
	reply, err := io.ReadAll(c)
	return string(reply), err
}

func TestGatewayReachesHostLoopback(t *testing.T) {
	ln := echoHostServer(t)
	s := newStack(t, nil)
	a := addPod(t, s, podA, true)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	reply, err := roundTrip(t, a, netip.AddrPortFrom(gateway, port), "hello")
	if err != nil {
		t.Fatal(err)
	}
	if reply != "hello from 127.0.0.1" {
		t.Fatalf("reply %q", reply)
	}
	if st := s.Stats(); st.HostTCPConns != 1 || st.ToStackFrames == 0 {
		t.Errorf("HostTCPConns = %d, ToStackFrames = %d", st.HostTCPConns, st.ToStackFrames)
	}
	waitFor(t, "the spliced connection to close", func() bool { return s.Stats().HostTCPActive == 0 })

	// A port nobody listens on: the pod's connection is refused.
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closed.Close()
	closedPort := uint16(closed.Addr().(*net.TCPAddr).Port)
	if _, err := roundTrip(t, a, netip.AddrPortFrom(gateway, closedPort), "x"); err == nil {
		t.Error("connection to a closed host port succeeded")
	}
	if st := s.Stats(); st.HostDialErrors != 1 {
		t.Errorf("HostDialErrors = %d, want 1", st.HostDialErrors)
	}
}

// Without HostLoopback (Kubernetes mode) the node's loopback services are out of the pods'
// reach: a connection to the gateway is refused at once and nothing is dialled.
func TestGatewayWithoutHostLoopbackIsRefused(t *testing.T) {
	ln := echoHostServer(t)
	s := newStack(t, func(o *stack.Options) { o.HostLoopback = netip.Addr{} })
	a := addPod(t, s, podA, true)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	if reply, err := roundTrip(t, a, netip.AddrPortFrom(gateway, port), "hello"); err == nil {
		t.Fatalf("a pod reached the host's loopback at its gateway: %q", reply)
	}
	if st := s.Stats(); st.HostTCPConns != 0 || st.HostDialErrors != 0 {
		t.Errorf("HostTCPConns = %d, HostDialErrors = %d: the stack dialled the host", st.HostTCPConns, st.HostDialErrors)
	}
}

// recordingDialer sends every connection to one host address and records
// where it was asked to go.
type recordingDialer struct {
	to string
	mu sync.Mutex
	// asked holds network and address of each dial.
	asked []string
}

func (d *recordingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.asked = append(d.asked, network+" "+address)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, d.to)
}

func (d *recordingDialer) dials() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.asked...)
}

func TestEgressThroughHostDialer(t *testing.T) {
	ln := echoHostServer(t)
	dialer := &recordingDialer{to: ln.Addr().String()}
	s := newStack(t, func(o *stack.Options) { o.HostDialer = dialer })
	a := addPod(t, s, podA, false)
	reply, err := roundTrip(t, a, netip.AddrPortFrom(outside, 443), "egress")
	if err != nil {
		t.Fatal(err)
	}
	if reply != "egress from 127.0.0.1" {
		t.Fatalf("reply %q", reply)
	}
	if got := dialer.dials(); len(got) != 1 || got[0] != "tcp 203.0.113.7:443" {
		t.Fatalf("dials %q, want [tcp 203.0.113.7:443]", got)
	}
}

func TestClusterPrefixRefused(t *testing.T) {
	dialer := &recordingDialer{to: "127.0.0.1:1"}
	s := newStack(t, func(o *stack.Options) { o.HostDialer = dialer })
	a := addPod(t, s, podA, false)

	for _, dst := range []netip.AddrPort{
		netip.AddrPortFrom(service, 80),                            // service CIDR
		netip.AddrPortFrom(netip.MustParseAddr("10.244.7.3"), 80),  // another node's pod
		netip.AddrPortFrom(netip.MustParseAddr("10.244.1.77"), 80), // no such pod here
	} {
		start := time.Now()
		if _, err := a.DialTCP(timeout(t, 5*time.Second), dst); err == nil {
			t.Errorf("TCP to %v connected", dst)
		} else if time.Since(start) > 2*time.Second {
			t.Errorf("TCP to %v: %v after %v; want an immediate RST", dst, err, time.Since(start))
		}
	}

	c, err := a.DialUDP(netip.AddrPortFrom(service, 53))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("query"))
	// gonet's Read waits only for data, not for the error an ICMP port
	// unreachable leaves on the socket; poll for it.
	for deadline := time.Now().Add(2 * time.Second); ; {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err = c.Read(make([]byte, 100))
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
			break
		}
		if time.Now().After(deadline) {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("UDP to %v: read error %v, want connection refused (ICMP port unreachable)", service, err)
	}
	if st := s.Stats(); st.Refused != 4 {
		t.Errorf("Refused = %d, want 4", st.Refused)
	}
	if got := dialer.dials(); len(got) != 0 {
		t.Errorf("host dials %q for cluster destinations", got)
	}
}

func TestUDPEgress(t *testing.T) {
	host, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := host.ReadFromUDP(buf)
			if err != nil {
				return
			}
			host.WriteToUDP(append([]byte("echo "), buf[:n]...), from)
		}
	}()
	s := newStack(t, func(o *stack.Options) { o.UDPIdleTimeout = 300 * time.Millisecond })
	a := addPod(t, s, podA, false)
	c, err := a.DialUDP(netip.AddrPortFrom(gateway, uint16(host.LocalAddr().(*net.UDPAddr).Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	for i := range 3 {
		msg := fmt.Sprintf("datagram %d", i)
		c.Write([]byte(msg))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(buf[:n]); got != "echo "+msg {
			t.Fatalf("reply %q", got)
		}
	}
	if st := s.Stats(); st.HostUDPFlows != 1 || st.HostUDPActive != 1 {
		t.Errorf("HostUDPFlows = %d, HostUDPActive = %d; want one flow for three datagrams", st.HostUDPFlows, st.HostUDPActive)
	}
	waitFor(t, "the idle UDP flow to expire", func() bool { return s.Stats().HostUDPActive == 0 })
}

func TestHostConnLimit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	s := newStack(t, func(o *stack.Options) { o.MaxHostConns = 1 })
	a := addPod(t, s, podA, false)
	dst := netip.AddrPortFrom(gateway, uint16(ln.Addr().(*net.TCPAddr).Port))
	first, err := a.DialTCP(timeout(t, 5*time.Second), dst)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if c, err := a.DialTCP(timeout(t, 5*time.Second), dst); err == nil {
		c.Close()
		t.Fatal("second connection accepted with MaxHostConns = 1")
	}
	if st := s.Stats(); st.LimitDrops != 1 || st.HostTCPActive != 1 {
		t.Errorf("LimitDrops = %d, HostTCPActive = %d; want 1, 1", st.LimitDrops, st.HostTCPActive)
	}
}

func TestDialContextTCPFromGateway(t *testing.T) {
	s := newStack(t, nil)
	b := addPod(t, s, podB, false)
	ln, err := b.ListenTCP(8080)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		peer <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Close()
	}()
	c, err := s.DialContextTCP(timeout(t, 5*time.Second), netip.AddrPortFrom(podB, 8080))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := <-peer; got != gateway.String() {
		t.Errorf("pod saw the probe from %s, want the gateway %s", got, gateway)
	}
	if _, err := s.DialContextTCP(timeout(t, 5*time.Second), netip.AddrPortFrom(podB, 8081)); err == nil {
		t.Error("dial to a closed pod port succeeded")
	}
}

func TestAttachErrors(t *testing.T) {
	s := newStack(t, nil)
	addFramePort(t, s, podA)
	for _, ip := range []netip.Addr{
		podA,                              // attached already
		gateway,                           // the gateway
		netip.MustParseAddr("10.244.1.0"), // network address
		netip.MustParseAddr("10.244.2.5"), // outside the pod CIDR
		netip.MustParseAddr("fd00::1"),    // not IPv4
	} {
		if err := s.AttachPod(ip, stacktest.NewFramePort(1)); err == nil {
			t.Errorf("AttachPod(%v) succeeded", ip)
		}
	}
	if err := s.DetachPod(podB); err == nil {
		t.Error("DetachPod of a pod never attached succeeded")
	}
	if _, err := stack.New(stack.Options{PodCIDR: podCIDR, Gateway: netip.MustParseAddr("10.0.0.1")}); err == nil {
		t.Error("New accepted a gateway outside the pod CIDR")
	}
}

func TestDetachThenCloseLeavesNothing(t *testing.T) {
	ln := echoHostServer(t)
	s := newStack(t, nil)
	a := addPod(t, s, podA, true)
	b := addPod(t, s, podB, true)
	hostPort := netip.AddrPortFrom(gateway, uint16(ln.Addr().(*net.TCPAddr).Port))

	// Open connections: each pod to the host, and A to B.
	aHost, err := a.DialTCP(timeout(t, 5*time.Second), hostPort)
	if err != nil {
		t.Fatal(err)
	}
	defer aHost.Close()
	bHost, err := b.DialTCP(timeout(t, 5*time.Second), hostPort)
	if err != nil {
		t.Fatal(err)
	}
	defer bHost.Close()
	pln, err := b.ListenTCP(8080)
	if err != nil {
		t.Fatal(err)
	}
	defer pln.Close()
	podConn, err := a.DialTCP(timeout(t, 5*time.Second), netip.AddrPortFrom(podB, 8080))
	if err != nil {
		t.Fatal(err)
	}
	defer podConn.Close()
	waitFor(t, "both host connections", func() bool { return s.Stats().HostTCPActive == 2 })

	// Detaching A closes its host connection, not B's.
	if err := s.DetachPod(podA); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A's host connection to close", func() bool { return s.Stats().HostTCPActive == 1 })
	if err := s.DetachPod(podA); err == nil {
		t.Error("second DetachPod succeeded")
	}
	// The address is free again.
	if err := s.AttachPod(podA, stacktest.NewFramePort(1)); err != nil {
		t.Fatalf("re-attach after detach: %v", err)
	}
	if err := s.DetachPod(podA); err != nil {
		t.Fatal(err)
	}
	// Close with B's spliced connection open; checkNoLeaks verifies that
	// every goroutine is gone afterwards.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.AttachPod(podA, stacktest.NewFramePort(1)); err == nil {
		t.Error("AttachPod after Close succeeded")
	}
	if st := s.Stats(); st.HostTCPActive != 0 || st.FastPathFrames == 0 {
		t.Errorf("after Close: %+v", st)
	}
}
