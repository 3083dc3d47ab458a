package integration

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/overlay"
	corev1 "k8s.io/api/core/v1"
)

// strangerHandshake makes a WireGuard device in the test process that knows node's public key
// and endpoint, and sends a packet to podIP through it, which makes it start a handshake. The
// node must not know the stranger: with key nil it is a fresh key; otherwise the given private
// key (a removed node's) is used.
func strangerHandshake(t *testing.T, l *labRun, node, podIP string, key []byte) {
	t.Helper()
	var n corev1.Node
	if err := json.Unmarshal([]byte(l.must(t, "get", "node", node, "-o", "json")), &n); err != nil {
		t.Fatal(err)
	}
	peerKey, err := overlay.ParseKey(n.Annotations[cluster.AnnotationWireGuardKey])
	if err != nil {
		t.Fatalf("node %s key: %v", node, err)
	}
	endpoint, err := netip.ParseAddrPort(n.Annotations[cluster.AnnotationWireGuardEndpoint])
	if err != nil {
		t.Fatalf("node %s endpoint: %v", node, err)
	}
	cidr := netip.MustParsePrefix(n.Spec.PodCIDR)
	var priv overlay.Key
	if key == nil {
		if priv, err = overlay.GenerateKey(); err != nil {
			t.Fatal(err)
		}
	} else if priv, err = overlay.ParseKey(strings.TrimSpace(string(key))); err != nil {
		t.Fatal(err)
	}
	// An address of the lab's loopback range that no node uses.
	a4 := endpoint.Addr().As4()
	a4[3] = 250
	ov, err := overlay.New(overlay.Options{
		PrivateKey: priv,
		ListenAddr: netip.AddrPortFrom(netip.AddrFrom4(a4), 0),
		MTU:        1420,
		Deliver:    func([][]byte) {},
	})
	if err != nil {
		t.Fatalf("stranger's WireGuard: %v", err)
	}
	defer ov.Close()
	if err := ov.SetPeers([]overlay.Peer{{PublicKey: peerKey, Endpoint: endpoint, AllowedIPs: []netip.Prefix{cidr}}}); err != nil {
		t.Fatal(err)
	}
	src := netip.AddrFrom4([4]byte{10, 244, 250, 1})
	dst := netip.MustParseAddr(podIP)
	for i := 0; i < 3; i++ {
		if err := ov.SendPackets([][]byte{udpPacket(src, dst)}); err != nil {
			t.Fatalf("stranger send: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// udpPacket is a minimal IPv4/UDP packet (checksums left zero: it never reaches a pod).
func udpPacket(src, dst netip.Addr) []byte {
	p := make([]byte, 20+8+4)
	p[0] = 0x45
	p[2], p[3] = 0, byte(len(p))
	p[8] = 64
	p[9] = 17
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	p[21], p[23] = 0x99, 0x99
	p[25] = 12
	copy(p[28:], "ping")
	return p
}
