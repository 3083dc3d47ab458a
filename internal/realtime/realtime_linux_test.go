package realtime_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/podnet/podnet/internal/realtime"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary run helper instead of the tests: Enable and Disable change the
// whole process, so they run in a process of their own.
const helperEnv = "PODNET_REALTIME_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		helper()
		return
	}
	os.Exit(m.Run())
}

// report is what the helper saw.
type report struct {
	EnableErr  string
	Threads    int // threads after Enable, counting those made after it
	NotRR      []string
	Child      string // a started program's policy, before Disable
	DisableErr string
	StillRR    []string
	ChildAfter string // a program started after Disable
}

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
	r.Threads, r.NotRR = threads(func(p, prio int) bool { return p == unix.SCHED_RR && prio == 1 })
	r.Child = childPolicy()
	close(release)
	if err := realtime.Disable(); err != nil {
		r.DisableErr = err.Error()
		return
	}
	_, r.StillRR = threads(func(p, _ int) bool { return p == unix.SCHED_NORMAL })
	r.ChildAfter = childPolicy()
}

// threads returns how many threads this process has and those for which ok is false.
func threads(ok func(policy, priority int) bool) (int, []string) {
	ents, _ := os.ReadDir("/proc/self/task")
	var bad []string
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		p, prio, err := realtime.Policy(tid)
		if err != nil {
			continue
		}
		if !ok(p, prio) {
			bad = append(bad, e.Name()+":"+strconv.Itoa(p)+"/"+strconv.Itoa(prio))
		}
	}
	return len(ents), bad
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
	cmd := exec.Command(exe, "-test.run", "^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneflags}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("helper's report %q: %v", out, err)
	}
	if r.EnableErr != "" {
		t.Fatalf("Enable(1) failed after Check(1) passed: %s", r.EnableErr)
	}
	if r.Threads < 5 {
		t.Errorf("the helper had %d threads; want at least the 4 it locked and main", r.Threads)
	}
	if len(r.NotRR) > 0 {
		t.Errorf("threads not under SCHED_RR at priority 1 after Enable (tid:policy/priority): %v", r.NotRR)
	}
	// A program started meanwhile inherits the policy: why sandbox-init calls Disable.
	if want := strconv.Itoa(unix.SCHED_RR) + "/1"; r.Child != want {
		t.Errorf("a program started after Enable runs under %s; want %s (inherited)", r.Child, want)
	}
	if r.DisableErr != "" {
		t.Fatalf("Disable: %s", r.DisableErr)
	}
	if len(r.StillRR) > 0 {
		t.Errorf("threads still real-time after Disable: %v", r.StillRR)
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

func TestCheckLeavesTheCallerAlone(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err := realtime.Check(1)
	p, _, perr := realtime.Policy(0)
	if perr != nil {
		t.Fatal(perr)
	}
	if p != unix.SCHED_NORMAL {
		t.Errorf("Check(1) (err %v) left the caller's thread under policy %d; want SCHED_OTHER", err, p)
	}
}
