package stack

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/podnet/podnet/tap"
)

var (
	testGW    = netip.MustParseAddr("10.244.1.1")
	testSelf  = netip.MustParseAddr("10.244.1.10")
	testPeer  = netip.MustParseAddr("10.244.1.20")
	testOther = netip.MustParseAddr("10.244.1.30") // in the CIDR, not attached
)

func testTable() (*podTable, *pod) {
	peer := &pod{ip: testPeer, ip4: testPeer.As4(), mac: macFor(testPeer)}
	self := &pod{ip: testSelf, ip4: testSelf.As4(), mac: macFor(testSelf)}
	return &podTable{byIP: map[[4]byte]*pod{peer.ip4: peer, self.ip4: self}}, peer
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

func TestMACs(t *testing.T) {
	if got := PodMAC(netip.MustParseAddr("10.244.1.7")).String(); got != "0a:58:0a:f4:01:07" {
		t.Errorf("PodMAC = %s", got)
	}
	if got := GatewayMAC(testGW).String(); got != "0a:58:0a:f4:01:01" {
		t.Errorf("GatewayMAC = %s", got)
	}
	if m := PodMAC(testSelf); m[0]&2 == 0 || m[0]&1 != 0 {
		t.Errorf("PodMAC %s is not locally administered unicast", m)
	}
}

func TestClassify(t *testing.T) {
	table, peer := testTable()
	mutate := func(f []byte, fn func(f []byte)) []byte { fn(f); return f }
	tests := []struct {
		name  string
		frame []byte
		want  verdict
		dst   *pod
	}{
		{"empty", nil, verdictBadFrame, nil},
		{"short ethernet", make([]byte, netOff-1), verdictBadFrame, nil},
		{"udp to local pod", udpFrame(ap(testSelf, 1000), ap(testPeer, 2000), testGW, 64, []byte("x")), verdictForward, peer},
		{"tcp gso to local pod", tcpGSOFrame(ap(testSelf, 1000), ap(testPeer, 2000), testGW, 1448, 20000), verdictForward, peer},
		{"udp to gateway", udpFrame(ap(testSelf, 1000), ap(testGW, 53), testGW, 64, nil), verdictStack, nil},
		{"udp outside", udpFrame(ap(testSelf, 1000), ap(netip.MustParseAddr("1.1.1.1"), 53), testGW, 64, nil), verdictStack, nil},
		{"udp to unattached pod", udpFrame(ap(testSelf, 1000), ap(testOther, 53), testGW, 64, nil), verdictStack, nil},
		{"spoofed source", udpFrame(ap(testOther, 1000), ap(testPeer, 2000), testGW, 64, nil), verdictSpoofed, nil},
		{"spoofed source to gateway", udpFrame(ap(testOther, 1000), ap(testGW, 53), testGW, 64, nil), verdictSpoofed, nil},
		{"ttl 1 to local pod", udpFrame(ap(testSelf, 1000), ap(testPeer, 2000), testGW, 1, nil), verdictTTL, nil},
		{"ttl 0 to local pod", udpFrame(ap(testSelf, 1000), ap(testPeer, 2000), testGW, 0, nil), verdictTTL, nil},
		{"ttl 1 to gateway", udpFrame(ap(testSelf, 1000), ap(testGW, 53), testGW, 1, nil), verdictStack, nil},
		{"multicast", udpFrame(ap(testSelf, 5353), ap(netip.MustParseAddr("224.0.0.251"), 5353), testGW, 1, nil), verdictNoRoute, nil},
		{"broadcast", udpFrame(ap(testSelf, 68), ap(netip.MustParseAddr("255.255.255.255"), 67), testGW, 64, nil), verdictNoRoute, nil},
		{"loopback", udpFrame(ap(testSelf, 68), ap(netip.MustParseAddr("127.0.0.1"), 67), testGW, 64, nil), verdictNoRoute, nil},
		{"echo to gateway", icmpEchoFrame(testSelf, testGW, testGW), verdictStack, nil},
		{"echo to pod", icmpEchoFrame(testSelf, testPeer, testGW), verdictForward, peer},
		{"echo outside", icmpEchoFrame(testSelf, netip.MustParseAddr("8.8.8.8"), testGW), verdictNoRoute, nil},
		{"icmp error outside", mutate(icmpEchoFrame(testSelf, netip.MustParseAddr("8.8.8.8"), testGW), func(f []byte) {
			f[netOff+header.IPv4MinimumSize] = byte(header.ICMPv4DstUnreachable)
		}), verdictStack, nil},
		{"arp for gateway", arpRequestFrame(testSelf, testGW), verdictARPReply, nil},
		{"arp for anything", arpRequestFrame(testSelf, netip.MustParseAddr("192.0.2.1")), verdictARPReply, nil},
		{"gratuitous arp", arpRequestFrame(testSelf, testSelf), verdictUnsupported, nil},
		{"arp probe for own address", arpRequestFrame(netip.IPv4Unspecified(), testSelf), verdictUnsupported, nil},
		{"arp reply", mutate(arpRequestFrame(testSelf, testGW), func(f []byte) { f[netOff+7] = 2 }), verdictUnsupported, nil},
		{"arp short", arpRequestFrame(testSelf, testGW)[:netOff+27], verdictBadFrame, nil},
		{"ipv6", mutate(make([]byte, netOff+40), func(f []byte) { binary.BigEndian.PutUint16(f[ethOff+12:], etherTypeIPv6) }), verdictStack, nil},
		{"lldp", mutate(make([]byte, netOff+40), func(f []byte) { binary.BigEndian.PutUint16(f[ethOff+12:], 0x88cc) }), verdictUnsupported, nil},
		{"ip version 6 in ipv4", mutate(udpFrame(ap(testSelf, 1), ap(testPeer, 2), testGW, 64, nil), func(f []byte) { f[netOff] = 0x65 }), verdictBadFrame, nil},
		{"ihl too small", mutate(udpFrame(ap(testSelf, 1), ap(testPeer, 2), testGW, 64, nil), func(f []byte) { f[netOff] = 0x44 }), verdictBadFrame, nil},
		{"total length beyond frame", mutate(udpFrame(ap(testSelf, 1), ap(testPeer, 2), testGW, 64, nil), func(f []byte) {
			binary.BigEndian.PutUint16(f[netOff+2:], uint16(len(f)))
		}), verdictBadFrame, nil},
		{"truncated ipv4 header", udpFrame(ap(testSelf, 1), ap(testPeer, 2), testGW, 64, nil)[:netOff+19], verdictBadFrame, nil},
		{"tiny first fragment", fragmentFrames(udpFrame(ap(testSelf, 1), ap(testPeer, 2), testGW, 64, make([]byte, 1200)), 16)[0], verdictTinyFragment, nil},
		{"tiny later fragment", fragmentFrames(udpFrame(ap(testSelf, 1), ap(testPeer, 2), testGW, 64, make([]byte, 1200)), 16)[5], verdictTinyFragment, nil},
		{"tiny fragment to gateway", fragmentFrames(udpFrame(ap(testSelf, 1), ap(testGW, 53), testGW, 64, make([]byte, 1200)), 248)[0], verdictTinyFragment, nil},
		{"fragment of least size", fragmentFrames(udpFrame(ap(testSelf, 1), ap(testPeer, 2), testGW, 64, make([]byte, 1200)), 256)[0], verdictForward, peer},
		{"small last fragment", fragmentFrames(udpFrame(ap(testSelf, 1), ap(testPeer, 2), testGW, 64, make([]byte, 1200)), 528)[2], verdictForward, peer},
		{"spoofed tiny fragment", fragmentFrames(udpFrame(ap(testOther, 1), ap(testPeer, 2), testGW, 64, make([]byte, 1200)), 16)[0], verdictSpoofed, nil},
		{"trailing padding", append(udpFrame(ap(testSelf, 1), ap(testPeer, 2), testGW, 64, nil), 0, 0, 0, 0), verdictForward, peer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, dst := classify(tt.frame, testSelf.As4(), testGW.As4(), table)
			if got != tt.want || dst != tt.dst {
				t.Errorf("classify = %v, %v; want %v, %v", got, dst, tt.want, tt.dst)
			}
		})
	}
}

