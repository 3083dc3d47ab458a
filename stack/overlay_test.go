package stack_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/stack"
	"github.com/podnet/podnet/stack/stacktest"
)

const overlayMTU = 1420

// node is one node of a multi-node test: a Stack for 10.244.<i>.0/24.
type node struct {
	*stack.Stack
	cidr netip.Prefix
	gw   netip.Addr
}

func (n *node) host(i byte) netip.Addr {
	a := n.cidr.Addr().As4()
	a[3] = i
	return netip.AddrFrom4(a)
}

// newNodes returns count Stacks (MTU overlayMTU) joined by an unencrypted
// stacktest.Underlay, each with routes to the others' CIDRs. It checks for
// leaked goroutines after the test.
func newNodes(t *testing.T, count int) ([]*node, *stacktest.Underlay) {
	t.Helper()
	return newNodesWith(t, count, nil)
}

// newNodesWith is newNodes with every node's Options changed by modify.
func newNodesWith(t *testing.T, count int, modify func(*stack.Options)) ([]*node, *stacktest.Underlay) {
	t.Helper()
	checkNoLeaks(t)
	u := &stacktest.Underlay{}
	nodes := make([]*node, count)
	for i := range nodes {
		cidr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i + 1), 0}), 24)
		n := &node{cidr: cidr, gw: cidr.Addr().Next()}
		var err error
		opts := stack.Options{PodCIDR: cidr, Gateway: n.gw, ClusterPrefixes: clusters, MTU: overlayMTU}
		if modify != nil {
			modify(&opts)
		}
		n.Stack, err = stack.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		u.Add(cidr, n.DeliverFromOverlay)
		nodes[i] = n
	}
	for _, n := range nodes {
		var routes []netip.Prefix
		for _, o := range nodes {
			if o != n {
				routes = append(routes, o.cidr)
			}
		}
		n.SetRemoteRoutes(routes, u)
	}
	return nodes, u
}

// addNodePod attaches an in-process pod at ip to n.
func addNodePod(t *testing.T, n *node, ip netip.Addr, gso bool) *stacktest.Pod {
	t.Helper()
	p, err := stacktest.NewPod(stacktest.PodOptions{IP: ip, Gateway: n.gw, MTU: overlayMTU, GSO: gso})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.AttachPod(ip, p.Port()); err != nil {
		p.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.DetachPod(ip)
		p.Close()
	})
	return p
}

func TestCrossNodeTCP(t *testing.T) {
	for _, gso := range []bool{false, true} {
		t.Run(fmt.Sprintf("gso=%v", gso), func(t *testing.T) {
			nodes, u := newNodes(t, 2)
			a := addNodePod(t, nodes[0], nodes[0].host(10), gso)
			b := addNodePod(t, nodes[1], nodes[1].host(20), gso)
			ln, err := b.ListenTCP(8080)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := sinkServer(t, ln)
			c, err := a.DialTCP(timeout(t, 10*time.Second), netip.AddrPortFrom(b.IP, 8080))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			data := testData(2 << 20)
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
			if want := fmt.Sprintf("%x %s", sha256.Sum256(data), a.IP); string(reply) != want {
				t.Fatalf("server saw %q, want %q (data hash, sender's pod IP)", reply, want)
			}
			if m := u.MaxPacket.Load(); m > overlayMTU {
				t.Errorf("overlay carried a %d-byte packet; MTU %d", m, overlayMTU)
			}
			sa, sb := nodes[0].Stats(), nodes[1].Stats()
			if sa.OverlayTxBytes < 2<<20 || sb.OverlayRxBytes < 2<<20 {
				t.Errorf("overlay carried %d bytes out of A, %d into B; want the transfer", sa.OverlayTxBytes, sb.OverlayRxBytes)
			}
			if gso && sa.OverlayTxPackets < 2*sa.OverlayTxFrames {
				t.Errorf("GSO pods: %d frames became %d packets; want super-frames cut", sa.OverlayTxFrames, sa.OverlayTxPackets)
			}
			if sa.ToStackFrames != 0 || sb.ToStackFrames != 0 || sa.DroppedOverlayTx != 0 || sb.DroppedOverlayRx != 0 {
				t.Errorf("stats A %+v\nB %+v", sa, sb)
			}
		})
	}
}

