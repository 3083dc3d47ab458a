package overlay_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/overlay"
	"github.com/podnet/podnet/overlay/overlaytest"
	"github.com/podnet/podnet/stack"
	"github.com/podnet/podnet/stack/stacktest"
)

// The tests in this file join node Stacks (package stack) with Overlays over
// an in-memory network: the data path of issue 4, end to end, without
// privileges.

const podMTU = 1420

// stackNode is a node: a Stack for 10.244.<i>.0/24 and its Overlay.
type stackNode struct {
	st   *stack.Stack
	ov   *overlay.Overlay
	cidr netip.Prefix
	gw   netip.Addr
	addr netip.AddrPort
}

func (n *stackNode) host(i byte) netip.Addr {
	a := n.cidr.Addr().As4()
	a[3] = i
	return netip.AddrFrom4(a)
}

// newCluster returns count nodes with full-mesh peers and remote routes.
func newCluster(t *testing.T, count int) []*stackNode {
	t.Helper()
	checkNoLeaks(t)
	network := overlaytest.NewNetwork()
	nodes := make([]*stackNode, count)
	for i := range nodes {
		cidr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i + 1), 0}), 24)
		n := &stackNode{cidr: cidr, gw: cidr.Addr().Next(),
			addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 57, byte(i + 1)}), 51820)}
		var err error
		n.st, err = stack.New(stack.Options{
			PodCIDR:         cidr,
			Gateway:         n.gw,
			ClusterPrefixes: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
			MTU:             podMTU,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.st.Close() })
		key, err := overlay.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		n.ov, err = overlay.New(overlay.Options{
			PrivateKey: key,
			ListenAddr: n.addr,
			MTU:        podMTU,
			Deliver:    n.st.DeliverFromOverlay,
			Bind:       network.Bind(n.addr),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.ov.Close() }) // before the Stack's Close
		nodes[i] = n
	}
	for _, n := range nodes {
		var peers []overlay.Peer
		var routes []netip.Prefix
		for _, o := range nodes {
			if o != n {
				peers = append(peers, overlay.Peer{PublicKey: o.ov.PublicKey(), Endpoint: o.addr, AllowedIPs: []netip.Prefix{o.cidr}})
				routes = append(routes, o.cidr)
			}
		}
		if err := n.ov.SetPeers(peers); err != nil {
			t.Fatal(err)
		}
		n.st.SetRemoteRoutes(routes, n.ov)
	}
	return nodes
}

func (n *stackNode) addPod(t *testing.T, ip netip.Addr, gso bool) *stacktest.Pod {
	t.Helper()
	p, err := stacktest.NewPod(stacktest.PodOptions{IP: ip, Gateway: n.gw, MTU: podMTU, GSO: gso})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.st.AttachPod(ip, p.Port()); err != nil {
		p.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.st.DetachPod(ip)
		p.Close()
	})
	return p
}

// hashServer accepts one connection, reads it to the end and answers with the
// SHA-256 of what it read and the peer's address.
func hashServer(ln net.Listener) <-chan error {
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			done <- err
			return
		}
		peer := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
		_, err = fmt.Fprintf(c, "%x %s", h.Sum(nil), peer)
		done <- err
	}()
	return done
}

func TestStacksOverWireGuardTCP(t *testing.T) {
	for _, gso := range []bool{false, true} {
		t.Run(fmt.Sprintf("gso=%v", gso), func(t *testing.T) {
			nodes := newCluster(t, 2)
			a := nodes[0].addPod(t, nodes[0].host(10), gso)
			b := nodes[1].addPod(t, nodes[1].host(20), gso)
			ln, err := b.ListenTCP(8080)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := hashServer(ln)
			c, err := a.DialTCP(timeout(t, 10*time.Second), netip.AddrPortFrom(b.IP, 8080))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			data := make([]byte, 2<<20)
			for i := range data {
				data[i] = byte(i * 31 >> 8)
			}
			start := time.Now()
			if _, err := c.Write(data); err != nil {
				t.Fatal(err)
			}
			c.CloseWrite()
			reply, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			elapsed := time.Since(start)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%x %s", sha256.Sum256(data), a.IP); string(reply) != want {
				t.Fatalf("server saw %q, want %q (data hash, sender's pod IP)", reply, want)
			}
			sa, sb, oa, ob := nodes[0].st.Stats(), nodes[1].st.Stats(), nodes[0].ov.Stats(), nodes[1].ov.Stats()
			if oa.DroppedTooBig != 0 || oa.DroppedNoPeer != 0 || ob.RxBytes < 2<<20 {
				t.Errorf("overlay stats A %+v\nB %+v", oa, ob)
			}
			t.Logf("2 MiB in %v (%.0f Mbit/s); stack A: %d frames -> %d packets; stack B: %d of %d packets coalesced; overlay A: %+v",
				elapsed, float64(len(data))*8/elapsed.Seconds()/1e6, sa.OverlayTxFrames, sa.OverlayTxPackets, sb.OverlayRxCoalesced, sb.OverlayRxPackets, oa)
		})
	}
}

func TestStacksOverWireGuardUDPAndICMP(t *testing.T) {
	nodes := newCluster(t, 3)
	a := nodes[0].addPod(t, nodes[0].host(10), false)
	b := nodes[1].addPod(t, nodes[1].host(20), false)
	c := nodes[2].addPod(t, nodes[2].host(30), false)

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

	ctx := timeout(t, 10*time.Second)
	for _, dst := range []netip.Addr{b.IP, c.IP, nodes[1].gw, nodes[2].gw} {
		if err := a.Ping(ctx, dst, 1); err != nil {
			t.Errorf("ping %v: %v", dst, err)
		}
	}
	if err := b.Ping(ctx, nodes[0].gw, 2); err != nil {
		t.Errorf("ping from B to A's gateway: %v", err)
	}
}