func TestClassifyNilTable(t *testing.T) {
	f := udpFrame(ap(testSelf, 1000), ap(testPeer, 2000), testGW, 64, nil)
	if got, _ := classify(f, testSelf.As4(), testGW.As4(), nil); got != verdictStack {
		t.Errorf("classify with no pods = %v, want stack", got)
	}
}

// TestRewriteForward checks that a forwarded frame differs from the original
// only in its MAC addresses, TTL and header checksum, for an ordinary frame
// and for a GSO super-frame whose virtio_net_hdr must pass untouched.
func TestRewriteForward(t *testing.T) {
	gwMAC, dstMAC := macFor(testGW), macFor(testPeer)
	tests := []struct {
		name  string
		frame []byte
	}{
		{"udp", udpFrame(ap(testSelf, 1000), ap(testPeer, 2000), testGW, 64, []byte("hello"))},
		{"tcp gso", tcpGSOFrame(ap(testSelf, 1000), ap(testPeer, 2000), testGW, 1448, 60000)},
		{"ttl 2", udpFrame(ap(testSelf, 1000), ap(testPeer, 2000), testGW, 2, nil)},
		{"ttl 255", udpFrame(ap(testSelf, 1000), ap(testPeer, 2000), testGW, 255, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := bytes.Clone(tt.frame)
			f := tt.frame
			rewriteForward(f, &dstMAC, &gwMAC)

			if !bytes.Equal(f[:vnetLen], orig[:vnetLen]) {
				t.Errorf("virtio_net_hdr changed: % x -> % x", orig[:vnetLen], f[:vnetLen])
			}
			if !bytes.Equal(f[ethOff:ethOff+6], dstMAC[:]) || !bytes.Equal(f[ethOff+6:ethOff+12], gwMAC[:]) {
				t.Errorf("Ethernet addresses % x, want dst %x src %x", f[ethOff:ethOff+12], dstMAC, gwMAC)
			}
			if f[netOff+8] != orig[netOff+8]-1 {
				t.Errorf("TTL %d, want %d", f[netOff+8], orig[netOff+8]-1)
			}
			if !ipv4HeaderValid(f) {
				t.Errorf("IPv4 header checksum invalid after rewrite")
			}
			// Everything else is byte-identical.
			want := bytes.Clone(orig)
			copy(want[ethOff:], f[ethOff:ethOff+12])
			want[netOff+8] = f[netOff+8]
			copy(want[netOff+10:], f[netOff+10:netOff+12])
			if !bytes.Equal(f, want) {
				t.Errorf("frame changed beyond MACs, TTL and checksum")
			}
		})
	}
}

