package stack

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// Delayed ACKs toward pods.
//
// gVisor's TCP acknowledges every segment it receives at once, with no
// delayed ACK. For a connection the netstack terminates (an Ingress or
// NodePort backend connection, host egress) that is one extra TAP write per
// request: the pure ACK of the pod's response, which the next request would
// have carried. So a pure ACK to a pod is held for up to ackDelay: if the
// netstack sends another segment of the flow meanwhile, that segment carries
// the acknowledgement (and a newer one) and the held ACK is dropped; if a
// second pure ACK of the flow comes first, it is sent at once and the held
// one dropped (an ACK for every second segment, as Linux's delayed ACK does);
// otherwise the ACK is sent when the delay ends.
const ackDelay = 500 * time.Microsecond

// delayedAcks holds the pure ACKs of a pod link.
type delayedAcks struct {
	held atomic.Int32 // len(pending): a data frame skips the lock when nothing is held

	mu      sync.Mutex
	pending map[[12]byte][]byte // by flow: addresses and ports; guarded by mu
	timer   *time.Timer         // guarded by mu
	armed   bool                // guarded by mu
	stopped bool                // guarded by mu
}

// flowOf returns the flow key of the TCP frame f and whether f is a pure
// ACK (IPv4, no options beyond TCP's, no payload, only the ACK flag). ok is
// false for frames that are not TCP over IPv4.
func flowOf(f []byte) (key [12]byte, pureAck, ok bool) {
	if len(f) < netOff+20 || binary.BigEndian.Uint16(f[ethOff+12:]) != etherTypeIPv4 {
		return key, false, false
	}
	ip := f[netOff:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[9] != protoTCP || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 || len(ip) < ihl+20 {
		return key, false, false
	}
	t := ip[ihl:]
	copy(key[:8], ip[12:20])
	copy(key[8:], t[:4])
	total := int(binary.BigEndian.Uint16(ip[2:]))
	thl := int(t[12]>>4) * 4
	return key, t[13] == tcpAck && total == ihl+thl && f[1] == 0 /* no GSO */, true
}

// hold takes frame, about to be written to l's pod, if it is a pure ACK to
// delay, and reports whether it did; it drops a held ACK that frame
// supersedes. frame is copied.
func (d *delayedAcks) hold(l *podLink, frame []byte) bool {
	key, pure, ok := flowOf(frame)
	if !ok || !pure && d.held.Load() == 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, held := d.pending[key]; held || !pure || d.stopped {
		delete(d.pending, key) // superseded by frame, which goes now
		d.held.Store(int32(len(d.pending)))
		return false
	}
	if d.pending == nil {
		d.pending = make(map[[12]byte][]byte)
	}
	d.pending[key] = append([]byte(nil), frame...)
	d.held.Store(int32(len(d.pending)))
	if !d.armed {
		d.armed = true
		if d.timer == nil {
			d.timer = time.AfterFunc(ackDelay, func() { d.flush(l) })
		} else {
			d.timer.Reset(ackDelay)
		}
	}
	return true
}

// flush writes the held ACKs.
func (d *delayedAcks) flush(l *podLink) {
	d.mu.Lock()
	held := d.pending
	d.pending = nil
	d.held.Store(0)
	d.armed = false
	d.mu.Unlock()
	for _, f := range held {
		if err := l.writeFrame(f); err != nil {
			l.ctr.fromStackErrors.Add(1)
			continue
		}
		l.ctr.fromStack.Add(1)
	}
}

// stop drops the held ACKs and the timer (the link is closing).
func (d *delayedAcks) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	d.pending = nil
	d.held.Store(0)
	if d.timer != nil {
		d.timer.Stop()
	}
}
