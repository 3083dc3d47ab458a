// Package scavenge gives the system back the memory that a burst of traffic made the process
// take, soon after the burst, rather than when the Go runtime's background scavenger gets to it
// (minutes). A flood grows the heap (wireguard-go keeps a 64 KiB buffer per packet it holds, in
// sync.Pools), and the collector frees it once the flood ends, but the pages stay with the
// process, so its resident memory stays at the flood's peak. Run checks the heap every few
// seconds and, when more than a threshold of it is free but not yet returned, collects and
// returns it (runtime/debug.FreeOSMemory). A quiet process never reaches the threshold and pays
// only the check.
package scavenge

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Defaults for Run.
const (
	DefaultInterval  = 5 * time.Second
	DefaultThreshold = 32 << 20
)

// Run checks every interval until ctx ends, and returns free heap memory to the system when
// more than threshold bytes of it are held. It reports how many times it did.
func Run(ctx context.Context, interval time.Duration, threshold uint64) int {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/free:bytes"},   // free, not yet returned
		{Name: "/memory/classes/heap/unused:bytes"}, // in spans in use, unused
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n
		case <-t.C:
		}
		metrics.Read(samples)
		var held uint64
		for _, s := range samples {
			if s.Value.Kind() == metrics.KindUint64 {
				held += s.Value.Uint64()
			}
		}
		if held > threshold {
			debug.FreeOSMemory()
			n++
		}
	}
}
