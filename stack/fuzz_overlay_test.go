package stack_test

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/podnet/podnet/stack"
	"github.com/podnet/podnet/stack/stacktest"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// FuzzDeliverFromOverlay feeds what a peer node may send through the overlay (WireGuard
// authenticates the peer, not what it says) to DeliverFromOverlay, two packets and the first
// again in one batch, so that coalescing (GRO) sees runs: nothing may panic, and every frame that
// reaches the pod carries a valid IPv4 header to the pod's address.
func FuzzDeliverFromOverlay(f *testing.F) {
	remote := netip.MustParseAddr("10.244.2.10")
	s, err := stack.New(stack.Options{PodCIDR: podCIDR, Gateway: gateway, ClusterPrefixes: clusters})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	port := stacktest.NewFramePort(1024)
	if err := s.AttachPod(podA, port); err != nil {
		f.Fatal(err)
	}
	s.SetRemoteRoutes([]netip.Prefix{netip.MustParsePrefix("10.244.2.0/24")}, &stacktest.Underlay{})
	src, dst := netip.AddrPortFrom(remote, 40000), netip.AddrPortFrom(podA, 80)
	seg1 := tcpPacket(src, dst, header.TCPFlagAck, string(make([]byte, 1000)), false)
	seg2 := tcpPacket(src, dst, header.TCPFlagAck|header.TCPFlagPsh, "more", false)
	f.Add(seg1, seg2)
	f.Add(ipv4Packet(remote, podA, 64), udpPacket(src, dst, "datagram"))
	f.Add(ipv4Packet(remote, podA, 1), []byte{0x45})
	f.Add([]byte{}, []byte{0x46, 0, 0, 20})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		s.DeliverFromOverlay([][]byte{bytes.Clone(a), bytes.Clone(b), bytes.Clone(a)})
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			fr, err := port.Next(ctx)
			cancel()
			if err != nil {
				return
			}
			if len(fr) < stack.NetOff+20 || !stack.IPv4HeaderValid(fr) {
				t.Fatalf("frame to the pod with a bad IPv4 header: % x", fr[:min(len(fr), 64)])
			}
			if got := netip.AddrFrom4([4]byte(fr[stack.NetOff+16 : stack.NetOff+20])); got != podA {
				t.Fatalf("frame to the pod for %v", got)
			}
		}
	})
}

// FuzzFromPod feeds what a pod may write to its interface into the whole data path (fast path,
// Service NAT, policy, overlay, netstack), from a pod with a neighbour on the node, a Service and
// a remote route: nothing may panic or stop the pod's reader, which must still answer an ARP
// request sent after the frame.
func FuzzFromPod(f *testing.F) {
	remote := netip.MustParseAddr("10.244.2.10")
	vip := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.70"), 80)
	lb := newFakeBalancer()
	lb.set(vip, netip.AddrPortFrom(podB, 8080))
	s, err := stack.New(stack.Options{PodCIDR: podCIDR, Gateway: gateway, ClusterPrefixes: clusters,
		Services: lb, ServicePrefixes: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	// The reader rests a millisecond after a frame no pod should send (most of what the fuzzer
	// makes); without the sleep it tries a thousand times as many.
	s.SetRest(func(time.Duration) {})
	pa, pb := stacktest.NewFramePort(1024), stacktest.NewFramePort(1024)
	if err := s.AttachPod(podA, pa); err != nil {
		f.Fatal(err)
	}
	if err := s.AttachPod(podB, pb); err != nil {
		f.Fatal(err)
	}
	s.SetRemoteRoutes([]netip.Prefix{netip.MustParsePrefix("10.244.2.0/24")}, &stacktest.Underlay{})
	a := func(ip netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(ip, port) }
	f.Add(stack.UDPFrame(a(podA, 1000), a(podB, 2000), gateway, 64, []byte("hello")))
	f.Add(stack.TCPGSOFrame(a(podA, 1000), a(remote, 2000), gateway, 1448, 3000))
	f.Add(stack.TCPGSOFrame(a(podA, 1000), vip, gateway, 1448, 3000))
	f.Add(stack.UDPFrame(a(podA, 1000), a(gateway, 53), gateway, 1, make([]byte, 2000)))
	f.Add(stack.ICMPEchoFrame(podA, gateway, gateway))
	f.Add([]byte{})
	arp := stack.ARPRequestFrame(podA, gateway)
	f.Fuzz(func(t *testing.T, frame []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := pa.Send(ctx, frame); err != nil {
			t.Fatal(err)
		}
		if err := pa.Send(ctx, arp); err != nil {
			t.Fatal(err)
		}
		for {
			fr, err := pa.Next(ctx)
			if err != nil {
				t.Fatal("the pod's reader did not answer an ARP request after the frame")
			}
			if len(fr) >= stack.NetOff && fr[stack.EthOff+12] == 0x08 && fr[stack.EthOff+13] == 0x06 {
				break
			}
		}
		for {
			c, cancel := context.WithTimeout(context.Background(), 0)
			_, err := pb.Next(c)
			cancel()
			if err != nil {
				return
			}
		}
	})
}
