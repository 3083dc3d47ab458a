package stack

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/podnet/podnet/tap"
)

var (
	segSrc = netip.MustParseAddrPort("10.244.1.10:40000")
	segDst = netip.MustParseAddrPort("10.244.2.20:8080")
	segGW  = netip.MustParseAddr("10.244.1.1")
)

// tsoPacket returns the IPv4 packet of a TSO frame with payloadLen bytes and
// the given TCP flags.
func tsoPacket(payloadLen int, flags header.TCPFlags) []byte {
	f := tcpGSOFrame(segSrc, segDst, segGW, 1380, payloadLen)
	ip := f[netOff:]
	ip[header.IPv4MinimumSize+13] = uint8(flags)
	return ip
}

// checkSegments verifies segs against the TSO packet ip they were cut from
// with mss: sizes, headers, checksums, sequence numbers, flags, payload.
func checkSegments(t testing.TB, ip []byte, mss int, segs [][]byte) {
	t.Helper()
	ihl := int(ip[0]&0x0f) * 4
	hl := ihl + int(ip[ihl+12]>>4)*4
	payload := ip[hl:]
	want := max(1, (len(payload)+mss-1)/mss)
	if len(segs) != want {
		t.Fatalf("%d segments, want %d", len(segs), want)
	}
	orig := header.TCP(ip[ihl:])
	var got []byte
	for i, seg := range segs {
		h := header.IPv4(seg)
		if int(h.TotalLength()) != len(seg) || len(seg) > hl+mss {
			t.Fatalf("segment %d: total length %d, %d bytes, limit %d", i, h.TotalLength(), len(seg), hl+mss)
		}
		if !h.IsChecksumValid() {
			t.Fatalf("segment %d: bad IP header checksum", i)
		}
		if h.ID() != header.IPv4(ip).ID()+uint16(i) {
			t.Fatalf("segment %d: IP ID %d", i, h.ID())
		}
		if !bytes.Equal(seg[:10], withLen(ip[:10], len(seg), h.ID())) || !bytes.Equal(seg[12:ihl], ip[12:ihl]) {
			t.Fatalf("segment %d: IP header % x, want that of % x", i, seg[:ihl], ip[:ihl])
		}
		tcp := header.TCP(seg[ihl:])
		xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, h.SourceAddress(), h.DestinationAddress(), uint16(len(tcp)))
		if !tcp.IsChecksumValid(h.SourceAddress(), h.DestinationAddress(), checksum.Checksum(tcp.Payload(), 0), uint16(len(tcp.Payload()))) ||
			checksum.Checksum(tcp, xsum) != 0xffff {
			t.Fatalf("segment %d: bad TCP checksum", i)
		}
		if tcp.SequenceNumber() != orig.SequenceNumber()+uint32(len(got)) {
			t.Fatalf("segment %d: seq %d, want %d", i, tcp.SequenceNumber(), orig.SequenceNumber()+uint32(len(got)))
		}
		wantFlags := orig.Flags()
		if i > 0 {
			wantFlags &^= header.TCPFlagCwr
		}
		if i < len(segs)-1 {
			wantFlags &^= header.TCPFlagFin | header.TCPFlagPsh
		}
		if tcp.Flags() != wantFlags {
			t.Fatalf("segment %d: flags %v, want %v", i, tcp.Flags(), wantFlags)
		}
		if tcp.AckNumber() != orig.AckNumber() || tcp.WindowSize() != orig.WindowSize() ||
			!bytes.Equal(tcp[header.TCPMinimumSize:tcp.DataOffset()], orig[header.TCPMinimumSize:orig.DataOffset()]) {
			t.Fatalf("segment %d: TCP header fields or options changed", i)
		}
		got = append(got, tcp.Payload()...)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("concatenated payload (%d bytes) differs from the original (%d bytes)", len(got), len(payload))
	}
}

// withLen returns the first 10 bytes of an IPv4 header with total length n
// and ID id.
func withLen(h []byte, n int, id uint16) []byte {
	b := bytes.Clone(h)
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	binary.BigEndian.PutUint16(b[4:], id)
	return b
}

