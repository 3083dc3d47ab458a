package stack_test

import (
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/podnet/podnet/stack"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TestConntrackFileRestart: a Stack made with the conntrack file of one that is gone takes its
// flows back. A TCP flow to a Service keeps the backend it had (the balancer now says another),
// the backend's next segment is translated back to the Service address, and a UDP flow too; a
// record damaged in the file is dropped, not restored.
func TestConntrackFileRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "conntrack")
	vip := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.60"), 80)
	dnsVIP := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.61"), 53)
	client := netip.AddrPortFrom(podA, 40000)
	backend := netip.AddrPortFrom(podB, 8080)
	lb := newFakeBalancer()
	lb.set(vip, backend)
	lb.set(dnsVIP, netip.AddrPortFrom(podB, 5353))
	withFile := func(b stack.ServiceBalancer) func(*stack.Options) {
		return func(o *stack.Options) { withServices(b)(o); o.ConntrackFile = file }
	}

	s1 := newStack(t, withFile(lb))
	if !s1.NATOut(tcpPacket(client, vip, header.TCPFlagSyn, "", false), false) {
		t.Fatal("SYN to the Service not translated")
	}
	if !s1.NATReply(tcpPacket(backend, client, header.TCPFlagSyn|header.TCPFlagAck, "", false)) {
		t.Fatal("SYN-ACK of the backend not translated")
	}
	if !s1.NATOut(udpPacket(netip.AddrPortFrom(podA, 41000), dnsVIP, "q"), false) {
		t.Fatal("datagram to the Service not translated")
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	// The next agent's balancer would pick another backend for a new flow.
	lb2 := newFakeBalancer()
	lb2.set(vip, netip.AddrPortFrom(netip.MustParseAddr("10.244.1.30"), 8080))
	s2 := newStack(t, withFile(lb2))
	if st := s2.Stats(); st.NATActive != 2 {
		t.Fatalf("after the restart NATActive = %d, want the 2 flows back", st.NATActive)
	}
	reply := tcpPacket(backend, client, header.TCPFlagAck|header.TCPFlagPsh, "data", false)
	if !s2.NATReply(reply) {
		t.Fatal("the backend's segment after the restart was not translated")
	}
	if src := netip.AddrFrom4([4]byte(reply[12:16])); src != vip.Addr() || binary.BigEndian.Uint16(reply[20:]) != vip.Port() {
		t.Errorf("reply source %v:%d, want the Service %v", src, binary.BigEndian.Uint16(reply[20:]), vip)
	}
	if !checksumsValid(reply) {
		t.Error("reply checksums invalid")
	}
	out := tcpPacket(client, vip, header.TCPFlagAck, "more", false)
	if !s2.NATOut(out, false) {
		t.Fatal("the client's segment after the restart was not translated")
	}
	if dst := netip.AddrFrom4([4]byte(out[16:20])); dst != backend.Addr() {
		t.Errorf("client's segment went to %v, want its backend %v (kept, not picked again)", dst, backend.Addr())
	}
	if !s2.NATReply(udpPacket(netip.AddrPortFrom(podB, 5353), netip.AddrPortFrom(podA, 41000), "a")) {
		t.Error("the UDP answer after the restart was not translated")
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}

	// Damage one record (its first byte, covered by the checksum): it is dropped.
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], 16); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b[:], 16); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s3 := newStack(t, withFile(lb2))
	if st := s3.Stats(); st.NATActive != 1 {
		t.Errorf("with one record damaged NATActive = %d, want 1", st.NATActive)
	}
}

// TestConntrackFileBounded: the file has one slot per entry the table may hold, and a table
// made smaller keeps only what fits.
func TestConntrackFileBounded(t *testing.T) {
	file := filepath.Join(t.TempDir(), "conntrack")
	vip := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.62"), 53)
	lb := newFakeBalancer()
	lb.set(vip, netip.AddrPortFrom(podB, 5353))
	s := newStack(t, func(o *stack.Options) { withServices(lb)(o); o.MaxConntrack = 8; o.ConntrackFile = file })
	for i := range 10 {
		s.NATOut(udpPacket(netip.AddrPortFrom(podA, uint16(42000+i)), vip, "x"), false)
	}
	s.Close()
	if fi, err := os.Stat(file); err != nil || fi.Size() != 16+8*48 {
		t.Fatalf("file size %v (%v), want %d", fi.Size(), err, 16+8*48)
	}
	s2 := newStack(t, func(o *stack.Options) { withServices(lb)(o); o.MaxConntrack = 4; o.ConntrackFile = file })
	if st := s2.Stats(); st.NATActive != 4 {
		t.Errorf("NATActive = %d, want 4 (the smaller table full)", st.NATActive)
	}
}
