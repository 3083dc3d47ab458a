// Package realtime puts a process's threads under the kernel's real-time round-robin policy
// (SCHED_RR), and takes them out of it.
//
// A node agent's data path is threads that sleep between packets and wake when one arrives. Under
// the ordinary policy a woken thread may wait for a busy process to use up its time slice, however
// low that process's priority: on a node with few cores, a pod that only burns CPU then costs the
// other pods' flows about half their throughput. The kernel's own data path does not wait: it runs
// in softirq, ahead of every process. A data path under SCHED_RR (even at priority 1, the lowest)
// also runs ahead of every ordinary process, and the kernel still keeps a share of each CPU for
// them (kernel.sched_rt_runtime_us, 95% by default, is the most real-time threads may take).
//
// Threads inherit the policy of the thread that creates them, so the Go runtime's later threads
// run under it too, and so would the processes the caller starts: a caller that starts other
// programs calls Disable in the child before it runs them (as podnet's sandbox-init does).
package realtime

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MaxPriority is the highest SCHED_RR priority.
const MaxPriority = 99

// maxPasses bounds the passes over the process's threads: a thread that another creates while
// a pass runs is caught by the next one.
const maxPasses = 10

// Enable puts every thread of this process under SCHED_RR at priority (1 to MaxPriority). It
// fails, naming the reason where it can tell it, if this process may not: without root or
// CAP_SYS_NICE, its RLIMIT_RTPRIO must allow the priority; on a kernel that groups real-time
// tasks (CONFIG_RT_GROUP_SCHED, cgroup v1), its cgroup needs a real-time budget. On failure the
// threads it had changed are put back.
func Enable(priority int) error {
	if err := checkRange(priority); err != nil {
		return err
	}
	if err := setAll(unix.SCHED_RR, priority); err != nil {
		err = fmt.Errorf("run under SCHED_RR at priority %d: %w", priority, explain(err, priority))
		if rerr := setAll(unix.SCHED_NORMAL, 0); rerr != nil {
			err = errors.Join(err, fmt.Errorf("and some threads stay under it: %w", rerr))
		}
		return err
	}
	return nil
}

// Disable puts every thread of this process back under the ordinary policy (SCHED_OTHER), each
// with the nice value it had (a real-time thread keeps one), which any process may do.
func Disable() error {
	if err := setAll(unix.SCHED_NORMAL, 0); err != nil {
		return fmt.Errorf("leave SCHED_RR: %w", err)
	}
	return nil
}

