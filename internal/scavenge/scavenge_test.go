package scavenge

import (
	"context"
	"runtime"
	"runtime/metrics"
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
