// Package leakcheck fails a test that leaves goroutines running. It is for tests only: every
// object that starts goroutines must cancel and wait for them (STYLE.md), and the tests of such
// packages check it with this package.
package leakcheck

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// Options says which goroutines count.
type Options struct {
	// Match lists substrings of a goroutine's stack that make it one of ours (a package path
	// such as "podnet/podnet/stack." or "gvisor.dev/gvisor").
	Match []string
	// Ignore lists substrings that exclude a goroutine even if it matches (the test functions
	// themselves, say). The checker's own goroutine is always excluded.
	Ignore []string
	// Wait is how long goroutines get to finish. Zero means 5 seconds.
	Wait time.Duration
}

// AtCleanup checks, once the test's other cleanups have run, that no matching goroutine is left.
// Call it before anything that registers a cleanup of its own.
func AtCleanup(t testing.TB, o Options) {
	t.Helper()
	t.Cleanup(func() {
		if leaked := wait(o); len(leaked) > 0 {
			t.Errorf("%d goroutines leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
	})
}

// Now waits until no matching goroutine is left, and fails the test if one still is after Wait.
func Now(t testing.TB, o Options) {
	t.Helper()
	if leaked := wait(o); len(leaked) > 0 {
		t.Fatalf("%d goroutines leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	}
}

func wait(o Options) []string {
	if o.Wait == 0 {
		o.Wait = 5 * time.Second
	}
	deadline := time.Now().Add(o.Wait)
	for {
		leaked := Goroutines(o)
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Goroutines returns the stacks of the running goroutines that match o.
func Goroutines(o Options) []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "internal/leakcheck.Goroutines(") || containsAny(g, o.Ignore) { // the scanner itself
			continue
		}
		if containsAny(g, o.Match) {
			out = append(out, g)
		}
	}
	return out
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