func TestUpdateChecksumMatchesRecompute(t *testing.T) {
	f := udpFrame(ap(testSelf, 1000), ap(testPeer, 2000), testGW, 64, nil)
	ip := header.IPv4(f[netOff:])
	// Walk every TTL and several header variations; the incremental
	// update must agree with a full recomputation.
	for id := range 64 {
		ip.SetID(uint16(id * 1031))
		for ttl := 255; ttl >= 2; ttl-- {
			ip.SetTTL(uint8(ttl))
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
			gw, dst := macFor(testGW), macFor(testPeer)
			rewriteForward(f, &dst, &gw)
			got := ip.Checksum()
			ip.SetChecksum(0)
			want := ^ip.CalculateChecksum()
			if got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
				t.Fatalf("id %d ttl %d: incremental checksum %#04x, recomputed %#04x", id, ttl, got, want)
			}
		}
	}
}

func TestBuildARPReply(t *testing.T) {
	req := arpRequestFrame(testSelf, testGW)
	var b [arpReplyLen]byte
	n := buildARPReply(b[:], req, macFor(testGW))
	f := b[:n]
	if n != vnetLen+minEthLen {
		t.Fatalf("reply length %d", n)
	}
	if h, _ := tap.DecodeVirtioNetHdr(f); h != (tap.VirtioNetHdr{}) {
		t.Errorf("virtio_net_hdr %+v, want zero", h)
	}
	eth := header.Ethernet(f[ethOff:])
	selfMAC, gwMAC := macFor(testSelf), macFor(testGW)
	if eth.DestinationAddress() != header.Ethernet(selfMAC[:]).DestinationAddress() ||
		string(eth.SourceAddress()) != string(gwMAC[:]) || eth.Type() != header.ARPProtocolNumber {
		t.Errorf("Ethernet header % x", f[ethOff:netOff])
	}
	a := header.ARP(f[netOff:])
	gw4, self4 := testGW.As4(), testSelf.As4()
	if !a.IsValid() || a.Op() != header.ARPReply ||
		!bytes.Equal(a.HardwareAddressSender(), gwMAC[:]) || !bytes.Equal(a.ProtocolAddressSender(), gw4[:]) ||
		!bytes.Equal(a.HardwareAddressTarget(), selfMAC[:]) || !bytes.Equal(a.ProtocolAddressTarget(), self4[:]) {
		t.Errorf("ARP reply % x", f[netOff:netOff+arpLen])
	}
}

