package overlay

import (
	"sync"
	"sync/atomic"
	"time"
)

// wireguard-go keeps every packet it holds in a buffer of its own of 64 KiB
// (device.MaxMessageSize), whatever the packet's size, and its queues count
// batches, not bytes: nothing bounds how many packets it holds but the speed
// of its workers. Under a flood of small packets faster than the node can
// encrypt or decrypt them, it held gigabytes (a SYN flood from one pod took a
// 2-node lab from 50 MB to 700 MB in 16 s). Its pools can be bounded only by
// a compile-time constant for mobile platforms.
//
// So the overlay bounds them itself, with a window in each direction: the
// packets handed to wireguard-go and not yet seen again. Outbound, a packet
// is handed over when memTUN.Read returns it and seen again when the Bind
// sends it (encrypted); inbound, a data message is handed over when the
// Bind's receive function returns it and seen again when memTUN.Write gets
// it (decrypted). At the window's size Read and the receive function wait,
// so the packets wait in memTUN's ring (bounded in bytes, where the overflow
// is dropped and counted) or in the kernel's socket buffer. wireguard-go
// drops some packets without a word (a peer without a session, a message
// that fails authentication, a queue flushed at a key change); those would
// close the window for good, so a window that has been full without progress
// for windowStall is opened again, counted as a reset.

const (
	// windowPackets is each direction's window. With 64 KiB per packet
	// that bounds wireguard-go's buffers at 8 MiB a direction. It only
	// has to cover wireguard-go's own pipeline (queue, encrypt, send), not
	// a network's round trip: cross-node iperf3 in a 2-node lab carried
	// 3.4-3.7 Gbit/s with windows of 128, 256 and 1024 packets alike, and
	// 2.9-3.0 without a window (bench/README.md).
	windowPackets = 128
	// windowStall is how long a full window may see no progress before
	// it is opened again.
	windowStall = 250 * time.Millisecond
)

// window counts the packets inside wireguard-go in one direction.
type window struct {
	max int64

	mu       sync.Mutex
	cond     sync.Cond
	inflight int64
	progress time.Time // the last done
	closed   bool

	waits  atomic.Uint64 // times a caller waited for room
	resets atomic.Uint64 // times the window was opened after a stall
}

func newWindow(max int) *window {
	w := &window{max: int64(max), progress: time.Now()}
	w.cond.L = &w.mu
	return w
}

// room waits until the window has room, and returns how many packets fit,
// or 0 once the window is closed.
func (w *window) room() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inflight >= w.max && !w.closed {
		w.waits.Add(1)
	}
	for w.inflight >= w.max && !w.closed {
		w.cond.Wait()
	}
	if w.closed {
		return 0
	}
	return int(w.max - w.inflight)
}

// add counts n packets handed over.
func (w *window) add(n int) {
	if n <= 0 {
		return
	}
	w.mu.Lock()
	w.inflight += int64(n)
	w.mu.Unlock()
}

// done counts n packets seen again.
func (w *window) done(n int) {
	if n <= 0 {
		return
	}
	w.mu.Lock()
	w.inflight = max(w.inflight-int64(n), 0)
	w.progress = time.Now()
	w.mu.Unlock()
	w.cond.Broadcast()
}

// check opens the window if it has been full without progress for
// windowStall (wireguard-go dropped what it held).
func (w *window) check(now time.Time) {
	w.mu.Lock()
	stalled := w.inflight >= w.max && now.Sub(w.progress) >= windowStall
	if stalled {
		w.inflight = 0
		w.progress = now
		w.resets.Add(1)
	}
	w.mu.Unlock()
	if stalled {
		w.cond.Broadcast()
	}
}

// close wakes every waiter for good.
func (w *window) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.cond.Broadcast()
}
