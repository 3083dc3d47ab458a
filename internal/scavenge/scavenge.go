// Package scavenge gives the system back the memory that a burst of traffic made the process
// take, soon after the burst, rather than when the Go runtime's background scavenger gets to it
// (minutes). A flood grows the heap (wireguard-go keeps a 64 KiB buffer per packet it holds, in
// sync.Pools), and the collector frees it once the flood ends, but the pages stay with the
// process, so its resident memory stays at the flood's peak; and buffers in a sync.Pool count as
// in use until two collections have passed, which an idle process may not start for minutes.
// Run checks the heap every few seconds and, when more than a threshold of it is free but not
// returned, or the heap in use has grown by more than the threshold, collects and returns what
// is free (runtime/debug.FreeOSMemory). A quiet process never reaches the threshold and pays only
// the check.
package scavenge

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Defaults for Run.
const (
	DefaultInterval  = 5 * time.Second
	DefaultThreshold = 32 << 20
)

// Run checks every interval until ctx ends, and collects and returns memory to the system when
// more than threshold bytes of free heap are held, or when the heap in use has grown by more than
// threshold since the last time it did. It collects twice: a sync.Pool (where wireguard-go keeps
// its buffers) keeps what it holds through one collection. It reports how many times it did.
func Run(ctx context.Context, interval time.Duration, threshold uint64) int {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"}, // in use
		{Name: "/memory/classes/heap/free:bytes"},    // free, not yet returned
		{Name: "/memory/classes/heap/unused:bytes"},  // in spans in use, unused
	}
	read := func() (inUse, held uint64) {
		metrics.Read(samples)
		v := func(i int) uint64 {
			if samples[i].Value.Kind() == metrics.KindUint64 {
				return samples[i].Value.Uint64()
			}
			return 0
		}
		return v(0), v(1) + v(2)
	}
	floor, _ := read() // the heap in use after the last collection of ours
	t := time.NewTicker(interval)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n
		case <-t.C:
		}
		if inUse, held := read(); due(inUse, held, floor, threshold) {
			collect()
			floor, _ = read()
			n++
		}
	}
}

// due reports whether to collect: more than threshold bytes of heap free but held, or the heap
// in use grown by more than threshold since floor.
func due(inUse, held, floor, threshold uint64) bool {
	return held > threshold || inUse > floor+threshold
}

// collect collects twice, so that what sync.Pools held through the first collection goes too,
// and returns the free heap to the system.
func collect() {
	runtime.GC()
	debug.FreeOSMemory()
}
