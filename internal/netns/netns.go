// Package netns runs code inside another network namespace: on an OS thread of its own that
// enters the namespace, runs the code and is then discarded rather than returned to the Go
// runtime (going back would need CAP_SYS_ADMIN over the caller's namespace, and a thread left in
// another namespace must never run other goroutines). Sockets made there stay in that
// namespace whatever thread uses them later, which is what callers use it for.
package netns

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn in the network namespace open as fd (a descriptor of /proc/PID/ns/net, a bind
// mount under /run/netns, ...) and returns its error, or the error of entering the namespace.
func Do(fd int, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		done <- fn()
	}()
	return <-done
}
