package sandbox

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	"github.com/podnet/podnet/internal/realtime"
	"golang.org/x/sys/unix"
)

// InitCommand is the first argument that makes the podnet binary run Init. The CLI registers it
// as a hidden command; tests register it in TestMain.
const InitCommand = "sandbox-init"

// RunnerOptions configures a Runner.
type RunnerOptions struct {
	// Exe is the binary that runs Init when its first argument is InitCommand. Empty means
	// /proc/self/exe.
	Exe string
}

// Runner starts processes in sandboxes. It forks every process from one OS thread that it owns
// and never lets exit, because the kernel delivers a child's parent-death signal when the thread
// that forked it exits, not the process.
type Runner struct {
	exe  string
	reqs chan func()
	stop chan struct{}
	wg   sync.WaitGroup
}

// NewRunner starts a Runner. Close stops it.
func NewRunner(opts RunnerOptions) *Runner {
	r := &Runner{exe: opts.Exe, reqs: make(chan func()), stop: make(chan struct{})}
	if r.exe == "" {
		r.exe = "/proc/self/exe"
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		runtime.LockOSThread()
		// The thread is never unlocked: it must outlive every child it forked, so when this
		// goroutine returns (at Close) the runtime ends the thread, and any child still running
		// gets its parent-death signal — the behaviour we want at shutdown.
		for {
			select {
			case f := <-r.reqs:
				f()
			case <-r.stop:
				return
			}
		}
	}()
	return r
}

// Close stops the Runner's thread. Processes it started and that are still running are killed
// by their parent-death signal.
func (r *Runner) Close() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.wg.Wait()
}

// ProcessSpec describes a process to run in a sandbox.
type ProcessSpec struct {
	// Args is the command and its arguments; Args[0] is looked up in PATH of Env.
	Args []string
	// Env is the whole environment of the process.
	Env []string
	// Dir is the working directory. Empty means "/".
	Dir string
	// ResolvConf, if set, is a file bind-mounted over /etc/resolv.conf in the process's private
	// mount namespace.
	ResolvConf string
	// Stdin, Stdout and Stderr are the process's standard files. Nil means /dev/null.
	Stdin, Stdout, Stderr *os.File
}

// Process is a command running in a sandbox, under its own init.
type Process struct {
	cmd      *exec.Cmd
	waitOnce sync.Once
	code     int
	err      error
}

// Start runs spec inside the network namespace of sb. The process stays running if sb is closed.
func (r *Runner) Start(sb *Sandbox, spec ProcessSpec) (*Process, error) {
	if len(spec.Args) == 0 {
		return nil, errors.New("sandbox: no command")
	}
	if !sb.ns.IsOpen() {
		return nil, errors.New("sandbox: closed")
	}
	nsfd, err := unix.Dup(int(sb.ns))
	if err != nil {
		return nil, fmt.Errorf("sandbox: dup namespace descriptor: %w", err)
	}
	nsFile := os.NewFile(uintptr(nsfd), "netns")
	defer nsFile.Close()
	dir := spec.Dir
	if dir == "" {
		dir = "/"
	}
	args := []string{r.exe, InitCommand, "--dir", dir}
	if spec.ResolvConf != "" {
		args = append(args, "--resolv", spec.ResolvConf)
	}
	args = append(args, "--")
	args = append(args, spec.Args...)
	cmd := &exec.Cmd{
		Path:       r.exe,
		Args:       args,
		Env:        spec.Env,
		Stdin:      spec.Stdin,
		Stdout:     spec.Stdout,
		Stderr:     spec.Stderr,
		ExtraFiles: []*os.File{nsFile}, // fd 3 in the init
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS,
			Pdeathsig:  syscall.SIGKILL,
			Setsid:     true,
		},
	}
	errc := make(chan error, 1)
	select {
	case r.reqs <- func() { errc <- cmd.Start() }:
	case <-r.stop:
		return nil, errors.New("sandbox: runner closed")
	}
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("sandbox: start %q: %w", spec.Args[0], err)
	}
	return &Process{cmd: cmd}, nil
}

// Pid returns the process ID of the process's init, as seen by the caller.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process's init, which forwards it to the command. SIGKILL kills the
// init and with it every process in the sandbox's PID namespace.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits for the command to exit and returns its exit code: the exit status, or 128+N if a
// signal N ended it. It may be called any number of times.
func (p *Process) Wait() (int, error) {
	p.waitOnce.Do(func() {
		err := p.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			p.code = 0
		case errors.As(err, &ee):
			p.code = exitCode(ee.Sys().(syscall.WaitStatus))
		default:
			p.code, p.err = -1, err
		}
	})
	return p.code, p.err
}

func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// Init is the sandbox's init, run as PID 1 of a new PID namespace in a new mount namespace, with
// the pod's network namespace as file descriptor 3. It joins that namespace, bind-mounts the pod's
// resolv.conf, runs the command as its child, forwards signals to it, reaps orphans, and returns
// the command's exit code. Errors of its own are printed to standard error with code 127 (command
// not found) or 126 (anything else), as a shell does.
func Init(args []string) int {
	// Namespaces are per thread until exec: everything below happens on this locked thread, and
	// the command is forked from it.
	runtime.LockOSThread()
	// A lab's daemon may run under SCHED_RR (spec.realtimePriority), which we inherited: the
	// pod's processes run under the ordinary policy, as on any node.
	if err := realtime.Disable(); err != nil {
		fmt.Fprintf(os.Stderr, "podnet: sandbox-init: %v\n", err)
		return 126
	}
	fs := flag.NewFlagSet(InitCommand, flag.ContinueOnError)
	resolv := fs.String("resolv", "", "file to bind-mount over /etc/resolv.conf")
	dir := fs.String("dir", "/", "working directory")
	if err := fs.Parse(args); err != nil {
		return 126
	}
	argv := fs.Args()
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "podnet: sandbox-init: no command")
		return 126
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "podnet: "+format+"\n", a...)
		return 126
	}
	if err := unix.Setns(3, unix.CLONE_NEWNET); err != nil {
		return fail("join pod network namespace: %v", err)
	}
	unix.Close(3)
	// Our mount namespace is a copy of the agent's: make it private before changing anything,
	// so that no mount propagates back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail("make mounts private: %v", err)
	}
	if *resolv != "" {
		if err := unix.Mount(*resolv, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
			return fail("bind-mount %s over /etc/resolv.conf: %v", *resolv, err)
		}
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "podnet: %s: command not found\n", argv[0])
		return 127
	}
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT,
		unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH)
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Dir = *dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fail("start %s: %v", argv[0], err)
	}
	child := cmd.Process.Pid
	for sig := range sigc {
		if sig != unix.SIGCHLD {
			_ = cmd.Process.Signal(sig)
			continue
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err != nil || pid <= 0 {
				break
			}
			if pid == child {
				if ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ws.ExitStatus()
			}
		}
	}
	return 126
}
