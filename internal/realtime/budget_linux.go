package realtime

// Real-time budgets. On a kernel built with CONFIG_RT_GROUP_SCHED (with cgroup v1) a real-time
// thread runs only while its cgroup has budget left: cpu.rt_runtime_us of every cpu.rt_period_us,
// on each CPU. A new cgroup has none, so a process in one may not enter SCHED_RR at all, and the
// budgets of a cgroup's children together may not exceed its own. Kubernetes never gives any: a
// node agent's container, its pod and the kubelet's QoS cgroups all have none.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// BudgetPeriod is the period of every budget this package sets. A data path that has used up its
// budget waits for the next period, so a short one keeps that wait short: at most the period less
// the runtime, 0.5 ms at the kernel's own 95%.
const BudgetPeriod = 10 * time.Millisecond

// A Budget is the real-time budget given to the cgroup Dir: Runtime of every Period, on each CPU.
type Budget struct {
	Dir             string
	Period, Runtime time.Duration
}

// bwShift is the kernel's fixed point for comparing budgets (to_ratio in kernel/sched): a budget
// counts as runtime<<bwShift/period, the whole CPU as 1<<bwShift.
const bwShift = 20

// share is a budget as the kernel compares it: it accepts a cgroup's budget when its children's
// shares together are no more than its own. A runtime of -1 is no limit: the whole CPU.
func share(period, runtime int64) uint64 {
	if runtime < 0 {
		return 1 << bwShift
	}
	if period <= 0 {
		return 0
	}
	return uint64(runtime) << bwShift / uint64(period)
}

// Grant gives this process's cgroup (in the cgroup v1 cpu hierarchy) a real-time budget if it
// has none, so that Enable may succeed: each cgroup from the deepest ancestor that has a budget
// down to this process's gets all of its parent's that the parent's other children do not hold,
// after it takes back what those with no process left hold (a container or pod gone but for its
// cgroup: the one this process replaces) where this package gave it. It returns the budgets it set, those it took
// back with Runtime 0: none where none is needed (cgroup v2, a kernel without
// CONFIG_RT_GROUP_SCHED, a cgroup that has a budget). It needs the whole hierarchy mounted, not
// only this process's cgroup (as a container has it): mount the host's /sys/fs/cgroup. The
// cgroups keep their budgets when the process ends; nothing but real-time threads uses them.
func Grant() ([]Budget, error) {
	path, ok := cgroupPath()
	if !ok {
		return nil, nil
	}
	mounts, err := cpuMounts()
	if err != nil {
		return nil, err
	}
	return grant(mounts, path)
}

// grant is Grant for the cgroup path, with the cpu hierarchy's mounts.
func grant(mounts []mount, path string) ([]Budget, error) {
	own, ok := ownDir(mounts, path)
	if !ok {
		return nil, nil
	}
	_, runtime, err := readBudget(own)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // no CONFIG_RT_GROUP_SCHED: every real-time thread shares the kernel's budget
	}
	if err != nil || runtime != 0 {
		return nil, err
	}
	root := ""
	for _, m := range mounts {
		// Only the hierarchy's own root has release_agent: in a cgroup namespace of its own, a
		// container's cgroup is shown as "/" too.
		if _, err := os.Stat(filepath.Join(m.point, "release_agent")); m.root == "/" && err == nil {
			root = m.point
			break
		}
	}
	if root == "" {
		return nil, fmt.Errorf("this process's cgroup %s has no real-time budget (cpu.rt_runtime_us is 0), and only that cgroup of the cpu hierarchy is mounted here (%s), not its parents, which need one too: mount the host's /sys/fs/cgroup (deploy/podnet.yaml does, at /host/sys/fs/cgroup)", path, mounts[0].point)
	}
	dirs := []string{root}
	for _, p := range strings.Split(strings.Trim(path, "/"), "/") {
		if p != "" {
			dirs = append(dirs, filepath.Join(dirs[len(dirs)-1], p))
		}
	}
	deepest := -1
	for i, d := range dirs {
		_, r, err := readBudget(d)
		if err != nil {
			return nil, err
		}
		if r == 0 {
			break
		}
		deepest = i
	}
	if deepest < 0 {
		return nil, fmt.Errorf("the kernel gives real-time threads no time at all (%s is 0; kernel.sched_rt_runtime_us)", filepath.Join(root, "cpu.rt_runtime_us"))
	}
	var set []Budget
	for i := deepest + 1; i < len(dirs); i++ {
		var b Budget
		err := retry(func() error {
			// The agent's pod or container before this one may still hold it, gone but for
			// its cgroup.
			back, err := reclaim(dirs[i-1], dirs[i])
			set = append(set, back...)
			if err != nil {
				return err
			}
			free, err := freeShare(dirs[i-1], dirs[i])
			if err == nil {
				b, err = give(dirs[i], free)
			}
			return err
		})
		if err != nil {
			return set, err
		}
		set = append(set, b)
	}
	return set, nil
}

