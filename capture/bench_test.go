package capture

import (
	"io"
	"testing"
)

func BenchmarkMatch(b *testing.B) {
	f := mustParse(b, "tcp port 80 and host 10.244.0.3")
	frame := eth(etherTypeIPv4, ipv4(podA, podB, protoTCP, 0, tcp(podA, podB, 41234, 80, 1000, 0, tcpSYN, nil)))
	if !f.Match(LinkTypeEthernet, frame) {
		b.Fatal("the filter does not match the frame")
	}
	b.ReportAllocs()
	for b.Loop() {
		f.Match(LinkTypeEthernet, frame)
	}
}

func BenchmarkWritePacket(b *testing.B) {
	w, err := NewWriter(io.Discard, LinkTypeEthernet, 0)
	if err != nil {
		b.Fatal(err)
	}
	frame := eth(etherTypeIPv4, ipv4(podA, podB, protoUDP, 0, udp(podA, podB, 41234, 80, make([]byte, 1472))))
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WritePacket(testTime, frame); err != nil {
			b.Fatal(err)
		}
	}
}
