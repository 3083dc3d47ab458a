package stack_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/podnet/podnet/stack"
	"github.com/podnet/podnet/stack/stacktest"
)

// addFramePortQueues attaches a pod at ip with n FramePorts as its queues.
func addFramePortQueues(t *testing.T, s *stack.Stack, ip netip.Addr, n int) []*stacktest.FramePort {
	t.Helper()
	qs := make([]*stacktest.FramePort, n)
	ports := make([]stack.Port, n)
	for i := range qs {
		qs[i] = stacktest.NewFramePort(64)
		ports[i] = qs[i]
	}
	if err := s.AttachPodQueues(ip, ports); err != nil {
		t.Fatal(err)
	}
	return qs
}

// drain returns every frame written to p so far (waiting briefly for more).
func drain(t *testing.T, p *stacktest.FramePort) [][]byte {
	t.Helper()
	var frames [][]byte
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		f, err := p.Next(ctx)
		cancel()
		if err != nil {
			return frames
		}
		frames = append(frames, f)
	}
}

// TestQueuesKeepFlowsTogether sends frames of many flows from both queues of
// pod A to pod B, which has three: each flow's frames must all reach one of
// B's queues, and the flows must be spread over more than one.
func TestQueuesKeepFlowsTogether(t *testing.T) {
	s := newStack(t, nil)
	a := addFramePortQueues(t, s, podA, 2)
	b := addFramePortQueues(t, s, podB, 3)
	ctx := timeout(t, 5*time.Second)

	const flows, perFlow = 16, 3
	for i := range flows * perFlow {
		src := netip.AddrPortFrom(podA, uint16(40000+i%flows))
		f := stack.UDPFrame(src, netip.AddrPortFrom(podB, 5201), gateway, 64, []byte("data"))
		if err := a[i%2].Send(ctx, f); err != nil { // a flow arrives on both of A's queues
			t.Fatal(err)
		}
	}
	waitFor(t, "every frame forwarded", func() bool { return s.Stats().FastPathFrames == flows*perFlow })

	queueOf := make(map[uint16]int) // source port -> B's queue
	count := make(map[uint16]int)
	used := make(map[int]bool)
	for qi, q := range b {
		for _, f := range drain(t, q) {
			sport := binary.BigEndian.Uint16(f[stack.NetOff+20:])
			if prev, ok := queueOf[sport]; ok && prev != qi {
				t.Errorf("flow from port %d reached queues %d and %d", sport, prev, qi)
			}
			queueOf[sport] = qi
			count[sport]++
			used[qi] = true
		}
	}
	for i := range flows {
		if n := count[uint16(40000+i)]; n != perFlow {
			t.Errorf("flow from port %d: %d frames at B, want %d", 40000+i, n, perFlow)
		}
	}
	if len(used) < 2 {
		t.Errorf("%d flows all went to one of B's 3 queues", flows)
	}
}

// TestQueuesStackPathAndARP: an ARP reply goes back on the queue the request
// came from; the netstack answers on the first queue whatever queue a frame
// to it came from.
func TestQueuesStackPathAndARP(t *testing.T) {
	s := newStack(t, nil)
	a := addFramePortQueues(t, s, podA, 3)
	ctx := timeout(t, 5*time.Second)

	if err := a[2].Send(ctx, stack.ARPRequestFrame(podA, gateway)); err != nil {
		t.Fatal(err)
	}
	if _, err := a[2].Next(ctx); err != nil {
		t.Fatalf("no ARP reply on the request's queue: %v", err)
	}
	if err := a[1].Send(ctx, stack.ICMPEchoFrame(podA, gateway, gateway)); err != nil {
		t.Fatal(err)
	}
	if _, err := a[0].Next(ctx); err != nil {
		t.Fatalf("no echo reply on queue 0: %v", err)
	}
	for i, q := range a[1:] {
		if f := drain(t, q); len(f) != 0 {
			t.Errorf("queue %d got %d unexpected frames", i+1, len(f))
		}
	}
}

func TestAttachPodQueuesErrorsAndDetach(t *testing.T) {
	s := newStack(t, nil)
	if err := s.AttachPodQueues(podA, nil); err == nil {
		t.Error("AttachPodQueues with no port succeeded")
	}
	if err := s.AttachPodQueues(podA, []stack.Port{stacktest.NewFramePort(1), nil}); err == nil {
		t.Error("AttachPodQueues with a nil port succeeded")
	}
	a := addFramePortQueues(t, s, podA, 4)
	if err := s.DetachPod(podA); err != nil {
		t.Fatal(err)
	}
	for i, q := range a {
		if err := q.WriteFrame([]byte{0}); !errors.Is(err, net.ErrClosed) {
			t.Errorf("queue %d after DetachPod: WriteFrame = %v, want net.ErrClosed (port not closed)", i, err)
		}
	}
	// checkNoLeaks (newStack) verifies that every reader has returned.
}
