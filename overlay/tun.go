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

var _ tun.Device = (*memTUN)(nil)

// memTUN is the TUN side of the wireguard-go device, in memory. Read hands
// wireguard-go the packets queued by enqueue (a bounded ring of MTU-sized
// slots; a full ring drops); Write passes decrypted packets to deliver.
type memTUN struct {
	mtu     int
	deliver func([][]byte)
	events  chan tun.Event
	ctr     *counters
	pkts    sync.Pool // of *[][]byte, for Write (called concurrently)

	mu     sync.Mutex
	ready  sync.Cond // signalled when packets are queued or the device closes
	slots  [][]byte  // guarded by mu; each has capacity mtu
	head   int       // guarded by mu: index of the oldest queued packet
	n      int       // guarded by mu: number of queued packets
	closed bool      // guarded by mu
}

func newMemTUN(mtu int, deliver func([][]byte), ctr *counters) *memTUN {
	t := &memTUN{
		mtu:     mtu,
		deliver: deliver,
		events:  make(chan tun.Event, 1),
		ctr:     ctr,
		slots:   make([][]byte, queueLen),
	}
	t.ready.L = &t.mu
	t.pkts.New = func() any {
		s := make([][]byte, 0, tunBatchSize)
		return &s
	}
	backing := make([]byte, queueLen*mtu)
	for i := range t.slots {
		t.slots[i] = backing[i*mtu : i*mtu : (i+1)*mtu]
	}
	return t
}

// enqueue copies pkts into the ring. Packets that do not fit are dropped and
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
		case t.n == len(t.slots):
			t.ctr.droppedQueueFull.Add(1)
			continue
		}
		i := (t.head + t.n) % len(t.slots)
		t.slots[i] = append(t.slots[i][:0], p...)
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
func (t *memTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
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
		p := t.slots[t.head]
		sizes[count] = copy(bufs[count][offset:], p)
		bytes += len(p)
		count++
		t.head = (t.head + 1) % len(t.slots)
		t.n--
	}
	t.mu.Unlock()
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
