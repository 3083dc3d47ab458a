package overlay

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// fakeBatchConn returns one coalesced message per ReadBatch: payload with a UDP_GRO control
// message of segment size seg.
type fakeBatchConn struct {
	payload []byte
	seg     int
	reads   int
}

func (f *fakeBatchConn) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	f.reads++
	m := &ms[0]
	m.N = copy(m.Buffers[0], f.payload)
	oob := m.OOB[:unix.CmsgSpace(4)]
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_GRO
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(oob[unix.CmsgLen(0):], uint32(f.seg))
	m.NN = len(oob)
	m.Addr = &net.UDPAddr{IP: net.IPv4(127, 0, 9, 1), Port: 51820}
	return 1, nil
}

func (f *fakeBatchConn) WriteBatch(ms []ipv4.Message, _ int) (int, error) { return len(ms), nil }

func TestGROReaderSplitsAndKeepsTheRest(t *testing.T) {
	// 10 datagrams of 100 bytes and a last one of 30: 1030 bytes coalesced.
	var payload []byte
	for i := 0; i < 11; i++ {
		n := 100
		if i == 10 {
			n = 30
		}
		payload = append(payload, bytes.Repeat([]byte{byte('a' + i)}, n)...)
	}
	f := &fakeBatchConn{payload: payload, seg: 100}
	r := newGROReader(f)
	var got [][]byte
	// wireguard-go offers 4 slots per call: the 11 datagrams take 3 calls and one read.
	for call := 0; call < 3; call++ {
		bufs := make([][]byte, 4)
		for i := range bufs {
			bufs[i] = make([]byte, 2000)
		}
		sizes := make([]int, 4)
		eps := make([]conn.Endpoint, 4)
		n, err := r.receive(bufs, sizes, eps)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			got = append(got, append([]byte(nil), bufs[i][:sizes[i]]...))
			if eps[i].DstToString() != "127.0.9.1:51820" {
				t.Errorf("endpoint %s", eps[i].DstToString())
			}
		}
	}
	if f.reads != 1 {
		t.Errorf("%d reads for one coalesced message, want 1 (the rest is kept for later calls)", f.reads)
	}
	if len(got) != 11 {
		t.Fatalf("got %d datagrams, want 11", len(got))
	}
	for i, d := range got {
		want := 100
		if i == 10 {
			want = 30
		}
		if len(d) != want || d[0] != byte('a'+i) || d[len(d)-1] != byte('a'+i) {
			t.Errorf("datagram %d: %d bytes starting %q, want %d bytes of %q", i, len(d), d[:1], want, string(rune('a'+i)))
		}
	}
}
