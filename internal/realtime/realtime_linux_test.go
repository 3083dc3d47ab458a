package realtime_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/realtime"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary run helper instead of the tests: Enable and Disable change the
// whole process, so they run in a process of their own.
const helperEnv = "PODNET_REALTIME_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
	case "grant":
		grantHelper()
		return
	default:
		helper()
		return
	}
	os.Exit(m.Run())
}

// report is what the helper saw.
type report struct {
	EnableErr  string
	Threads    int // threads checked after Enable, counting those made after it
	NotRR      []string
	Child      string // a started program's policy, before Disable
	DisableErr string
	Checked    int // threads checked after Disable
	StillRR    []string
	ChildAfter string // a program started after Disable
}

// helperNice is the nice value the helper starts with: Disable must leave it.
const helperNice = 5

func helper() {
	var r report
	defer func() { json.NewEncoder(os.Stdout).Encode(r) }()
	if err := realtime.Enable(1); err != nil {
		r.EnableErr = err.Error()
		return
	}
	// Threads the runtime makes after Enable: each locked goroutine takes one of its own.
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			runtime.LockOSThread()
			wg.Done()
			<-release
		}()
	}
	wg.Wait()
	r.Threads, r.NotRR = threads(func(a *unix.SchedAttr) bool { return a.Policy == unix.SCHED_RR && a.Priority == 1 })
	r.Child = childPolicy()
	close(release)
	if err := realtime.Disable(); err != nil {
		r.DisableErr = err.Error()
		return
	}
	r.Checked, r.StillRR = threads(func(a *unix.SchedAttr) bool { return a.Policy == unix.SCHED_NORMAL && a.Nice == helperNice })
	r.ChildAfter = childPolicy()
}

// threads returns how many threads of this process it checked and those for which ok is false.
// It finds each by its ID in this process's PID namespace, which /proc/self/task does not give
// in a PID namespace of the process's own.
func threads(ok func(*unix.SchedAttr) bool) (int, []string) {
	ents, _ := os.ReadDir("/proc/self/task")
	var bad []string
	checked := 0
	for _, e := range ents {
		status, err := os.ReadFile("/proc/self/task/" + e.Name() + "/status")
		if err != nil {
			continue // the thread has exited
		}
		_, nspid, _ := strings.Cut(string(status), "NSpid:")
		nspid, _, _ = strings.Cut(nspid, "\n")
		ids := strings.Fields(nspid)
		if len(ids) == 0 {
			bad = append(bad, e.Name()+": no NSpid")
			continue
		}
		tid, _ := strconv.Atoi(ids[len(ids)-1])
		a, err := unix.SchedGetAttr(tid, 0)
		if errors.Is(err, unix.ESRCH) {
			continue // the thread has exited
		}
		checked++
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s (%d): %v", e.Name(), tid, err))
		} else if !ok(a) {
			bad = append(bad, fmt.Sprintf("%d: policy %d, priority %d, nice %d", tid, a.Policy, a.Priority, a.Nice))
		}
	}
	return checked, bad
}

func childPolicy() string {
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		return err.Error()
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	p, prio, err := realtime.Policy(cmd.Process.Pid)
	if err != nil {
		return err.Error()
	}
	return strconv.Itoa(p) + "/" + strconv.Itoa(prio)
}

func TestEnableReachesEveryThreadAndDisableUndoesIt(t *testing.T) {
	testEnableAndDisable(t, 0)
}

// In a PID namespace of its own, the process sees thread IDs in /proc that are not its own (as
// sandbox-init, which runs the pods' programs, does).
func TestEnableAndDisableInOwnPIDNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a PID namespace needs root")
	}
	testEnableAndDisable(t, unix.CLONE_NEWPID)
}