func TestSplitUDP4(t *testing.T) {
	payload := make([]byte, 3000)
	for i := range payload {
		payload[i] = byte(i)
	}
	f := udpFrame(ap(testSelf, 1000), ap(testGW, 53), testGW, 64, payload)
	var got [][]byte
	_, ok := splitUDP4(nil, f[netOff:], 1200, func(d []byte) { got = append(got, bytes.Clone(d)) })
	if !ok {
		t.Fatal("splitUDP4 rejected a valid frame")
	}
	if len(got) != 3 {
		t.Fatalf("%d datagrams, want 3", len(got))
	}
	var joined []byte
	for i, d := range got {
		ip := header.IPv4(d)
		if !ip.IsValid(len(d)) || !ip.IsChecksumValid() {
			t.Errorf("datagram %d: bad IPv4 header", i)
		}
		u := header.UDP(ip.Payload())
		if int(u.Length()) != len(u) {
			t.Errorf("datagram %d: UDP length %d, have %d", i, u.Length(), len(u))
		}
		xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), u.Length())
		if checksum.Checksum(u, xsum) != 0xffff {
			t.Errorf("datagram %d: bad UDP checksum", i)
		}
		joined = append(joined, u.Payload()...)
	}
	if !bytes.Equal(joined, payload) {
		t.Error("payload not preserved")
	}
	if _, ok := splitUDP4(nil, f[netOff:netOff+25], 1200, func([]byte) {}); ok {
		t.Error("splitUDP4 accepted a truncated packet")
	}
	if _, ok := splitUDP4(nil, f[netOff:], 0, func([]byte) {}); ok {
		t.Error("splitUDP4 accepted gso_size 0")
	}
}

// FuzzFrame feeds arbitrary frames to the parser and the rewrite: nothing may
// panic, a forwarded frame keeps its length, and a valid header checksum stays
// valid.
func FuzzFrame(f *testing.F) {
	f.Add(udpFrame(ap(testSelf, 1000), ap(testPeer, 2000), testGW, 64, []byte("hello")))
	f.Add(tcpGSOFrame(ap(testSelf, 1000), ap(testPeer, 2000), testGW, 1448, 3000))
	f.Add(icmpEchoFrame(testSelf, netip.MustParseAddr("8.8.8.8"), testGW))
	f.Add(arpRequestFrame(testSelf, testGW))
	f.Add(udpFrame(ap(testSelf, 1000), ap(testGW, 53), testGW, 1, make([]byte, 2000)))
	f.Add([]byte{})
	table, peer := testTable()
	f.Fuzz(func(t *testing.T, frame []byte) {
		v, dst := classify(frame, testSelf.As4(), testGW.As4(), table)
		switch v {
		case verdictForward:
			if dst != peer && dst.ip != testSelf {
				t.Fatalf("forward to unexpected pod %v", dst)
			}
			valid := ipv4HeaderValid(frame)
			n := len(frame)
			gw := macFor(testGW)
			rewriteForward(frame, &dst.mac, &gw)
			if len(frame) != n {
				t.Fatal("rewrite changed the length")
			}
			if valid && !ipv4HeaderValid(frame) {
				t.Fatal("rewrite broke a valid header checksum")
			}
		case verdictARPReply:
			var b [arpReplyLen]byte
			buildARPReply(b[:], frame, macFor(testGW))
		case verdictStack:
			if len(frame) >= netOff && binary.BigEndian.Uint16(frame[ethOff+12:]) == etherTypeIPv4 {
				h, _ := tap.DecodeVirtioNetHdr(frame)
				splitUDP4(nil, frame[netOff:], int(h.GSOSize), func([]byte) {})
			}
		}
	})
}
