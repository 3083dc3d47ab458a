package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podnet/podnet/cluster"
	"github.com/podnet/podnet/internal/realtime"
	corev1 "k8s.io/api/core/v1"
)

// UpOptions configures Up.
type UpOptions struct {
	// Name is the lab's name.
	Name string
	// Manifests are the lab's files. A lab that starts for the first time needs a Lab document
	// in them; a lab that crashed resumes from its saved state, with Manifests (if any) applied
	// on top.
	Manifests []Manifest
	// Default are the files a new lab starts from when Manifests is empty (podnet lab up
	// without -f: the built-in example). A lab that resumes ignores them: it comes back as it
	// was, with nothing laid over it.
	Default []Manifest
	// Exe is the podnet binary that runs the daemon. Empty means the running executable.
	Exe string
	// Timeout bounds the wait for every pod to be ready. Zero means 2 minutes.
	Timeout time.Duration
	// Progress receives what Up does, line by line. Nil means discard.
	Progress io.Writer

	// preflight replaces the check that this user can run a lab (tests).
	preflight func() error
}

// Up starts a lab and waits until every pod is ready. Nothing is left behind if it fails.
func Up(opts UpOptions) (*Client, error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		opts.Exe = exe
	}
	c := NewClient(opts.Name)
	if c.Running() {
		return nil, fmt.Errorf("lab %q is already running (change it with podnet apply, or stop it with podnet lab down --name %s)", opts.Name, opts.Name)
	}
	check := opts.preflight
	if check == nil {
		check = preflight
	}
	if err := check(); err != nil {
		return nil, err
	}
	// A lab that was killed resumes from its saved state.
	_, err := os.Stat(filepath.Join(c.Dir, "store.json"))
	resumed := err == nil
	if len(opts.Manifests) == 0 && !resumed {
		opts.Manifests = opts.Default
	}
	// Check the file before anything is created.
	var docs []cluster.Document
	if len(opts.Manifests) > 0 {
		if docs, err = decodeManifests(opts.Manifests); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(c.Dir); err == nil {
		cleanupLeftovers(c.Dir) // what a killed lab left behind
	}
	if !resumed && !hasLab(docs) {
		os.RemoveAll(c.Dir)
		return nil, fmt.Errorf("no Lab document: a new lab needs one (kind: Lab, apiVersion: %s)", cluster.LabAPIVersion)
	}
	if err := checkRealtime(docs, c.Dir, resumed); err != nil {
		if !resumed {
			os.RemoveAll(c.Dir)
		}
		return nil, err
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create lab state directory: %w", err)
	}
	if _, err := readIdentity(c.Dir); err != nil {
		if err := writeIdentity(c.Dir, identity{Name: opts.Name, Number: chooseNumber(opts.Name)}); err != nil {
			os.RemoveAll(c.Dir)
			return nil, err
		}
	}
	fail := func(err error) (*Client, error) {
		Down(opts.Name, nil)
		return nil, err
	}
	if err := startDaemon(opts.Exe, opts.Name, c.Dir); err != nil {
		return fail(err)
	}
	if err := waitFor(10*time.Second, c.Running); err != nil {
		return fail(fmt.Errorf("the lab daemon did not start: %s", tail(filepath.Join(c.Dir, "daemon.log"))))
	}
	if resumed {
		fmt.Fprintf(opts.Progress, "resuming lab %q from %s\n", opts.Name, c.Dir)
	}
	if len(docs) > 0 {
		results, err := c.Apply(opts.Manifests...)
		if err != nil {
			if resumed {
				return c, err // the resumed lab runs; only the file was refused
			}
			return fail(err)
		}
		for _, r := range results {
			fmt.Fprintln(opts.Progress, r)
		}
	}
	if err := c.WaitReady(opts.Timeout); err != nil {
		return c, err
	}
	return c, nil
}

// checkRealtime fails if the lab asks for a real-time priority that its daemon, started from this
// process, could not take: the file's Lab, or else a resumed lab's saved one.
func checkRealtime(docs []cluster.Document, dir string, resumed bool) error {
	var l *cluster.Lab
	for _, d := range docs {
		if dl, ok := d.Object.(*cluster.Lab); ok {
			l = dl
		}
	}
	if l == nil && resumed {
		l = savedLab(dir)
	}
	if l == nil || l.Spec.RealtimePriority == 0 {
		return nil
	}
	if err := realtime.Check(l.Spec.RealtimePriority); err != nil {
		return fmt.Errorf("%s: spec.realtimePriority: %w", cluster.ObjectName(l), err)
	}
	return nil
}