// reclaim takes the budget back from every child of parent (but except) that holds one and has
// no process left in it or below it: a pod or container that is gone, but for its cgroup, which
// the kubelet removes some seconds later. Only under a parent whose budget is over BudgetPeriod,
// which this package set, so that the budgets taken back are this package's too, never those an
// administrator gave. It returns those it set to none (Runtime 0), the deepest first.
func reclaim(parent, except string) ([]Budget, error) {
	if p, _, err := readBudget(parent); err != nil || p != BudgetPeriod.Microseconds() {
		return nil, err
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil, err
	}
	var back []Budget
	for _, e := range entries {
		d := filepath.Join(parent, e.Name())
		if !e.IsDir() || d == filepath.Clean(except) {
			continue
		}
		if p, r, err := readBudget(d); err != nil || share(p, r) == 0 {
			continue
		}
		var tree []string // d and every cgroup below it, parents first
		idle := true
		err := filepath.WalkDir(d, func(path string, de os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !de.IsDir() {
				return nil
			}
			procs, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			if err != nil {
				return err
			}
			if len(strings.TrimSpace(string(procs))) > 0 {
				idle = false
				return filepath.SkipAll
			}
			tree = append(tree, path)
			return nil
		})
		if errors.Is(err, os.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return back, err
		}
		if !idle {
			continue
		}
		for j := len(tree) - 1; j >= 0; j-- {
			p, r, err := readBudget(tree[j])
			if err != nil || r == 0 {
				continue
			}
			if err := writeInt(filepath.Join(tree[j], "cpu.rt_runtime_us"), 0); err != nil {
				return back, err
			}
			back = append(back, Budget{Dir: tree[j], Period: time.Duration(p) * time.Microsecond})
		}
	}
	return back, nil
}

// Divide gives each of children (cgroups right under parent in the cpu hierarchy, as paths from
// the file system's root) an equal part of parent's real-time budget that its other children do
// not hold. It returns the budgets it set: none on a kernel without CONFIG_RT_GROUP_SCHED.
func Divide(parent string, children []string) ([]Budget, error) {
	if _, _, err := readBudget(parent); errors.Is(err, os.ErrNotExist) || len(children) == 0 {
		return nil, nil
	}
	for _, c := range children {
		if filepath.Dir(filepath.Clean(c)) != filepath.Clean(parent) {
			return nil, fmt.Errorf("divide the real-time budget of %s: %s is not right under it", parent, c)
		}
	}
	var set []Budget
	err := retry(func() error {
		set = nil
		free, err := freeShare(parent, children...)
		if err != nil {
			return err
		}
		for _, c := range children {
			b, err := give(c, free/uint64(len(children)))
			if err != nil {
				return err
			}
			set = append(set, b)
		}
		return nil
	})
	return set, err
}

// freeShare returns the share of parent's budget that its children, but for those in except,
// do not hold.
func freeShare(parent string, except ...string) (uint64, error) {
	pp, pr, err := readBudget(parent)
	if err != nil {
		return 0, err
	}
	have := share(pp, pr)
	if have == 0 {
		return 0, fmt.Errorf("%w: cgroup %s has none itself", errNoBudget, parent)
	}
	held, holders, err := childShares(parent, except...)
	if err != nil {
		return 0, err
	}
	if held >= have {
		return 0, fmt.Errorf("%w in cgroup %s (%d µs of every %d µs): its other children hold it all: %s", errNoBudget, parent, pr, pp, strings.Join(holders, ", "))
	}
	return have - held, nil
}

// childShares returns the shares that the children of dir (but for those in except) hold, added
// up, and who holds them.
func childShares(dir string, except ...string) (uint64, []string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, nil, err
	}
	var held uint64
	var holders []string
	for _, e := range entries {
		d := filepath.Join(dir, e.Name())
		if !e.IsDir() || contains(except, d) {
			continue
		}
		p, r, err := readBudget(d)
		if errors.Is(err, os.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return 0, nil, err
		}
		if s := share(p, r); s > 0 {
			held += s
			holders = append(holders, fmt.Sprintf("%s (%d µs of %d µs)", e.Name(), r, p))
		}
	}
	return held, holders, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if filepath.Clean(x) == s {
			return true
		}
	}
	return false
}

