package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/realtime"
	"golang.org/x/sys/unix"
)

// realtimeLab is sameNodeLab whose daemon runs under SCHED_RR.
var realtimeLab = strings.Replace(sameNodeLab, "  nodes: [{name: node-a}]\n", "  realtimePriority: 1\n  nodes: [{name: node-a}]\n", 1)

// A lab with spec.realtimePriority runs every thread of its daemon, where the data paths run,
// under SCHED_RR, and its pods' programs under the ordinary policy; where this user may not use
// SCHED_RR, lab up refuses the file, says why, and leaves nothing behind.
func TestLabRealtimePriority(t *testing.T) {
	requireLab(t)
	permitted := realtime.Check(1)
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_RTPRIO, &lim)
	t.Run("refused where not permitted", func(t *testing.T) {
		if permitted == nil {
			t.Skipf("skipped: this process may use SCHED_RR (uid %d, RLIMIT_RTPRIO %d), so there is no refusal to see", os.Geteuid(), lim.Cur)
		}
		testRealtimeRefused(t)
	})
	t.Run("daemon under SCHED_RR", func(t *testing.T) {
		if permitted != nil {
			t.Skipf("skipped: this process may not use SCHED_RR (RLIMIT_RTPRIO %d, hard %d, which only CAP_SYS_RESOURCE raises): %v", lim.Cur, lim.Max, permitted)
		}
		testRealtimeLab(t)
	})
}

func testRealtimeLab(t *testing.T) {
	before := snapshot(t)
	l := startLab(t, realtimeLab)
	daemon := l.daemonPID(t)

	if notRR := threadsNotRR(daemon); len(notRR) > 0 {
		t.Errorf("the daemon's threads not under SCHED_RR at priority 1: %v", notRR)
	}

	// The pods' programs: those the daemon started (through sandbox-init), and one run by exec.
	progs := podPrograms(t, daemon)
	if len(progs) < 4 { // server, client, and duo's two containers
		t.Fatalf("found %d programs of the lab's pods under its daemon (pid %d); want at least 4", len(progs), daemon)
	}
	for pid, name := range progs {
		if p, prio, err := realtime.Policy(pid); err == nil && p != unix.SCHED_NORMAL {
			t.Errorf("pod program %s (pid %d) runs under policy %d, priority %d; want SCHED_OTHER", name, pid, p, prio)
		}
	}
	if out := strings.Fields(l.must(t, "exec", "client", "--", "cat", "/proc/self/stat")); len(out) < 41 || out[40] != "0" {
		t.Errorf("a program run by podnet exec: /proc/self/stat policy field = %v; want 0 (SCHED_OTHER)", out[min(40, len(out)-1):])
	}

	// And the network works.
	server := l.pods()["server"]
	if out := l.must(t, "exec", "client", "--", "curl", "-sS", "--max-time", "5", "http://"+server.Status.PodIP+"/clientip"); !strings.Contains(out, l.pods()["client"].Status.PodIP) {
		t.Errorf("curl from client to server = %q; want the client's pod IP", out)
	}
	l.must(t, "lab", "down")
	before.check(t, snapshot(t))
}

// testRealtimeRefused checks that a lab file asking for SCHED_RR that this user may not have is
// refused before anything is made.
func testRealtimeRefused(t *testing.T) {
	before := snapshot(t)
	l := &labRun{t: t, name: fmt.Sprintf("it%d", os.Getpid()%100000)}
	file := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(file, []byte(realtimeLab), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := l.podnet("lab", "up", "-f", file, "--timeout", "60s")
	if err == nil {
		l.podnet("lab", "down")
		t.Fatal("lab up of a lab with realtimePriority 1 succeeded where this user may not use SCHED_RR")
	}
	for _, want := range []string{"lab/itest: spec.realtimePriority:", "SCHED_RR at priority 1", "not permitted"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("lab up's error does not say %q:\n%v", want, err)
		}
	}
	if _, err := os.Stat(filepath.Join(stateBase(), l.name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused lab left its state directory: %v", err)
	}
	before.check(t, snapshot(t))
}

// podPrograms returns the programs that the sandbox-init children of the daemon run, by pid.
func podPrograms(t *testing.T, daemon int) map[int]string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	parent := map[int]int{}
	comm := map[int]string{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(s[close+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		parent[pid], comm[pid] = ppid, s[open+1:close]
	}
	progs := map[int]string{}
	for pid, ppid := range parent {
		if parent[ppid] == daemon {
			progs[pid] = comm[pid]
		}
	}
	return progs
}

// threadsNotRR describes each thread of process pid that does not run under SCHED_RR at priority
// 1; a process none of whose threads could be checked (it has exited) is one entry too.
func threadsNotRR(pid int) []string {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var bad []string
	checked := 0
	for _, e := range tasks {
		tid, _ := strconv.Atoi(e.Name())
		p, prio, err := realtime.Policy(tid)
		if err != nil {
			continue // the thread has exited
		}
		checked++
		if p != unix.SCHED_RR || prio != 1 {
			bad = append(bad, fmt.Sprintf("thread %d of %d (%d threads): policy %d, priority %d", tid, pid, len(tasks), p, prio))
		}
	}
	if checked == 0 {
		bad = append(bad, fmt.Sprintf("process %d: no thread could be checked", pid))
	}
	return bad
}