func TestSegmentTCP4(t *testing.T) {
	const mss = 1380
	withOptions := func() []byte {
		// 12 bytes of TCP options (NOP, NOP, timestamps).
		ip := tsoPacket(10000, header.TCPFlagAck)
		ihl := header.IPv4MinimumSize
		opts := []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}
		out := append(bytes.Clone(ip[:ihl+header.TCPMinimumSize]), opts...)
		out = append(out, ip[ihl+header.TCPMinimumSize:]...)
		binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
		out[ihl+12] = (header.TCPMinimumSize + 12) / 4 << 4
		return out
	}
	for _, tt := range []struct {
		name string
		ip   []byte
		mss  int
	}{
		{"64KiB", tsoPacket(65535-40, header.TCPFlagAck|header.TCPFlagPsh), mss},
		{"fin-psh-cwr", tsoPacket(5000, header.TCPFlagAck|header.TCPFlagPsh|header.TCPFlagFin|header.TCPFlagCwr|header.TCPFlagEce), mss},
		{"exact-multiple", tsoPacket(3*mss, header.TCPFlagAck), mss},
		{"one-short", tsoPacket(100, header.TCPFlagAck|header.TCPFlagPsh), mss},
		{"no-payload", tsoPacket(0, header.TCPFlagAck|header.TCPFlagFin), mss},
		{"options", withOptions(), mss - 12},
		{"small-mss", tsoPacket(4000, header.TCPFlagAck), 536},
	} {
		t.Run(tt.name, func(t *testing.T) {
			orig := bytes.Clone(tt.ip)
			_, segs, ok := segmentTCP4(nil, nil, tt.ip, tt.mss)
			if !ok {
				t.Fatal("segmentTCP4 refused the packet")
			}
			if !bytes.Equal(tt.ip, orig) {
				t.Error("segmentTCP4 modified its input")
			}
			checkSegments(t, tt.ip, tt.mss, segs)
		})
	}
}

