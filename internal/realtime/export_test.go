package realtime

import "time"

// SetReleaseWait shortens how long a refusal for want of budget is tried again, for tests that
// expect one.
func SetReleaseWait(d time.Duration) { releaseWait = d }

// FreeShare is the share (of 1<<20, the whole CPU) of cgroup dir's real-time budget that its
// children do not hold.
func FreeShare(dir string) (uint64, error) { return freeShare(dir) }
