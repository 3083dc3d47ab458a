package overlay_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"

	"github.com/podnet/podnet/internal/leakcheck"
	"github.com/podnet/podnet/overlay"
	"github.com/podnet/podnet/overlay/overlaytest"
)

// checkNoLeaks fails the test if, once its other cleanups have run, a goroutine of
// wireguard-go, gVisor or podnet is left. Call it first.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	leakcheck.AtCleanup(t, leakcheck.Options{Match: []string{"golang.zx2c4.com/wireguard", "gvisor.dev/gvisor",
		"podnet/podnet/stack.", "podnet/podnet/overlay."}})
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// node is an Overlay with a channel of what it delivered.
type node struct {
	*overlay.Overlay
	key  overlay.Key
	addr netip.AddrPort
	cidr netip.Prefix
	got  chan []byte
}

func newNode(t *testing.T, i int, bind conn.Bind) *node {
	t.Helper()
	key, err := overlay.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return newNodeWithKey(t, i, bind, key)
}

// newNodeWithKey is newNode with the private key given: a node that restarts keeps its key.
func newNodeWithKey(t *testing.T, i int, bind conn.Bind, key overlay.Key) *node {
	t.Helper()
	var err error
	n := &node{
		key:  key,
		addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 57, byte(i)}), 51820),
		cidr: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24),
		got:  make(chan []byte, 4096),
	}
	n.Overlay, err = overlay.New(overlay.Options{
		PrivateKey: key,
		ListenAddr: n.addr,
		Bind:       bind,
		Deliver: func(pkts [][]byte) {
			for _, p := range pkts {
				select {
				case n.got <- bytes.Clone(p):
				default:
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func (n *node) peer() overlay.Peer {
	return overlay.Peer{PublicKey: n.PublicKey(), Endpoint: n.addr, AllowedIPs: []netip.Prefix{n.cidr}}
}

func (n *node) host(i byte) netip.Addr {
	a := n.cidr.Addr().As4()
	a[3] = i
	return netip.AddrFrom4(a)
}

// packet returns an IPv4/UDP packet from src to dst (checksums are not
// WireGuard's concern and are left zero).
func packet(src, dst netip.Addr, payload string) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 17
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[20:], 1000)
	binary.BigEndian.PutUint16(p[22:], 2000)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

// expect waits for n to deliver want.
func (n *node) expect(t *testing.T, want []byte) {
	t.Helper()
	ctx := timeout(t, 10*time.Second)
	for {
		select {
		case got := <-n.got:
			if bytes.Equal(got, want) {
				return
			}
		case <-ctx.Done():
			t.Fatalf("node %v: packet % x not delivered", n.addr, want[:28])
		}
	}
}

// expectNone fails if n delivers anything within a short while.
func (n *node) expectNone(t *testing.T) {
	t.Helper()
	select {
	case got := <-n.got:
		t.Fatalf("node %v: unexpected packet % x", n.addr, got)
	case <-time.After(200 * time.Millisecond):
	}
}

// send sends one packet from a host of a to a host of b and checks it
// arrives.
func send(t *testing.T, a, b *node, payload string) {
	t.Helper()
	p := packet(a.host(10), b.host(20), payload)
	if err := a.SendPackets([][]byte{p}); err != nil {
		t.Fatal(err)
	}
	b.expect(t, p)
}

func TestTwoOverlaysChannelBind(t *testing.T) {
	checkNoLeaks(t)
	binds := bindtest.NewChannelBinds()
	a, b := newNode(t, 1, binds[0]), newNode(t, 2, binds[1])
	// bindtest's endpoints are ports: each bind sends to the other's.
	pa, pb := a.peer(), b.peer()
	pa.Endpoint = netip.AddrPortFrom(pa.Endpoint.Addr(), 2)
	pb.Endpoint = netip.AddrPortFrom(pb.Endpoint.Addr(), 1)
	if err := a.SetPeers([]overlay.Peer{pb}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetPeers([]overlay.Peer{pa}); err != nil {
		t.Fatal(err)
	}
	send(t, a, b, "hello b")
	send(t, b, a, "hello a")

	// A batch.
	var batch [][]byte
	for i := range 100 {
		batch = append(batch, packet(a.host(10), b.host(20), fmt.Sprintf("packet %d", i)))
	}
	if err := a.SendPackets(batch); err != nil {
		t.Fatal(err)
	}
	for _, p := range batch {
		b.expect(t, p)
	}
	sa, sb := a.Stats(), b.Stats()
	if sa.TxPackets != 101 || sb.RxPackets != 101 || sb.TxPackets != 1 || sa.RxPackets != 1 {
		t.Errorf("stats: a %+v, b %+v", sa, sb)
	}
}

// mesh returns n nodes on an in-memory network, each with all others as
// peers.
func mesh(t *testing.T, n int) (*overlaytest.Network, []*node) {
	t.Helper()
	checkNoLeaks(t)
	network := overlaytest.NewNetwork()
	nodes := make([]*node, n)
	for i := range nodes {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 57, byte(i + 1)}), 51820)
		nodes[i] = newNode(t, i+1, network.Bind(addr))
	}
	for i, nd := range nodes {
		var peers []overlay.Peer
		for j, other := range nodes {
			if i != j {
				peers = append(peers, other.peer())
			}
		}
		if err := nd.SetPeers(peers); err != nil {
			t.Fatal(err)
		}
	}
	return network, nodes
}

func TestThreeOverlays(t *testing.T) {
	_, nodes := mesh(t, 3)
	for i, a := range nodes {
		for j, b := range nodes {
			if i != j {
				send(t, a, b, fmt.Sprintf("%d to %d", i, j))
			}
		}
	}
	// A destination no peer has is dropped and counted.
	a := nodes[0]
	if err := a.SendPackets([][]byte{packet(a.host(10), netip.MustParseAddr("10.99.0.1"), "nowhere")}); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.DroppedNoPeer != 1 {
		t.Errorf("DroppedNoPeer = %d, want 1", st.DroppedNoPeer)
	}
	// So is a packet larger than the MTU.
	big := make([]byte, overlay.DefaultMTU+1)
	copy(big, packet(a.host(10), nodes[1].host(20), ""))
	a.SendPackets([][]byte{big})
	if st := a.Stats(); st.DroppedTooBig != 1 {
		t.Errorf("DroppedTooBig = %d, want 1", st.DroppedTooBig)
	}
}

func TestSpoofedSourceDropped(t *testing.T) {
	_, nodes := mesh(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	// a claims to send from c's CIDR: WireGuard on b drops it.
	p := packet(c.host(10), b.host(20), "spoofed")
	if err := a.SendPackets([][]byte{p}); err != nil {
		t.Fatal(err)
	}
	b.expectNone(t)
	send(t, a, b, "genuine")
}

func TestSetPeers(t *testing.T) {
	network, nodes := mesh(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	send(t, a, b, "before")

	// Unchanged peers: no new handshake (sessions kept).
	before := a.Stats().TxDatagrams
	if err := a.SetPeers([]overlay.Peer{b.peer(), c.peer()}); err != nil {
		t.Fatal(err)
	}
	send(t, a, b, "unchanged")
	if st := a.Stats(); st.TxDatagrams != before+1 {
		t.Errorf("after a no-op SetPeers, a sent %d datagrams for one packet; want 1 (no handshake)", st.TxDatagrams-before)
	}

	// Replace: node b is gone; b2 (new key, address and CIDR) takes its
	// place on a and c.
	b.Close()
	b2 := newNode(t, 22, network.Bind(netip.MustParseAddrPort("127.0.57.22:51820")))
	for _, n := range []*node{a, c} {
		if err := n.SetPeers([]overlay.Peer{b2.peer(), other(n, a, c).peer()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b2.SetPeers([]overlay.Peer{a.peer(), c.peer()}); err != nil {
		t.Fatal(err)
	}
	send(t, a, b2, "to the new b")
	send(t, b2, c, "from the new b")
	// b's old CIDR is no longer routed.
	dropped := a.Stats().DroppedNoPeer
	a.SendPackets([][]byte{packet(a.host(10), b.host(20), "to the old b")})
	if got := a.Stats().DroppedNoPeer; got != dropped+1 {
		t.Errorf("DroppedNoPeer = %d, want %d", got, dropped+1)
	}

	// Update in place: c's endpoint and allowed IPs change (same key).
	cp := c.peer()
	cp.AllowedIPs = append(cp.AllowedIPs, netip.MustParsePrefix("10.245.3.0/24"))
	if err := a.SetPeers([]overlay.Peer{b2.peer(), cp}); err != nil {
		t.Fatal(err)
	}
	p := packet(a.host(10), netip.MustParseAddr("10.245.3.7"), "to c's new range")
	a.SendPackets([][]byte{p})
	c.expect(t, p)

	// Remove c: traffic to it is dropped, b2 is undisturbed.
	if err := a.SetPeers([]overlay.Peer{b2.peer()}); err != nil {
		t.Fatal(err)
	}
	dropped = a.Stats().DroppedNoPeer
	a.SendPackets([][]byte{packet(a.host(10), c.host(20), "to removed c")})
	if got := a.Stats().DroppedNoPeer; got != dropped+1 {
		t.Errorf("DroppedNoPeer = %d, want %d", got, dropped+1)
	}
	send(t, a, b2, "b2 still there")

	// Errors.
	for _, bad := range [][]overlay.Peer{
		{{}},
		{b2.peer(), b2.peer()},
		{a.peer()},
		{{PublicKey: b2.PublicKey(), AllowedIPs: []netip.Prefix{{}}}},
	} {
		if err := a.SetPeers(bad); err == nil {
			t.Errorf("SetPeers(%v) succeeded", bad)
		}
	}
}

func other(n, x, y *node) *node {
	if n == x {
		return y
	}
	return x
}

func TestKeyRotation(t *testing.T) {
	_, nodes := mesh(t, 2)
	a, b := nodes[0], nodes[1]
	send(t, a, b, "before rotation")

	k, err := overlay.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetPrivateKey(k); err != nil {
		t.Fatal(err)
	}
	if a.PublicKey() != k.PublicKey() {
		t.Fatal("PublicKey did not change")
	}
	// b still knows a's old key: a's new handshakes are refused.
	p := packet(a.host(10), b.host(20), "b does not know the new key")
	a.SendPackets([][]byte{p})
	b.expectNone(t)
	if b.Stats().RejectedHandshakes == 0 {
		t.Error("b counted no rejected handshake")
	}
	// Once b knows the new key, traffic resumes in both directions.
	if err := b.SetPeers([]overlay.Peer{a.peer()}); err != nil {
		t.Fatal(err)
	}
	send(t, b, a, "after rotation, b to a")
	send(t, a, b, "after rotation, a to b")
}

func TestNonPeerDropped(t *testing.T) {
	// z knows y, y does not know z.
	_, nodes := mesh(t, 3)
	x, y, z := nodes[0], nodes[1], nodes[2]
	if err := y.SetPeers([]overlay.Peer{x.peer()}); err != nil {
		t.Fatal(err)
	}
	p := packet(z.host(10), y.host(20), "from a stranger")
	z.SendPackets([][]byte{p})
	y.expectNone(t)
	if st := y.Stats(); st.RejectedHandshakes == 0 || st.RxPackets != 0 {
		t.Errorf("y stats %+v: want rejected handshakes and no packets", st)
	}
	send(t, x, y, "x is still a peer")
}

func TestUDPBind(t *testing.T) {
	checkNoLeaks(t)
	var nodes [2]*node
	for i := range nodes {
		key, err := overlay.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		n := &node{key: key, cidr: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i + 1), 0}), 24), got: make(chan []byte, 16)}
		n.Overlay, err = overlay.New(overlay.Options{
			PrivateKey: key,
			ListenAddr: netip.MustParseAddrPort("127.0.0.1:0"),
			Deliver: func(pkts [][]byte) {
				for _, p := range pkts {
					n.got <- bytes.Clone(p)
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		if n.Port() == 0 {
			t.Fatal("Port() = 0")
		}
		n.addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), n.Port())
		nodes[i] = n
	}
	a, b := nodes[0], nodes[1]
	if err := a.SetPeers([]overlay.Peer{b.peer()}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetPeers([]overlay.Peer{a.peer()}); err != nil {
		t.Fatal(err)
	}
	send(t, a, b, "over UDP")
	send(t, b, a, "and back")
	if st := a.Stats(); st.TxDatagrams == 0 || st.RxDatagrams == 0 {
		t.Errorf("stats %+v: want datagrams counted", st)
	}
}

func TestNewErrors(t *testing.T) {
	key, _ := overlay.GenerateKey()
	deliver := func([][]byte) {}
	for _, opts := range []overlay.Options{
		{Deliver: deliver, ListenAddr: netip.MustParseAddrPort("127.0.0.1:0")},
		{PrivateKey: key, ListenAddr: netip.MustParseAddrPort("127.0.0.1:0")},
		{PrivateKey: key, Deliver: deliver},
		{PrivateKey: key, Deliver: deliver, ListenAddr: netip.MustParseAddrPort("127.0.0.1:0"), MTU: 100},
	} {
		if o, err := overlay.New(opts); err == nil {
			o.Close()
			t.Errorf("New(%+v) succeeded", opts)
		}
	}
}

func TestKeys(t *testing.T) {
	k, err := overlay.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if k[0]&7 != 0 || k[31]&128 != 0 || k[31]&64 == 0 {
		t.Errorf("key %v is not clamped", k)
	}
	parsed, err := overlay.ParseKey(k.String())
	if err != nil || parsed != k {
		t.Errorf("ParseKey(%q) = %v, %v", k.String(), parsed, err)
	}
	if _, err := overlay.ParseKey("AAAA"); err == nil {
		t.Error("ParseKey accepted a short key")
	}
	// RFC 7748 section 6.1 test vector (Alice).
	priv, _ := overlay.ParseKey("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=")
	if got, want := priv.PublicKey().String(), "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="; got != want {
		t.Errorf("PublicKey = %s, want %s", got, want)
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	k, err := overlay.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %#o, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if string(b) != k.String()+"\n" {
		t.Errorf("key file holds %q, want %q", b, k.String()+"\n")
	}
	again, err := overlay.LoadOrCreateKey(path)
	if err != nil || again != k {
		t.Errorf("second LoadOrCreateKey = %v, %v; want the same key", again, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the key directory, want 1", len(entries))
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := overlay.LoadOrCreateKey(path); err == nil {
			t.Errorf("mode %#o accepted", mode)
		}
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("not a key\n"), 0o600)
	if _, err := overlay.LoadOrCreateKey(path); err == nil {
		t.Error("a file without a key was accepted")
	}
	if _, err := overlay.LoadOrCreateKey(filepath.Join(dir, "missing", "node.key")); err == nil {
		t.Error("a key in a missing directory was created")
	}
}

// TestRestartedNodeHandshakes: a node's overlay restarts with its key while its peer keeps the
// session it had with the old one. The peer's packets to it are dropped (the new overlay does
// not know that session) until a handshake; the restarted node starts one at once with
// Handshake, so the peer's packets arrive again within a second or two, though the peer sends
// nothing but them (a download), rather than after the peer's 15 s rekey timeout.
func TestRestartedNodeHandshakes(t *testing.T) {
	checkNoLeaks(t)
	network := overlaytest.NewNetwork()
	addr := func(i byte) netip.AddrPort { return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 57, i}), 51820) }
	a, b := newNode(t, 1, network.Bind(addr(1))), newNode(t, 2, network.Bind(addr(2)))
	if err := a.SetPeers([]overlay.Peer{b.peer()}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetPeers([]overlay.Peer{a.peer()}); err != nil {
		t.Fatal(err)
	}
	send(t, a, b, "before")
	send(t, b, a, "before")
	b.Close()
	b2 := newNodeWithKey(t, 2, network.Bind(addr(2)), b.key)
	if err := b2.SetPeers([]overlay.Peer{a.peer()}); err != nil {
		t.Fatal(err)
	}
	if err := b2.Handshake(); err != nil {
		t.Fatal(err)
	}
	ctx := timeout(t, 5*time.Second)
	for i := 0; ; i++ {
		p := packet(a.host(10), b2.host(20), fmt.Sprintf("after %d", i))
		if err := a.SendPackets([][]byte{p}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-b2.got:
			return
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("the restarted node got nothing from its peer within 5 s")
		}
	}
}