func TestSegmentTCP4Refuses(t *testing.T) {
	good := tsoPacket(3000, header.TCPFlagAck)
	mod := func(f func(ip []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for name, ip := range map[string][]byte{
		"short":       good[:19],
		"ipv6":        mod(func(ip []byte) []byte { ip[0] = 0x60; return ip }),
		"udp":         mod(func(ip []byte) []byte { ip[9] = 17; return ip }),
		"truncated":   good[:len(good)-1],
		"fragment":    mod(func(ip []byte) []byte { ip[6] |= 0x20; return ip }),
		"tcp-hdr-len": mod(func(ip []byte) []byte { ip[20+12] = 0x40; return ip }),
		"no-tcp-hdr":  mod(func(ip []byte) []byte { binary.BigEndian.PutUint16(ip[2:], 30); return ip[:30] }),
	} {
		if _, _, ok := segmentTCP4(nil, nil, ip, 1000); ok {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, _, ok := segmentTCP4(nil, nil, good, 0); ok {
		t.Error("mss 0 accepted")
	}
}

func TestCompleteChecksum(t *testing.T) {
	f := udpFrame(segSrc, segDst, segGW, 64, []byte("some payload"))
	ip := f[netOff:]
	want := bytes.Clone(ip)
	u := header.UDP(ip[header.IPv4MinimumSize:])
	// Make it partial, as a pod with NEEDS_CSUM hands it over.
	u.SetChecksum(header.PseudoHeaderChecksum(header.UDPProtocolNumber,
		tcpip.AddrFrom4(segSrc.Addr().As4()), tcpip.AddrFrom4(segDst.Addr().As4()), uint16(len(u))))
	if !completeChecksum(ip, header.IPv4MinimumSize, header.IPv4MinimumSize+6) {
		t.Fatal("completeChecksum failed")
	}
	if !bytes.Equal(ip, want) {
		t.Errorf("completed checksum %#04x, want %#04x", u.Checksum(), header.UDP(want[header.IPv4MinimumSize:]).Checksum())
	}
	if completeChecksum(ip, len(ip), len(ip)+6) || completeChecksum(ip, 20, len(ip)-1) {
		t.Error("out-of-range offsets accepted")
	}
}

func FuzzSegmentTCP4(f *testing.F) {
	f.Add(tsoPacket(5000, header.TCPFlagAck|header.TCPFlagPsh), uint16(1380))
	f.Add(tsoPacket(0, header.TCPFlagFin), uint16(1))
	f.Add(tsoPacket(100, header.TCPFlagCwr), uint16(7))
	f.Fuzz(func(t *testing.T, ip []byte, mss uint16) {
		orig := bytes.Clone(ip)
		arena, segs, ok := segmentTCP4(nil, nil, ip, int(mss))
		if !bytes.Equal(ip, orig) {
			t.Fatal("input modified")
		}
		if !ok {
			return
		}
		checkSegments(t, ip, int(mss), segs)
		// Reusing the arena gives the same result.
		_, again, _ := segmentTCP4(arena, nil, ip, int(mss))
		for i := range segs {
			if !bytes.Equal(segs[i], again[i]) {
				t.Fatalf("segment %d differs when the arena is reused", i)
			}
		}
	})
}

// discardSender counts what it is sent.
type discardSender struct{ pkts, bytes int }

func (d *discardSender) SendPackets(pkts [][]byte) error {
	d.pkts += len(pkts)
	for _, p := range pkts {
		d.bytes += len(p)
	}
	return nil
}

// BenchmarkOverlayTx measures the overlay transmit path of a pod's reader
// per 64 KiB TSO frame: classify, TTL, segmentation into 1420-byte packets
// with complete checksums, and the hand-off to the sender.
func BenchmarkOverlayTx(b *testing.B) {
	s, err := New(Options{PodCIDR: netip.MustParsePrefix("10.244.1.0/24"), Gateway: segGW, MTU: 1420})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var sink discardSender
	s.SetRemoteRoutes([]netip.Prefix{netip.MustParsePrefix("10.244.2.0/24")}, &sink)
	p := &pod{ip: segSrc.Addr(), ip4: segSrc.Addr().As4()}
	frame := tcpGSOFrame(segSrc, segDst, segGW, 1380, 65535-40)
	work := make([]byte, len(frame))
	q := &podQueue{}
	b.SetBytes(int64(len(frame) - netOff))
	b.ReportAllocs()
	for b.Loop() {
		copy(work, frame)
		s.handleFrame(p, q, work)
	}
	if sink.pkts != b.N*48 || p.ctr.overlayDropped.Load() != 0 {
		b.Fatalf("sent %d packets for %d frames; %d dropped", sink.pkts, b.N, p.ctr.overlayDropped.Load())
	}
	b.ReportMetric(float64(sink.pkts)/float64(b.N), "pkts/frame")
}

// recordPort is a Port that keeps copies of the frames written to it.
type recordPort struct {
	mu     sync.Mutex
	frames [][]byte
	closed chan struct{}
}

func newRecordPort() *recordPort { return &recordPort{closed: make(chan struct{})} }

func (r *recordPort) ReadFrame([]byte) (int, error) { <-r.closed; return 0, net.ErrClosed }
func (r *recordPort) Close() error                  { close(r.closed); return nil }
func (r *recordPort) WriteFrame(b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, bytes.Clone(b))
	return nil
}

func TestDeliverFromOverlayGRO(t *testing.T) {
	s, err := New(Options{PodCIDR: netip.MustParsePrefix("10.244.2.0/24"), Gateway: netip.MustParseAddr("10.244.2.1"), MTU: 1420})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetRemoteRoutes([]netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}, &discardSender{})
	port := newRecordPort()
	if err := s.AttachPod(segDst.Addr(), port); err != nil {
		t.Fatal(err)
	}

	const mss = 1380
	ip := tsoPacket(10*mss+100, header.TCPFlagAck|header.TCPFlagPsh)
	_, segs, ok := segmentTCP4(nil, nil, ip, mss)
	if !ok {
		t.Fatal("segmentTCP4 failed")
	}
	// Another flow's segment in the middle ends the first run; the PSH
	// segment (the last) ends the second.
	other := bytes.Clone(segs[0])
	binary.BigEndian.PutUint16(other[header.IPv4MinimumSize:], 1)
	batch := append(append(append([][]byte{}, segs[:4]...), other), segs[4:]...)
	s.DeliverFromOverlay(batch)

	if len(port.frames) != 3 {
		t.Fatalf("%d frames written, want 3 (4 segments, 1 other, 7 segments)", len(port.frames))
	}
	var payload []byte
	for i, f := range port.frames {
		h, _ := tap.DecodeVirtioNetHdr(f)
		wantSegs := []int{4, 1, 7}[i]
		if wantSegs == 1 {
			if h.Flags != tap.FlagDataValid || h.GSOType != tap.GSONone {
				t.Errorf("frame %d: header %+v, want DATA_VALID", i, h)
			}
			continue
		}
		if h.GSOType != tap.GSOTCPv4 || h.Flags != tap.FlagNeedsCsum || h.GSOSize != mss ||
			h.CsumStart != ethLen+20 || h.CsumOffset != 16 || h.HdrLen != ethLen+40 {
			t.Errorf("frame %d: header %+v", i, h)
		}
		// Complete the checksum as the pod's kernel would and check it.
		eth := bytes.Clone(f[vnetLen:])
		completeChecksum(eth[ethLen:], int(h.CsumStart)-ethLen, int(h.CsumStart+h.CsumOffset)-ethLen)
		p := header.IPv4(eth[ethLen:])
		if !p.IsChecksumValid() || int(p.TotalLength()) != len(p) || p.TTL() != 63 {
			t.Errorf("frame %d: IP header % x", i, p[:20])
		}
		tcp := header.TCP(p.Payload())
		xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, p.SourceAddress(), p.DestinationAddress(), uint16(len(tcp)))
		if checksum.Checksum(tcp, xsum) != 0xffff {
			t.Errorf("frame %d: bad TCP checksum", i)
		}
		wantPSH := i == 2
		if got := tcp.Flags()&header.TCPFlagPsh != 0; got != wantPSH {
			t.Errorf("frame %d: PSH %v, want %v", i, got, wantPSH)
		}
		payload = append(payload, tcp.Payload()...)
	}
	if !bytes.Equal(payload, ip[40:]) {
		t.Errorf("coalesced payload (%d bytes) differs from the original (%d)", len(payload), len(ip)-40)
	}
	if st := s.Stats(); st.OverlayRxPackets != 12 || st.OverlayRxCoalesced != 11 {
		t.Errorf("OverlayRxPackets %d, OverlayRxCoalesced %d; want 12, 11", st.OverlayRxPackets, st.OverlayRxCoalesced)
	}
}