func TestCrossNodeUDP(t *testing.T) {
	nodes, _ := newNodes(t, 3)
	a := addNodePod(t, nodes[0], nodes[0].host(10), false)
	c := addNodePod(t, nodes[2], nodes[2].host(30), false)
	srv, err := c.ListenUDP(9000)
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
	conn, err := a.DialUDP(netip.AddrPortFrom(c.IP, 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); !strings.HasPrefix(got, a.IP.String()+":") || !strings.HasSuffix(got, " ping") {
		t.Fatalf("reply %q, want the sender's pod address and ping", got)
	}
}

func TestCrossNodeICMP(t *testing.T) {
	nodes, _ := newNodes(t, 3)
	a := addNodePod(t, nodes[0], nodes[0].host(10), false)
	addNodePod(t, nodes[1], nodes[1].host(20), false)
	ctx := timeout(t, 10*time.Second)
	if err := a.Ping(ctx, nodes[1].host(20), 1); err != nil {
		t.Errorf("ping remote pod: %v", err)
	}
	if err := a.Ping(ctx, nodes[1].gw, 2); err != nil {
		t.Errorf("ping remote gateway: %v", err)
	}
	if err := a.Ping(ctx, nodes[2].gw, 3); err != nil {
		t.Errorf("ping third node's gateway: %v", err)
	}
	// A pod that is not attached anywhere does not answer.
	if err := a.Ping(timeout(t, 200*time.Millisecond), nodes[1].host(99), 4); err == nil {
		t.Error("ping to an unattached remote address was answered")
	}
	if st := nodes[1].Stats(); st.DroppedOverlayRx != 1 {
		t.Errorf("node B DroppedOverlayRx = %d, want 1", st.DroppedOverlayRx)
	}

	// Without remote routes the overlay is not used.
	nodes[0].SetRemoteRoutes(nil, nil)
	if err := a.Ping(timeout(t, 200*time.Millisecond), nodes[1].host(20), 5); err == nil {
		t.Error("ping answered after the remote routes were removed")
	}
}

// ipv4Packet returns an IPv4/UDP packet from src to dst with a valid header
// checksum.
func ipv4Packet(src, dst netip.Addr, ttl uint8) []byte {
	p := make([]byte, 28+4)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = ttl, 17
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	sum = sum&0xffff + sum>>16
	sum = sum&0xffff + sum>>16
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(p[24:], 12)
	return p
}

func TestDeliverFromOverlay(t *testing.T) {
	nodes, _ := newNodes(t, 2)
	n := nodes[1]
	pod := n.host(20)
	port := stacktest.NewFramePort(16)
	if err := n.AttachPod(pod, port); err != nil {
		t.Fatal(err)
	}
	remote := nodes[0].host(10)

	good := ipv4Packet(remote, pod, 64)
	n.DeliverFromOverlay([][]byte{good})
	f, err := port.Next(timeout(t, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	wantMAC := stack.PodMAC(pod)
	gwMAC := stack.GatewayMAC(n.gw)
	if f[0] != 2 || !bytes.Equal(f[1:10], make([]byte, 9)) {
		t.Errorf("virtio_net_hdr % x, want DATA_VALID only", f[:10])
	}
	if !bytes.Equal(f[stack.EthOff:stack.EthOff+6], wantMAC) || !bytes.Equal(f[stack.EthOff+6:stack.EthOff+12], gwMAC) {
		t.Errorf("Ethernet header % x", f[stack.EthOff:stack.NetOff])
	}
	ip := f[stack.NetOff:]
	if ip[8] != 63 || !stack.IPv4HeaderValid(f) || !bytes.Equal(ip[12:20], good[12:20]) {
		t.Errorf("IP header % x", ip[:20])
	}

	for name, p := range map[string][]byte{
		"short":          good[:10],
		"local source":   ipv4Packet(n.host(30), pod, 64),
		"foreign source": ipv4Packet(netip.MustParseAddr("192.0.2.1"), pod, 64),
		"no such pod":    ipv4Packet(remote, n.host(99), 64),
		"elsewhere":      ipv4Packet(remote, netip.MustParseAddr("10.96.0.10"), 64),
	} {
		before := n.Stats().DroppedOverlayRx
		n.DeliverFromOverlay([][]byte{p})
		if got := n.Stats().DroppedOverlayRx; got != before+1 {
			t.Errorf("%s: DroppedOverlayRx %d, want %d", name, got, before+1)
		}
	}
	before := n.Stats().DroppedTTL
	n.DeliverFromOverlay([][]byte{ipv4Packet(remote, pod, 1)})
	if got := n.Stats().DroppedTTL; got != before+1 {
		t.Errorf("TTL 1: DroppedTTL %d, want %d", got, before+1)
	}
	expectNoFrame(t, port)
}
