package overlay

import (
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/tun"
)

// tunBatchSize is how many packets memTUN hands wireguard-go per Read (and
// the most it accepts per Write): conn.IdealBatchSize.
const tunBatchSize = 128

// queueLen is the capacity, in packets, of the queue between SendPackets and
// wireguard-go: about two batches per CPU of a small node, enough to absorb a
// burst of 64 KiB super-frames split into MTU-sized packets.
const queueLen = 2048

// The queue is fair between pairs of hosts: one pod's flood must not take the
// overlay from the others. Packets wait in fqBuckets FIFOs by a hash of their
// source and destination addresses; Read takes up to fqQuantum packets from each non-empty
// FIFO in turn (round robin), so a packet from a quiet pod waits behind at
// most a quantum of each busy one, not behind the whole queue. The FIFOs
// share queueLen MTU-sized slots; when none is free, the longest FIFO loses
// its oldest packet to the arriving one (longest-queue drop, as fq_codel
// does), or the arriving packet is dropped if its own FIFO is the longest.
const (
	fqBuckets = 64
	fqQuantum = 8
)

var _ tun.Device = (*memTUN)(nil)

// memTUN is the TUN side of the wireguard-go device, in memory. Read hands
// wireguard-go the packets queued by enqueue (fair FIFOs of MTU-sized slots,
// bounded); Write passes decrypted packets to deliver.
type memTUN struct {
	mtu     int
	deliver func([][]byte)
	events  chan tun.Event
	ctr     *counters
	pkts    sync.Pool // of *[][]byte, for Write (called concurrently)
	out, in *window   // wireguard-go's windows (window.go); set before use

	mu     sync.Mutex
	ready  sync.Cond       // signalled when packets are queued or the device closes
	free   [][]byte        // guarded by mu: unused slots, each of capacity mtu
	fifos  [fqBuckets]fifo // guarded by mu
	active []int           // guarded by mu: the non-empty FIFOs, in serving order
	turn   int             // guarded by mu: index in active of the FIFO served next
	n      int             // guarded by mu: number of queued packets
	closed bool            // guarded by mu
}

// fifo is one source bucket's queue of slots.
type fifo struct {
	pkts [][]byte
	head int
}

func (f *fifo) len() int { return len(f.pkts) - f.head }

func (f *fifo) push(p []byte) { f.pkts = append(f.pkts, p) }

func (f *fifo) pop() []byte {
	p := f.pkts[f.head]
	f.pkts[f.head] = nil
	f.head++
	if f.head == len(f.pkts) {
		f.pkts, f.head = f.pkts[:0], 0
	}
	return p
}

func newMemTUN(mtu int, deliver func([][]byte), ctr *counters) *memTUN {
	t := &memTUN{
		mtu:     mtu,
		deliver: deliver,
		events:  make(chan tun.Event, 1),
		ctr:     ctr,
		free:    make([][]byte, queueLen),
	}
	t.ready.L = &t.mu
	t.pkts.New = func() any {
		s := make([][]byte, 0, tunBatchSize)
		return &s
	}
	backing := make([]byte, queueLen*mtu)
	for i := range t.free {
		t.free[i] = backing[i*mtu : i*mtu : (i+1)*mtu]
	}
	return t
}

// bucket is the FIFO of the packet p: a hash of its source and destination addresses. Not the
// source alone: a flood's victim answers it (SYN-ACKs, port unreachables), and its answers to
// others must not wait behind those. Not the ports either: a flood from random ports would then
// fill every FIFO.
func bucket(p []byte) int {
	if len(p) < 20 {
		return 0
	}
	src := uint32(p[12])<<24 | uint32(p[13])<<16 | uint32(p[14])<<8 | uint32(p[15])
	dst := uint32(p[16])<<24 | uint32(p[17])<<16 | uint32(p[18])<<8 | uint32(p[19])
	h := (src*0x9e3779b1 ^ dst) * 0x85ebca6b
	return int(h >> (32 - 6)) // fqBuckets = 1<<6
}

// slot returns a free slot for a packet of FIFO b, taking the oldest packet of the longest
// FIFO if there is none; nil means the packet is dropped (its own FIFO is the longest).
func (t *memTUN) slot(b int) []byte {
	if n := len(t.free); n > 0 {
		s := t.free[n-1]
		t.free = t.free[:n-1]
		return s
	}
	longest := b
	for _, i := range t.active {
		if t.fifos[i].len() > t.fifos[longest].len() {
			longest = i
		}
	}
	if longest == b {
		return nil
	}
	t.n--
	t.ctr.droppedQueueFull.Add(1)
	s := t.fifos[longest].pop()
	if t.fifos[longest].len() == 0 {
		t.deactivate(longest)
	}
	return s
}