// Check says whether Enable(priority) would succeed, without changing the process: it tries on
// one thread, locked to a goroutine of its own meanwhile, and puts that thread back as it was.
func Check(priority int) error {
	if err := checkRange(priority); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		was, err := unix.SchedGetAttr(0, 0)
		if err != nil {
			runtime.UnlockOSThread() // unchanged
			errc <- err
			return
		}
		if err := set(0, unix.SCHED_RR, priority, 0); err != nil {
			runtime.UnlockOSThread() // unchanged
			errc <- fmt.Errorf("run under SCHED_RR at priority %d: %w", priority, explain(err, priority))
			return
		}
		if err := unix.SchedSetAttr(0, was, 0); err != nil {
			// Still locked: the runtime retires the thread, or (the main thread) parks it.
			errc <- fmt.Errorf("put a thread back from SCHED_RR: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}

func checkRange(priority int) error {
	if priority < 1 || priority > MaxPriority {
		return fmt.Errorf("real-time priority %d: want 1 to %d", priority, MaxPriority)
	}
	return nil
}

// Policy returns the scheduling policy and real-time priority of thread tid (0: the caller's).
func Policy(tid int) (policy, priority int, err error) {
	a, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return 0, 0, err
	}
	return int(a.Policy), int(a.Priority), nil
}

// setAll sets the policy of every thread of this process, pass after pass, until a pass finds
// none to change.
func setAll(policy uint32, priority int) error {
	for range maxPasses {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		changed := 0
		for _, e := range ents {
			tid, err := ownTID(e.Name())
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
				continue // the thread has exited
			}
			if err != nil {
				return err
			}
			a, err := unix.SchedGetAttr(tid, 0)
			if errors.Is(err, unix.ESRCH) {
				continue // the thread has exited
			}
			if err != nil {
				return err
			}
			if a.Policy == policy && int(a.Priority) == priority {
				continue
			}
			var nice int32
			if policy == unix.SCHED_NORMAL {
				// sched_getattr reports no nice value for a real-time thread, but the thread
				// keeps one, which getpriority reports (as 20 - nice).
				p, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
				if errors.Is(err, unix.ESRCH) {
					continue
				}
				if err != nil {
					return err
				}
				nice = int32(20 - p)
			}
			if err := set(tid, policy, priority, nice); err != nil && !errors.Is(err, unix.ESRCH) {
				return err
			}
			changed++
		}
		if changed == 0 {
			return nil
		}
	}
	return errors.New("threads kept appearing faster than they could be changed")
}

// ownTID returns the ID, in this process's PID namespace, of the thread listed in /proc/self/task
// as name. They differ when /proc was mounted for another namespace: a process that started a PID
// namespace of its own (as sandbox-init does) still sees the host's /proc.
func ownTID(name string) (int, error) {
	b, err := os.ReadFile("/proc/self/task/" + name + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.Atoi(f[len(f)-1]) // the innermost namespace is ours
			}
		}
	}
	return strconv.Atoi(name) // a kernel without NSpid (before 4.1)
}

// set sets thread tid's policy and priority, and its nice value, which only SCHED_OTHER uses: a
// thread that leaves SCHED_RR keeps the one it had, which also spares it the permission to lower
// it.
func set(tid int, policy uint32, priority int, nice int32) error {
	return unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy, Priority: uint32(priority), Nice: nice}, 0)
}

// explain turns EPERM into its likely reason.
func explain(err error, priority int) error {
	if !errors.Is(err, unix.EPERM) {
		return err
	}
	if !privileged() {
		var lim unix.Rlimit
		if unix.Getrlimit(unix.RLIMIT_RTPRIO, &lim) == nil && lim.Cur < uint64(priority) {
			return fmt.Errorf("not permitted: this user's real-time priority limit is %d (RLIMIT_RTPRIO, `ulimit -r`); raise it to %d or more (prlimit --rtprio, or rtprio in /etc/security/limits.conf), or run as root", lim.Cur, priority)
		}
	}
	if path, budget, ok := rtBudget(); ok && budget == 0 {
		return fmt.Errorf("not permitted: the kernel groups real-time tasks by cgroup (CONFIG_RT_GROUP_SCHED) and this process's cgroup %s has no real-time budget (cpu.rt_runtime_us is 0); give it and its parents one (podnet node does, given the whole cpu hierarchy), or run it in the root cgroup", path)
	}
	return fmt.Errorf("not permitted: %w", err)
}

// privileged says whether this process has CAP_SYS_NICE, which lifts RLIMIT_RTPRIO: in the
// initial user namespace, since the kernel asks for it there (a rootless container's root has it
// only in its own).
func privileged() bool {
	if m, err := os.ReadFile("/proc/self/uid_map"); err != nil || strings.Join(strings.Fields(string(m)), " ") != "0 0 4294967295" {
		return false
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_SYS_NICE) != 0
		}
	}
	return false
}

// rtBudget returns this process's cgroup v1 cpu controller path and its cpu.rt_runtime_us,
// where the kernel has one.
func rtBudget() (path string, budget int64, ok bool) {
	path, ok = cgroupPath()
	if !ok {
		return "", 0, false
	}
	mounts, err := cpuMounts()
	if err != nil {
		return "", 0, false
	}
	dir, ok := ownDir(mounts, path)
	if !ok {
		return "", 0, false
	}
	_, budget, err = readBudget(dir)
	return path, budget, err == nil
}
