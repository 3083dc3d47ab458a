package scavenge

import (
	"context"
	"runtime"
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

// TestRunPool: buffers parked in a sync.Pool (as wireguard-go parks its own) during a burst are
// collected and returned too, although one collection keeps them.
func TestRunPool(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- Run(ctx, 20*time.Millisecond, 32<<20) }()
	time.Sleep(50 * time.Millisecond)
	var pool sync.Pool
	for range 2048 {
		b := new([64 << 10]byte)
		b[0] = 1
		pool.Put(b)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	if n := <-done; n == 0 {
		t.Fatal("Run never collected")
	}
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if inUse := s[0].Value.Uint64(); inUse > 64<<20 {
		t.Errorf("%d bytes of heap in use after Run: the pooled 128 MiB were not collected", inUse)
	}
	runtime.KeepAlive(&pool)
}