// give sets dir's budget to the share s, over BudgetPeriod.
func give(dir string, s uint64) (Budget, error) {
	period := BudgetPeriod.Microseconds()
	runtime := int64((s*uint64(period) + 1<<bwShift - 1) >> bwShift) // rounded up, then down to within s
	for runtime > 0 && share(period, runtime) > s {
		runtime--
	}
	if runtime <= 0 {
		return Budget{}, fmt.Errorf("%w for cgroup %s", errNoBudget, dir)
	}
	b := Budget{Dir: dir, Period: time.Duration(period) * time.Microsecond, Runtime: time.Duration(runtime) * time.Microsecond}
	p, r, err := readBudget(dir)
	if err != nil {
		return b, err
	}
	if p == period && r == runtime {
		return b, nil
	}
	if r != 0 {
		// Less than it has: its children must fit in it.
		if held, holders, err := childShares(dir); err != nil {
			return b, err
		} else if held > share(period, runtime) {
			return b, fmt.Errorf("cgroup %s cannot have %d µs of every %d µs of real-time budget: its children hold more: %s", dir, runtime, period, strings.Join(holders, ", "))
		}
	}
	if r != 0 && p != period {
		// A budget over another period: none first, so that no step asks for more than the
		// parent has.
		if err := writeInt(filepath.Join(dir, "cpu.rt_runtime_us"), 0); err != nil {
			return b, err
		}
	}
	if err := writeInt(filepath.Join(dir, "cpu.rt_period_us"), period); err != nil {
		return b, err
	}
	if err := writeInt(filepath.Join(dir, "cpu.rt_runtime_us"), runtime); errors.Is(err, unix.EINVAL) && runtime > r {
		return b, fmt.Errorf("%w: %w (the budgets of its parent's children would exceed the parent's)", errNoBudget, err)
	} else if err != nil {
		return b, err
	}
	return b, nil
}

// errNoBudget is a refusal for want of budget in the parent, which may pass: the kernel still
// counts a removed cgroup's budget for a moment after (until it frees the group), and a pod's
// cgroup outlives it for a moment too, so a container that restarts, a DaemonSet's new pod or a
// cluster made again find the budget of the one before taken at first.
var errNoBudget = errors.New("no real-time budget left")

// releaseWait is how long a refusal for want of budget is tried again.
var releaseWait = 10 * time.Second

// retry runs f until it succeeds or fails other than for want of budget, for up to releaseWait.
func retry(f func() error) error {
	deadline := time.Now().Add(releaseWait)
	for {
		err := f()
		if !errors.Is(err, errNoBudget) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(releaseWait / 100)
	}
}

func writeInt(file string, v int64) error {
	if err := os.WriteFile(file, []byte(strconv.FormatInt(v, 10)), 0o644); err != nil {
		return fmt.Errorf("set a real-time budget: %w", err) // the error names the file
	}
	return nil
}

// readBudget reads cgroup dir's cpu.rt_period_us and cpu.rt_runtime_us.
func readBudget(dir string) (period, runtime int64, err error) {
	read := func(name string) (int64, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
		}
		return n, nil
	}
	if period, err = read("cpu.rt_period_us"); err != nil {
		return 0, 0, err
	}
	if runtime, err = read("cpu.rt_runtime_us"); err != nil {
		return 0, 0, err
	}
	return period, runtime, nil
}

// cgroupPath returns this process's cgroup in the cgroup v1 cpu hierarchy.
func cgroupPath() (string, bool) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", false
	}
	return parseCgroup(string(b))
}

// parseCgroup finds the cpu controller's cgroup in /proc/PID/cgroup.
func parseCgroup(s string) (string, bool) {
	for line := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for ctl := range strings.SplitSeq(parts[1], ",") {
			if ctl == "cpu" {
				return parts[2], true
			}
		}
	}
	return "", false
}

// A mount is where a part of the cgroup v1 cpu hierarchy is mounted: the cgroup root shown at
// point. A container is usually given only its own cgroup, mounted at /sys/fs/cgroup/cpu.
type mount struct{ root, point string }

// cpuMounts returns the mounts of the cgroup v1 cpu hierarchy, from /proc/self/mountinfo.
func cpuMounts() ([]mount, error) {
	infos, err := mountinfo.GetMounts(cpuFilter)
	return toMounts(infos), err
}

// cpuFilter keeps the cgroup v1 mounts of the cpu controller (alone or with others, as in
// cpu,cpuacct).
func cpuFilter(m *mountinfo.Info) (skip, stop bool) {
	return m.FSType != "cgroup" || !slices.Contains(strings.Split(m.VFSOptions, ","), "cpu"), false
}

func toMounts(infos []*mountinfo.Info) []mount {
	ms := make([]mount, 0, len(infos))
	for _, m := range infos {
		ms = append(ms, mount{root: m.Root, point: m.Mountpoint})
	}
	return ms
}

// ownDir returns the directory of the cgroup path in the first mount that shows it.
func ownDir(mounts []mount, path string) (string, bool) {
	for _, m := range mounts {
		if m.root == "/" {
			return filepath.Join(m.point, path), true
		}
		if path == m.root || strings.HasPrefix(path, m.root+"/") {
			return filepath.Join(m.point, strings.TrimPrefix(path, m.root)), true
		}
	}
	return "", false
}