// savedLab returns the Lab document of the lab saved in dir, or nil if it cannot be read (the
// daemon that resumes the lab reports why).
func savedLab(dir string) *cluster.Lab {
	b, err := os.ReadFile(filepath.Join(dir, "store.json"))
	if err != nil {
		return nil
	}
	var saved struct {
		Lab *cluster.Lab `json:"lab"`
	}
	if json.Unmarshal(b, &saved) != nil {
		return nil
	}
	return saved.Lab
}

func hasLab(docs []cluster.Document) bool {
	for _, d := range docs {
		if _, ok := d.Object.(*cluster.Lab); ok {
			return true
		}
	}
	return false
}

// WaitReady waits until every pod that should run is ready (pods that completed count as done).
func (c *Client) WaitReady(timeout time.Duration) error {
	var notReady []string
	err := waitFor(timeout, func() bool {
		objs, err := c.Get(cluster.KindPod, "", "")
		if err != nil {
			return false
		}
		notReady = notReady[:0]
		for _, o := range objs {
			p := o.(*corev1.Pod)
			if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue
			}
			if !podReady(p) {
				notReady = append(notReady, p.Namespace+"/"+p.Name+notReadyReason(p))
			}
		}
		return len(notReady) == 0
	})
	if err != nil {
		return fmt.Errorf("lab %q: pods not ready after %s: %s (see podnet get pods -A and podnet logs)", c.Name, timeout, strings.Join(notReady, ", "))
	}
	return nil
}

func waitFor(timeout time.Duration, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if ok() {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startDaemon(exe, name, dir string) error {
	logf, err := os.OpenFile(filepath.Join(dir, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd := exec.Command(exe, "lab", "daemon", "--name", name, "--dir", dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = daemonAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start lab daemon: %w", err)
	}
	return cmd.Process.Release()
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "no log"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}

// Down stops the lab name and removes everything it created. A lab that is not running is only
// cleaned up. Progress (may be nil) receives what it does.
func Down(name string, progress io.Writer) error {
	if progress == nil {
		progress = io.Discard
	}
	c := NewClient(name)
	if _, err := os.Stat(c.Dir); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(progress, "lab %q is not running\n", name)
		return nil
	}
	pid := daemonPID(c.Dir)
	if c.Running() {
		if err := c.do("POST", "/v1/down", nil, nil, nil); err != nil {
			return err
		}
		// The daemon stops its pods, removes the directory and exits.
		if waitFor(60*time.Second, func() bool { return pid == 0 || !alive(pid, name) }) != nil {
			fmt.Fprintf(progress, "lab %q: the daemon did not stop in time; killing it\n", name)
		}
	}
	cleanupLeftovers(c.Dir)
	if err := os.RemoveAll(c.Dir); err != nil {
		return fmt.Errorf("remove %s: %w", c.Dir, err)
	}
	os.Remove(BaseDir()) // the parent too, once no lab of this user is left in it
	fmt.Fprintf(progress, "lab %q deleted\n", name)
	return nil
}

// cleanupLeftovers kills the daemon of a lab if it is still alive (its pods die with it: every
// container has a parent-death signal) and removes the sockets and pid file.
func cleanupLeftovers(dir string) {
	var id identity
	id, _ = readIdentity(dir)
	if pid := daemonPID(dir); pid > 0 && alive(pid, id.Name) {
		syscall.Kill(pid, syscall.SIGKILL)
		waitFor(10*time.Second, func() bool { return !alive(pid, id.Name) })
	}
	for _, f := range []string{"lab.sock", "exec.sock", "daemon.pid"} {
		os.Remove(filepath.Join(dir, f))
	}
}

func daemonPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "daemon.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// alive reports whether pid is a podnet lab daemon of the lab name (not a reused process ID).
func alive(pid int, name string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	return len(args) >= 5 && args[1] == "lab" && args[2] == "daemon" && args[4] == name
}

// notReadyReason says why a pod is not ready, as far as its status tells: " (reason)" or "".
func notReadyReason(p *corev1.Pod) string {
	var why []string
	if p.Status.Reason != "" {
		why = append(why, p.Status.Reason+": "+p.Status.Message)
	}
	for _, c := range p.Status.ContainerStatuses {
		switch {
		case c.State.Waiting != nil:
			why = append(why, c.Name+" "+c.State.Waiting.Reason)
		case c.State.Terminated != nil:
			why = append(why, fmt.Sprintf("%s exited with %d", c.Name, c.State.Terminated.ExitCode))
		case !c.Ready:
			why = append(why, c.Name+" running, not ready")
		}
	}
	if p.Status.PodIP == "" && len(why) == 0 {
		why = append(why, "no network yet")
	}
	if len(why) == 0 {
		return ""
	}
	return " (" + strings.Join(why, "; ") + ")"
}