// deactivate takes the empty FIFO b out of the serving order.
func (t *memTUN) deactivate(b int) {
	for k, i := range t.active {
		if i == b {
			t.active = append(t.active[:k], t.active[k+1:]...)
			if t.turn > k {
				t.turn--
			}
			if t.turn >= len(t.active) {
				t.turn = 0
			}
			return
		}
	}
}

// enqueue copies pkts into the queue. Packets that do not fit are dropped and
// counted. It returns false if the device is closed.
func (t *memTUN) enqueue(pkts [][]byte, route func([]byte) bool) bool {
	queued := 0
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return false
	}
	for _, p := range pkts {
		switch {
		case len(p) > t.mtu || len(p) == 0:
			t.ctr.droppedTooBig.Add(1)
			continue
		case !route(p):
			t.ctr.droppedNoPeer.Add(1)
			continue
		}
		b := bucket(p)
		s := t.slot(b)
		if s == nil {
			t.ctr.droppedQueueFull.Add(1)
			continue
		}
		f := &t.fifos[b]
		if f.len() == 0 {
			t.active = append(t.active, b)
		}
		f.push(append(s[:0], p...))
		t.n++
		queued++
	}
	t.mu.Unlock()
	if queued > 0 {
		t.ready.Signal()
	}
	return true
}

// File implements tun.Device; there is no file.
func (*memTUN) File() *os.File { return nil }

// Read implements tun.Device: it blocks until packets are queued and copies
// as many as fit into bufs (at offset). After Close it returns os.ErrClosed.
//
// It takes no more than the outbound window has room for, and waits for room
// first: wireguard-go holds what it reads until it sends it.
func (t *memTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	room := t.out.room()
	if room == 0 {
		return 0, os.ErrClosed
	}
	bufs = bufs[:min(len(bufs), room)]
	t.mu.Lock()
	for t.n == 0 && !t.closed {
		t.ready.Wait()
	}
	if t.closed {
		t.mu.Unlock()
		return 0, os.ErrClosed
	}
	count, bytes := 0, 0
	for count < len(bufs) && t.n > 0 {
		b := t.active[t.turn]
		f := &t.fifos[b]
		for q := 0; q < fqQuantum && count < len(bufs) && f.len() > 0; q++ {
			p := f.pop()
			sizes[count] = copy(bufs[count][offset:], p)
			bytes += len(p)
			count++
			t.n--
			t.free = append(t.free, p[:0])
		}
		if f.len() == 0 {
			t.deactivate(b) // the next FIFO moves up to this turn
		} else {
			t.turn = (t.turn + 1) % len(t.active)
		}
	}
	t.mu.Unlock()
	t.out.add(count)
	t.ctr.txPackets.Add(uint64(count))
	t.ctr.txBytes.Add(uint64(bytes))
	return count, nil
}

// Write implements tun.Device: it passes the decrypted packets to deliver,
// which does not keep them.
func (t *memTUN) Write(bufs [][]byte, offset int) (int, error) {
	pp := t.pkts.Get().(*[][]byte)
	defer t.pkts.Put(pp)
	pkts := (*pp)[:0]
	bytes := 0
	for _, b := range bufs {
		if len(b) > offset {
			pkts = append(pkts, b[offset:])
			bytes += len(b) - offset
		}
	}
	t.in.done(len(bufs))
	if len(pkts) > 0 {
		t.ctr.rxPackets.Add(uint64(len(pkts)))
		t.ctr.rxBytes.Add(uint64(bytes))
		t.deliver(pkts)
		clear(pkts)
	}
	*pp = pkts
	return len(bufs), nil
}

// MTU implements tun.Device.
func (t *memTUN) MTU() (int, error) { return t.mtu, nil }

// Name implements tun.Device.
func (*memTUN) Name() (string, error) { return "podnet-overlay", nil }

// Events implements tun.Device. Overlay.New brings the device up itself, so
// no event is ever sent; Close closes the channel.
func (t *memTUN) Events() <-chan tun.Event { return t.events }

// BatchSize implements tun.Device.
func (*memTUN) BatchSize() int { return tunBatchSize }

// Close implements tun.Device: a blocked Read returns, later enqueues fail.
func (t *memTUN) Close() error {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.events)
	}
	t.mu.Unlock()
	t.ready.Broadcast()
	return nil
}
