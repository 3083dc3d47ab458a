package overlay_test

import (
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn/bindtest"

	"github.com/podnet/podnet/overlay"
)

// TestHandshakeStats: a handshake between two nodes is counted once on each, as initiated on the
// sender and answered on the receiver, and both report its time for the other as a peer.
func TestHandshakeStats(t *testing.T) {
	checkNoLeaks(t)
	binds := bindtest.NewChannelBinds()
	a, b := newNode(t, 1, binds[0]), newNode(t, 2, binds[1])
	pa, pb := a.peer(), b.peer()
	// bindtest's endpoints are ports: each bind sends to the other's.
	pa.Endpoint = netip.AddrPortFrom(pa.Endpoint.Addr(), 2)
	pb.Endpoint = netip.AddrPortFrom(pb.Endpoint.Addr(), 1)
	if err := a.SetPeers([]overlay.Peer{pb}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetPeers([]overlay.Peer{pa}); err != nil {
		t.Fatal(err)
	}
	ps, err := a.PeerStats()
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].PublicKey != b.PublicKey() || !ps[0].LastHandshake.IsZero() {
		t.Fatalf("a's peers before any traffic: %+v, want b without a handshake", ps)
	}
	before := time.Now()
	send(t, a, b, "hello b")
	sa, sb := a.Stats(), b.Stats()
	if sa.HandshakesInitiated != 1 || sa.HandshakesAnswered != 0 || sb.HandshakesInitiated != 0 || sb.HandshakesAnswered != 1 {
		t.Errorf("handshakes: a initiated %d answered %d, b initiated %d answered %d; want 1 0 0 1",
			sa.HandshakesInitiated, sa.HandshakesAnswered, sb.HandshakesInitiated, sb.HandshakesAnswered)
	}
	for _, n := range []struct {
		name string
		o    *node
		peer overlay.Key
	}{{"a", a, b.PublicKey()}, {"b", b, a.PublicKey()}} {
		// b completes its side on a's first data packet, which send waited for.
		ps, err := n.o.PeerStats()
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 1 || ps[0].PublicKey != n.peer {
			t.Fatalf("%s's peers: %+v, want one", n.name, ps)
		}
		if hs := ps[0].LastHandshake; hs.Before(before.Add(-time.Second)) || hs.After(time.Now().Add(time.Second)) {
			t.Errorf("%s's latest handshake at %v, want between %v and now", n.name, hs, before)
		}
	}
	if err := a.SetPeers(nil); err != nil {
		t.Fatal(err)
	}
	if ps, err := a.PeerStats(); err != nil || len(ps) != 0 {
		t.Errorf("a's peers after removing them all: %+v, %v", ps, err)
	}
}
