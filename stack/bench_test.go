package stack_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podnet/podnet/stack"
	"github.com/podnet/podnet/stack/stacktest"
	"github.com/podnet/podnet/tap"
)

// replayPort returns the same frame from ReadFrame n times, once start is
// closed, and then blocks until Close. Copying the frame stands in for the
// read system call's copy.
type replayPort struct {
	frame  []byte
	n      int
	start  chan struct{}
	closed chan struct{}
	out    *sink // receives what the Stack writes to the port
}

func newReplayPort(frame []byte, n int, out *sink) *replayPort {
	return &replayPort{frame: frame, n: n, start: make(chan struct{}), closed: make(chan struct{}), out: out}
}

func (p *replayPort) WriteFrame(b []byte) error { return p.out.WriteFrame(b) }

func (p *replayPort) ReadFrame(b []byte) (int, error) {
	if p.n == 0 {
		<-p.closed
		return 0, net.ErrClosed
	}
	if p.start != nil {
		<-p.start
		p.start = nil
	}
	p.n--
	return copy(b, p.frame), nil
}

func (p *replayPort) Close() error {
	close(p.closed)
	return nil
}

// sink is a port that counts frames written to it and signals when want
// have arrived; it never yields a frame.
type sink struct {
	got    atomic.Int64
	want   int64
	done   chan struct{}
	closed chan struct{}
}

func newSink(want int) *sink {
	return &sink{want: int64(want), done: make(chan struct{}), closed: make(chan struct{})}
}

func (s *sink) WriteFrame(b []byte) error {
	if s.got.Add(1) == s.want {
		close(s.done)
	}
	return nil
}

func (s *sink) ReadFrame(b []byte) (int, error) {
	<-s.closed
	return 0, net.ErrClosed
}

func (s *sink) Close() error {
	close(s.closed)
	return nil
}

func newBenchStack(b *testing.B) *stack.Stack {
	s, err := stack.New(stack.Options{PodCIDR: podCIDR, Gateway: gateway, ClusterPrefixes: clusters})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkFastPathForward measures the fast path per frame: a pod's reader
// reads a frame (a copy), classifies it, rewrites it and writes it to the
// destination pod's port. Bytes are Ethernet bytes; a GSO super-frame counts
// whole.
func BenchmarkFastPathForward(b *testing.B) {
	cases := []struct {
		name  string
		frame []byte
	}{
		{"udp-1514", stack.UDPFrame(netip.AddrPortFrom(podA, 1000), netip.AddrPortFrom(podB, 2000), gateway, 64, make([]byte, 1472))},
		{"tcp-gso-64k", stack.TCPGSOFrame(netip.AddrPortFrom(podA, 1000), netip.AddrPortFrom(podB, 2000), gateway, 1448, 65000)},
	}
	for _, tc := range cases {
		for _, flows := range []bool{false, true} {
			name := tc.name
			if flows {
				name += "/flows" // with a flow observer: each UDP frame is looked up in the recent flows
			}
			b.Run(name, func(b *testing.B) {
				benchFastPath(b, tc.frame, flows)
			})
		}
	}
}

// benchFastPath forwards frame b.N times from pod A to pod B, with a flow observer if flows.
func benchFastPath(b *testing.B, frame []byte, flows bool) {
	s := newBenchStack(b)
	if flows {
		s.SetFlowObserver(func(*stack.FlowEvent) {})
	}
	dst := newSink(b.N)
	if err := s.AttachPod(podB, dst); err != nil {
		b.Fatal(err)
	}
	src := newReplayPort(frame, b.N, newSink(0))
	if err := s.AttachPod(podA, src); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(frame) - tap.VirtioNetHdrLen))
	b.ReportAllocs()
	b.ResetTimer()
	close(src.start)
	<-dst.done
	b.StopTimer()
	if st := s.Stats(); st.FastPathFrames != uint64(b.N) {
		b.Fatalf("FastPathFrames = %d, want %d", st.FastPathFrames, b.N)
	}
}

// BenchmarkStackPathICMPEcho measures the stack path per frame: an ICMP echo
// request to the gateway goes into the netstack and its reply comes back out
// through the pod's link endpoint.
func BenchmarkStackPathICMPEcho(b *testing.B) {
	s := newBenchStack(b)
	replies := newSink(b.N)
	src := newReplayPort(stack.ICMPEchoFrame(podA, gateway, gateway), b.N, replies)
	if err := s.AttachPod(podA, src); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	close(src.start)
	select {
	case <-replies.done:
	case <-time.After(time.Minute):
		b.Fatalf("%d of %d echo replies", replies.got.Load(), b.N)
	}
	b.StopTimer()
}

// BenchmarkStackPathTCPToHost measures throughput of a TCP connection from an
// in-process pod (with GSO) through the gateway to a host loopback listener:
// netstack TCP in both the pod and the Stack, and the splice to the host
// socket. Each op writes 64 KiB.
func BenchmarkStackPathTCPToHost(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	read := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			read <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		read <- n
	}()
	// The gateway maps to the host's loopback, as in a lab with hostLoopback.
	s, err := stack.New(stack.Options{PodCIDR: podCIDR, Gateway: gateway, ClusterPrefixes: clusters, HostLoopback: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	p, err := stacktest.NewPod(stacktest.PodOptions{IP: podA, Gateway: gateway, GSO: true})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	if err := s.AttachPod(podA, p.Port()); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := p.DialTCP(ctx, netip.AddrPortFrom(gateway, uint16(ln.Addr().(*net.TCPAddr).Port)))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.CloseWrite()
	if n := <-read; n != int64(b.N)*int64(len(buf)) {
		b.Fatalf("host read %d bytes, want %d", n, b.N*len(buf))
	}
	b.StopTimer()
	c.Close()
}
