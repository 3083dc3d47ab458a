package stack

import (
	"encoding/binary"
	"testing"
	"time"
)

func (r *recordPort) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.frames)
}

// tcpFrame is a frame of a TCP segment from 10.244.1.1:80 to 10.244.1.10:port with flags and
// payload bytes of data.
func tcpFrame(port uint16, flags uint8, payload int) []byte {
	f := make([]byte, netOff+40+payload)
	binary.BigEndian.PutUint16(f[ethOff+12:], etherTypeIPv4)
	ip := f[netOff:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(40+payload))
	ip[8], ip[9] = 64, protoTCP
	copy(ip[12:], []byte{10, 244, 1, 1, 10, 244, 1, 10})
	binary.BigEndian.PutUint16(ip[20:], 80)
	binary.BigEndian.PutUint16(ip[22:], port)
	ip[32] = 5 << 4
	ip[33] = flags
	return f
}

func TestDelayedAcks(t *testing.T) {
	port := newRecordPort()
	l := &podLink{port: port, ctr: &counters{}}
	defer l.acks.stop()
	write := func(f []byte) {
		if !l.acks.hold(l, f) {
			port.WriteFrame(f)
		}
	}
	// A pure ACK is held, and dropped when a data segment of its flow follows.
	write(tcpFrame(1000, tcpAck, 0))
	if n := port.count(); n != 0 {
		t.Fatalf("a pure ACK was written at once (%d frames)", n)
	}
	write(tcpFrame(1000, tcpAck|0x08, 100))
	time.Sleep(3 * ackDelay)
	if n := port.count(); n != 1 {
		t.Fatalf("%d frames, want the data segment only (it carries the acknowledgement)", n)
	}
	// A second pure ACK of a flow goes at once (an ACK every second segment); the held one is dropped.
	write(tcpFrame(2000, tcpAck, 0))
	write(tcpFrame(2000, tcpAck, 0))
	if n := port.count(); n != 2 {
		t.Fatalf("%d frames after two pure ACKs, want the second written", n)
	}
	// A lone pure ACK is written when the delay ends.
	write(tcpFrame(3000, tcpAck, 0))
	deadline := time.Now().Add(time.Second)
	for port.count() != 3 && time.Now().Before(deadline) {
		time.Sleep(ackDelay)
	}
	if n := port.count(); n != 3 {
		t.Fatalf("%d frames, want the held ACK written after the delay", n)
	}
	// SYN, FIN and RST are never held.
	for _, flags := range []uint8{tcpSyn | tcpAck, tcpFin | tcpAck, tcpRst} {
		if l.acks.hold(l, tcpFrame(4000, flags, 0)) {
			t.Errorf("flags %#x held", flags)
		}
	}
}
