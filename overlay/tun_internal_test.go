package overlay

import (
	"testing"
	"time"
)

// pkt returns a 20-byte IPv4 header from src with id in its ID field.
func pkt(src byte, id uint16) []byte {
	p := make([]byte, 20)
	p[0] = 0x45
	p[4], p[5] = byte(id>>8), byte(id)
	p[12], p[13], p[14], p[15] = 10, 244, 0, src
	return p
}

func newTestTUN() *memTUN {
	t := newMemTUN(1420, func([][]byte) {}, &counters{})
	t.out, t.in = newWindow(1<<20), newWindow(1<<20)
	return t
}

func read(t *testing.T, tu *memTUN, n int) [][]byte {
	t.Helper()
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, 1500)
	}
	sizes := make([]int, n)
	got, err := tu.Read(bufs, sizes, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, got)
	for i := range out {
		out[i] = bufs[i][:sizes[i]]
	}
	return out
}

// TestFairQueue: a source that fills the queue does not keep another's packets out or behind:
// the quiet source's packets are admitted (the flood loses its oldest instead) and come out in
// the first batch, a quantum of the flood's between them.
func TestFairQueue(t *testing.T) {
	tu := newTestTUN()
	all := func([]byte) bool { return true }
	var flood [][]byte
	for i := range queueLen + 100 {
		flood = append(flood, pkt(1, uint16(i)))
	}
	tu.enqueue(flood, all)
	if tu.ctr.droppedQueueFull.Load() != 100 {
		t.Fatalf("dropped %d of the flood, want the 100 beyond the queue", tu.ctr.droppedQueueFull.Load())
	}
	quiet := [][]byte{pkt(2, 1), pkt(2, 2), pkt(2, 3)}
	tu.enqueue(quiet, all)
	if tu.ctr.droppedQueueFull.Load() != 103 {
		t.Errorf("dropped %d, want 103: the quiet source's 3 packets admitted, 3 more of the flood's oldest dropped", tu.ctr.droppedQueueFull.Load())
	}
	got := read(t, tu, 128)
	var quietAt []int
	for i, p := range got {
		if p[15] == 2 {
			quietAt = append(quietAt, i)
		}
	}
	if len(quietAt) != 3 || quietAt[0] != fqQuantum {
		t.Errorf("the quiet source's packets came at %v of the first batch, want 3 from %d on", quietAt, fqQuantum)
	}
	// The flood's packets keep their order. Its own overflow was dropped as it arrived (its
	// FIFO was the longest), and the quiet packets took the place of its three oldest.
	prev := -1
	for _, p := range got {
		if p[15] != 1 {
			continue
		}
		id := int(p[4])<<8 | int(p[5])
		if id <= prev {
			t.Fatalf("flood packet %d after %d: reordered", id, prev)
		}
		prev = id
	}
	if first := int(got[0][4])<<8 | int(got[0][5]); first != 3 {
		t.Errorf("the first flood packet out is %d, want 3 (0-2 gave way to the quiet source)", first)
	}
	// Everything left comes out; the slots are free again.
	left := queueLen - 128
	for left > 0 {
		left -= len(read(t, tu, 128))
	}
	if tu.n != 0 || len(tu.free) != queueLen || len(tu.active) != 0 {
		t.Errorf("after draining: %d queued, %d free slots, %d active FIFOs", tu.n, len(tu.free), len(tu.active))
	}
}

// TestWindow: Read hands out no more than the outbound window has room for and waits while it
// is full; done opens it, and a window full without progress is opened after windowStall.
func TestWindow(t *testing.T) {
	tu := newTestTUN()
	tu.out = newWindow(4)
	all := func([]byte) bool { return true }
	var pkts [][]byte
	for i := range 10 {
		pkts = append(pkts, pkt(1, uint16(i)))
	}
	tu.enqueue(pkts, all)
	if got := read(t, tu, 128); len(got) != 4 {
		t.Fatalf("read %d packets with a window of 4", len(got))
	}
	done := make(chan int, 1)
	go func() { done <- len(read(t, tu, 128)) }()
	select {
	case n := <-done:
		t.Fatalf("Read returned %d packets with the window full", n)
	case <-time.After(50 * time.Millisecond):
	}
	tu.out.done(2)
	if n := <-done; n != 2 {
		t.Fatalf("after 2 done, Read returned %d, want 2", n)
	}
	// Full again, and no progress: the stall check opens it.
	tu.out.check(time.Now()) // progress was just now: nothing
	if tu.out.resets.Load() != 0 {
		t.Fatal("reset a window that made progress just now")
	}
	tu.out.check(time.Now().Add(windowStall))
	if tu.out.resets.Load() != 1 {
		t.Fatal("a window full without progress for windowStall was not reset")
	}
	if got := read(t, tu, 128); len(got) != 4 {
		t.Errorf("after the reset Read returned %d, want the 4 left", len(got))
	}
	tu.out.close()
	if n, err := tu.Read(make([][]byte, 1), make([]int, 1), 0); n != 0 || err == nil {
		t.Errorf("Read after the window closed: %d, %v", n, err)
	}
}
