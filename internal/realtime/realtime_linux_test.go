package realtime_test

import (
	"encoding/json"
	"errors"
	"fmt"
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
