package scavenge

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

func heapFree() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestRun: after a burst of 256 MiB in 64 KiB buffers (as wireguard-go takes them) is dropped and collected, Run returns the free heap to the
// system within a few intervals.
func TestRun(t *testing.T) {
	burst := make([][]byte, 4096)
	for i := range burst {
		burst[i] = make([]byte, 64<<10)
		burst[i][0] = 1
	}
	burst = nil
	runtime.GC()
	if f := heapFree(); f < 64<<20 {
		t.Skipf("the runtime returned the burst by itself already (%d bytes free): nothing to check", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if n := Run(ctx, 20*time.Millisecond, 32<<20); n == 0 {
		t.Fatal("Run never returned memory")
	}
	if f := heapFree(); f > 32<<20 {
		t.Errorf("%d bytes of heap still free and not returned", f)
	}
}

func TestDue(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		inUse, held, floor uint64
		want               bool
	}{
		{inUse: 40 * mib, held: 10 * mib, floor: 30 * mib, want: false},
		{inUse: 40 * mib, held: 33 * mib, floor: 30 * mib, want: true},  // free heap held
		{inUse: 63 * mib, held: 0, floor: 30 * mib, want: true},         // the heap in use grew
		{inUse: 62 * mib, held: 32 * mib, floor: 30 * mib, want: false}, // neither past the threshold
	} {
		if got := due(c.inUse, c.held, c.floor, 32*mib); got != c.want {
			t.Errorf("due(in use %d, held %d, floor %d) = %v, want %v", c.inUse/mib, c.held/mib, c.floor/mib, got, c.want)
		}
	}
}

// TestCollectEmptiesPool: buffers parked in a sync.Pool (as wireguard-go parks its own), which
// one collection keeps, are gone after collect.
func TestCollectEmptiesPool(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no collection but collect's
	inUse := func() uint64 {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	collect()
	before := inUse()
	var pool sync.Pool
	for range 2048 {
		b := new([64 << 10]byte)
		b[0] = 1
		pool.Put(b)
	}
	if grown := inUse() - before; grown < 120<<20 {
		t.Skipf("the pool holds %d bytes, not 128 MiB: nothing to check", grown)
	}
	collect()
	if after := inUse(); after > before+16<<20 {
		t.Errorf("heap in use %d bytes after collect, %d before the pool filled: the pool was not emptied", after, before)
	}
	runtime.KeepAlive(&pool)
}