func testEnableAndDisable(t *testing.T, cloneflags uintptr) {
	if err := realtime.Check(1); err != nil {
		t.Skipf("this process may not use SCHED_RR, so Enable cannot be tried: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nice", "-n", strconv.Itoa(helperNice), exe, "-test.run", "^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneflags}
	var r report
	runHelper(t, cmd, &r)
	if r.EnableErr != "" {
		t.Fatalf("Enable(1) failed after Check(1) passed: %s", r.EnableErr)
	}
	if r.Threads < 5 {
		t.Errorf("checked %d threads of the helper after Enable; want at least the 4 it locked and main", r.Threads)
	}
	if len(r.NotRR) > 0 {
		t.Errorf("threads not under SCHED_RR at priority 1 after Enable: %v", r.NotRR)
	}
	// A program started meanwhile inherits the policy: why sandbox-init calls Disable.
	if want := strconv.Itoa(unix.SCHED_RR) + "/1"; r.Child != want {
		t.Errorf("a program started after Enable runs under %s; want %s (inherited)", r.Child, want)
	}
	if r.DisableErr != "" {
		t.Fatalf("Disable: %s", r.DisableErr)
	}
	if r.Checked < 5 {
		t.Errorf("checked %d threads of the helper after Disable; want at least 5", r.Checked)
	}
	if len(r.StillRR) > 0 {
		t.Errorf("threads not back under SCHED_OTHER at nice %d after Disable: %v", helperNice, r.StillRR)
	}
	if want := strconv.Itoa(unix.SCHED_NORMAL) + "/0"; r.ChildAfter != want {
		t.Errorf("a program started after Disable runs under %s; want %s", r.ChildAfter, want)
	}
}

func TestPriorityOutOfRange(t *testing.T) {
	for _, prio := range []int{-1, 0, 100} {
		for name, f := range map[string]func(int) error{"Enable": realtime.Enable, "Check": realtime.Check} {
			err := f(prio)
			if err == nil || !strings.Contains(err.Error(), "want 1 to 99") {
				t.Errorf("%s(%d) = %v; want an error naming the range 1 to 99", name, prio, err)
			}
		}
	}
	// Nothing was changed.
	if p, _, err := realtime.Policy(0); err != nil || p != unix.SCHED_NORMAL {
		t.Errorf("the test's thread runs under policy %d (%v); want SCHED_OTHER", p, err)
	}
}

// Check tries on one thread and puts it back: whichever thread that is, even the main one (where
// the runtime would park, not end, a thread left locked), no thread is left under SCHED_RR.
func TestCheckLeavesTheProcessAlone(t *testing.T) {
	for range 20 {
		realtime.Check(1)
	}
	n, changed := threads(func(a *unix.SchedAttr) bool { return a.Policy == unix.SCHED_NORMAL })
	if n == 0 || len(changed) > 0 {
		t.Errorf("after Check(1), of the %d threads checked these are not under SCHED_OTHER: %v", n, changed)
	}
}

// grantReport is what the grant helper saw, in a cgroup without a budget.
type grantReport struct {
	BeforeErr string            // Enable before Grant
	Budgets   []realtime.Budget // what Grant set
	GrantErr  string
	EnableErr string
	Policy    int // the main thread's, after Enable
}

func grantHelper() {
	realtime.SetReleaseWait(time.Second)
	var r grantReport
	defer func() { json.NewEncoder(os.Stdout).Encode(r) }()
	if err := realtime.Enable(1); err != nil {
		r.BeforeErr = err.Error()
	} else {
		realtime.Disable()
	}
	b, err := realtime.Grant()
	r.Budgets = b
	if err != nil {
		r.GrantErr = err.Error()
		return
	}
	if err := realtime.Enable(1); err != nil {
		r.EnableErr = err.Error()
		return
	}
	r.Policy, _, _ = realtime.Policy(0)
}

// runGrantHelper runs grantHelper in the cgroup dir (of the cpu hierarchy).
func runGrantHelper(t *testing.T, dir string) grantReport {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", `echo $$ >"$0/cgroup.procs" && exec "$@"`, dir, exe, "-test.run", "^$")
	cmd.Env = append(os.Environ(), helperEnv+"=grant")
	var r grantReport
	runHelper(t, cmd, &r)
	return r
}

// runHelper runs cmd, the test binary in a helper's role, and decodes the report it prints.
func runHelper(t *testing.T, cmd *exec.Cmd, report any) {
	t.Helper()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if err := json.Unmarshal(out, report); err != nil {
		t.Fatalf("helper's report %q: %v", out, err)
	}
}

// On a kernel with CONFIG_RT_GROUP_SCHED, a process in a new cgroup may not use SCHED_RR until
// Grant gives its cgroup and the parents without one a budget; a second process beside it then
// finds its parent's budget all held, and says by whom.
func TestGrantOnTheKernel(t *testing.T) {
	const cpu = "/sys/fs/cgroup/cpu"
	if _, err := os.Stat(filepath.Join(cpu, "cpu.rt_runtime_us")); err != nil {
		t.Skip("no cgroup v1 cpu hierarchy with real-time budgets (CONFIG_RT_GROUP_SCHED) at " + cpu)
	}
	if os.Geteuid() != 0 {
		t.Skip("making cgroups needs root")
	}
	if err := realtime.Check(1); err != nil {
		t.Skipf("this process may not use SCHED_RR where it runs: %v", err)
	}
	// A hundredth of the CPU is plenty for the test.
	if free, err := realtime.FreeShare(cpu); err != nil || free < 1<<20/100 {
		t.Skipf("the root cgroup's real-time budget is all held by others (a podnet cluster left up?): %d free of %d; %v", free, 1<<20, err)
	}
	top := filepath.Join(cpu, fmt.Sprintf("podnet-rt-test-%d", os.Getpid()))
	pod, ctr, other := filepath.Join(top, "pod"), filepath.Join(top, "pod", "ctr"), filepath.Join(top, "pod", "other")
	if err := os.Mkdir(top, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, d := range []string{ctr, other, pod, top} {
			// A helper that has exited may linger as a zombie until PID 1 reaps it.
			for i := 0; ; i++ {
				err := os.Remove(d)
				if err == nil || errors.Is(err, os.ErrNotExist) {
					break
				}
				if i == 100 {
					t.Errorf("cgroup %s is left behind: %v", d, err)
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
	// top takes a little of the host's budget (0.2 ms of every 10 ms), not all that Grant would
	// give it, so that nothing else on the host is refused one meanwhile.
	for name, v := range map[string]string{"cpu.rt_period_us": "10000", "cpu.rt_runtime_us": "200"} {
		if err := os.WriteFile(filepath.Join(top, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{ctr, other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r := runGrantHelper(t, ctr)
	if r.BeforeErr == "" || !strings.Contains(r.BeforeErr, "has no real-time budget") {
		t.Errorf("Enable in a cgroup without a budget: %q, want a refusal naming the budget", r.BeforeErr)
	}
	if r.GrantErr != "" || r.EnableErr != "" {
		t.Fatalf("Grant: %q; Enable after it: %q", r.GrantErr, r.EnableErr)
	}
	if r.Policy != unix.SCHED_RR {
		t.Errorf("after Grant and Enable the helper runs under policy %d, want SCHED_RR", r.Policy)
	}
	var dirs []string
	for _, b := range r.Budgets {
		dirs = append(dirs, b.Dir)
		data, err := os.ReadFile(filepath.Join(b.Dir, "cpu.rt_runtime_us"))
		if err != nil || strings.TrimSpace(string(data)) != strconv.FormatInt(b.Runtime.Microseconds(), 10) || b.Runtime <= 0 {
			t.Errorf("%s: cpu.rt_runtime_us %q (%v), Grant says %v", b.Dir, data, err, b.Runtime)
		}
	}
	if want := []string{pod, ctr}; !slices.Equal(dirs, want) {
		t.Errorf("Grant set %v, want %v", dirs, want)
	}
	// ctr holds all of pod's budget, and a process is in it: other gets none, and the error
	// names the holder.
	holder := exec.Command("sh", "-c", `echo $$ >"$0/cgroup.procs" && exec sleep 60`, ctr)
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if procs, _ := os.ReadFile(filepath.Join(ctr, "cgroup.procs")); len(procs) > 0 {
			break
		}
		if i == 100 {
			holder.Process.Kill()
			holder.Wait()
			t.Fatal("the holder did not enter its cgroup")
		}
		time.Sleep(50 * time.Millisecond)
	}
	r = runGrantHelper(t, other)
	holder.Process.Kill()
	holder.Wait()
	if !strings.Contains(r.GrantErr, "no real-time budget left in cgroup "+pod) || !strings.Contains(r.GrantErr, "ctr (") {
		t.Errorf("Grant beside a cgroup that holds the whole budget: %q, want it to name ctr", r.GrantErr)
	}
	// A container that restarts: the one before holds the budget, gone but for its cgroup (the
	// kubelet removes it later). Grant takes it back.
	r = runGrantHelper(t, other)
	if r.GrantErr != "" || r.EnableErr != "" || len(r.Budgets) != 2 || r.Budgets[0] != (realtime.Budget{Dir: ctr, Period: realtime.BudgetPeriod}) || r.Budgets[1].Dir != other || r.Budgets[1].Runtime <= 0 {
		t.Errorf("Grant beside a cgroup with no process that holds the budget: %+v, %q, Enable %q; want ctr's budget taken back and other given it", r.Budgets, r.GrantErr, r.EnableErr)
	}
	if b, _ := os.ReadFile(filepath.Join(ctr, "cpu.rt_runtime_us")); strings.TrimSpace(string(b)) != "0" {
		t.Errorf("%s: cpu.rt_runtime_us %q after it was taken back, want 0", ctr, b)
	}
}
