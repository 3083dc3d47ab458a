//go:build linux && (amd64 || arm64)

package nonetfilter

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// envChild tells a program re-executed by Run that it is the child: its value is the descriptor
// of the socket on which to hand over the listener.
const envChild = "PODNET_NONETFILTER_CHILD"

// MaybeChild must be the first call in main (or TestMain) of a program that calls Run. In Run's
// child it puts the filter on the process, hands the listener to Run and executes the command,
// and never returns; in any other process it returns at once.
func MaybeChild() {
	v, ok := os.LookupEnv(envChild)
	if !ok {
		return
	}
	os.Unsetenv(envChild)
	err := child(v) // returns only on failure
	fmt.Fprintf(os.Stderr, "nonetfilter: %v\n", err)
	os.Exit(127)
}

func child(sockFD string) error {
	sock, err := strconv.Atoi(sockFD)
	if err != nil || len(os.Args) < 3 {
		return fmt.Errorf("bad child invocation (%s=%q, %d arguments)", envChild, sockFD, len(os.Args))
	}
	// The filter goes on this thread only; execve then makes this thread the whole process, and
	// every process it starts inherits the filter.
	runtime.LockOSThread()
	fd, err := installListener()
	if err != nil {
		return err
	}
	if err := unix.Sendmsg(sock, []byte{0}, unix.UnixRights(fd), nil, 0); err != nil {
		return fmt.Errorf("hand over the listener: %w", err)
	}
	unix.Close(fd)
	unix.Close(sock)
	if err := unix.Exec(os.Args[1], os.Args[2:], os.Environ()); err != nil {
		return fmt.Errorf("exec %s: %w", os.Args[1], err)
	}
	return nil
}

// Options of Run.
type Options struct {
	// StandIns is a directory (created if missing) where Run writes stand-ins for the netfilter
	// and kernel tools (StandInNames) and which it puts first on the command's PATH. Each stand-in
	// records its call and fails. Empty means none.
	StandIns string
	// Self is the program re-executed as the child; it calls MaybeChild first. Empty means
	// /proc/self/exe.
	Self string
}

// StandInNames are the programs Run's stand-ins replace: the ones a network plugin reaches for
// to program netfilter, traffic control, kernel modules or sysctls.
func StandInNames() []string {
	return []string{
		"iptables", "ip6tables", "iptables-save", "iptables-restore", "ip6tables-save",
		"ip6tables-restore", "iptables-legacy", "iptables-nft", "nft", "ebtables", "arptables",
		"ipset", "conntrack", "ipvsadm", "tc", "modprobe", "insmod", "sysctl",
	}
}

// Refusal is one system call the filter refused.
type Refusal struct {
	PID     int
	Command string // the process's name (/proc/PID/comm) when the call was made
	Call    string // what was called, as Verdict describes it
	Errno   unix.Errno
}

func (r Refusal) String() string {
	return fmt.Sprintf("pid %d (%s): %s = %s", r.PID, r.Command, r.Call, unix.ErrnoName(r.Errno))
}

// Report is what a command run under the filter did that a kernel without netfilter refuses.
type Report struct {
	Refused  []Refusal // in the order they were answered; the first MaxRecorded of them
	Unlisted int       // refusals past MaxRecorded, counted only
	StandIns []string  // one line per stand-in call: "iptables -L (pid 12, parent 11)"
}

// MaxRecorded bounds Report.Refused: a program that retries a refused call in a loop must not
// grow the supervisor without bound.
const MaxRecorded = 1000

// Clean reports whether nothing was refused and no stand-in was called.
func (r Report) Clean() bool { return len(r.Refused) == 0 && len(r.StandIns) == 0 }

// total is the number of refused calls, listed or not.
func (r Report) total() int { return len(r.Refused) + r.Unlisted }

// String summarises the report in one line, then one line per event.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d system calls refused by the no-netfilter filter, %d stand-in programs called", r.total(), len(r.StandIns))
	for _, x := range r.Refused {
		b.WriteString("\n  refused: " + x.String())
	}
	if r.Unlisted > 0 {
		fmt.Fprintf(&b, "\n  ... and %d more refused calls", r.Unlisted)
	}
	for _, s := range r.StandIns {
		b.WriteString("\n  stand-in: " + s)
	}
	return b.String()
}

// Run runs cmd under the filter, answers every refused call with the errno of a kernel without
// netfilter and records it, and waits for cmd. It rewrites cmd to re-execute the program named by
// o.Self (which calls MaybeChild first) as the child; cmd's other settings (stdio, SysProcAttr,
// Dir, ExtraFiles) hold. Processes that outlive cmd keep the filter, but once Run returns their
// refused calls are answered ENOSYS by the kernel and not recorded.
//
// The error is cmd's (an *exec.ExitError when it failed), or one of setting up the filter.
func Run(cmd *exec.Cmd, o Options) (Report, error) {
	self := o.Self
	if self == "" {
		self = "/proc/self/exe"
	}
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	var log string
	if o.StandIns != "" {
		var err error
		if log, err = writeStandIns(o.StandIns); err != nil {
			return Report{}, err
		}
		env = prependPath(env, o.StandIns)
		// The command itself is looked up again on that PATH: `nonetfilter -- iptables` runs the
		// stand-in too.
		if !strings.Contains(cmd.Args[0], "/") {
			if p := filepath.Join(o.StandIns, cmd.Args[0]); isExecutable(p) {
				cmd.Path, cmd.Err = p, nil
			}
		}
	}
	if cmd.Err != nil {
		return Report{}, cmd.Err
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return Report{}, fmt.Errorf("nonetfilter: socketpair: %w", err)
	}
	parent := os.NewFile(uintptr(pair[0]), "nonetfilter-parent")
	childEnd := os.NewFile(uintptr(pair[1]), "nonetfilter-child")
	defer parent.Close()
	cmd.ExtraFiles = append(cmd.ExtraFiles, childEnd)
	fd := 3 + len(cmd.ExtraFiles) - 1
	cmd.Env = append(env, fmt.Sprintf("%s=%d", envChild, fd))
	cmd.Args = append([]string{self, cmd.Path}, cmd.Args...)
	cmd.Path = self
	err = cmd.Start()
	childEnd.Close()
	if err != nil {
		return Report{}, fmt.Errorf("nonetfilter: start: %w", err)
	}
	listener, err := receiveListener(int(parent.Fd()))
	if err != nil {
		werr := cmd.Wait()
		return Report{}, fmt.Errorf("nonetfilter: the child did not hand over its filter (%v): %w", werr, err)
	}
	s := &supervisor{fd: listener, stop: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(s.serve)
	werr := cmd.Wait()
	close(s.stop)
	wg.Wait()
	unix.Close(listener)
	rep := Report{Refused: s.refused, Unlisted: s.unlisted}
	if log != "" {
		rep.StandIns, err = readLog(log)
		if err != nil && werr == nil {
			werr = err
		}
	}
	return rep, werr
}

func receiveListener(sock int) (int, error) {
	oob := make([]byte, unix.CmsgSpace(4))
	buf := make([]byte, 1)
	_, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("no descriptor received (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, fmt.Errorf("no descriptor received (%v)", err)
	}
	return fds[0], nil
}

// struct seccomp_notif and struct seccomp_notif_resp (linux/seccomp.h).
type seccompNotif struct {
	ID    uint64
	PID   uint32
	Flags uint32
	Nr    int32
	Arch  uint32
	IP    uint64
	Args  [6]uint64
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// supervisor answers the calls the filter hands to its listener.
type supervisor struct {
	fd       int
	stop     chan struct{}
	refused  []Refusal // written by serve only; read after it returned
	unlisted int       // refusals past MaxRecorded
}

func (s *supervisor) serve() {
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		pfd := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 100)
		if err != nil || n == 0 {
			continue // EINTR or time to look at stop again
		}
		if pfd[0].Revents&unix.POLLHUP != 0 {
			return // no process left under the filter
		}
		if pfd[0].Revents&unix.POLLIN != 0 {
			s.answer()
		}
	}
}

// answer receives one notification and answers it. A target that died or whose call a signal
// interrupted makes the ioctls fail with ENOENT; an interrupted call is made again and notified
// again, so only answers the kernel took are recorded.
func (s *supervisor) answer() {
	var n seccompNotif // must be zero for the kernel
	if err := ioctl(s.fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&n)); err != nil {
		return
	}
	errno, what := Verdict(Call{Nr: n.Nr, Arch: n.Arch, Args: n.Args})
	if errno == 0 {
		// The BPF flagged a call that Verdict allows: the two disagree. Refuse and record it, so
		// the run fails and says so.
		errno, what = unix.ENOSYS, fmt.Sprintf("system call %d, flagged by the filter but allowed by Verdict", n.Nr)
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", n.PID))
	resp := seccompNotifResp{ID: n.ID, Error: -int32(errno)}
	if err := ioctl(s.fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&resp)); err != nil {
		return
	}
	if len(s.refused) >= MaxRecorded {
		s.unlisted++
		return
	}
	s.refused = append(s.refused, Refusal{PID: int(n.PID), Command: strings.TrimSpace(string(comm)), Call: what, Errno: errno})
}

func ioctl(fd int, req uint, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// standInLog is the file in the stand-in directory that the stand-ins append to.
const standInLog = "calls.log"

func writeStandIns(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("nonetfilter: stand-ins: %w", err)
	}
	log := filepath.Join(dir, standInLog)
	if err := os.WriteFile(log, nil, 0o666); err != nil {
		return "", fmt.Errorf("nonetfilter: stand-ins: %w", err)
	}
	os.Chmod(log, 0o666) // processes of other users append too; the umask may have narrowed it
	for _, name := range StandInNames() {
		script := fmt.Sprintf(`#!/bin/sh
# podnet's no-netfilter test mode: the kernel has no netfilter, and %[1]s is a stand-in that
# records its call and fails.
printf '%%s\n' "%[1]s $* (pid $$, parent $PPID)" >> %[2]s
echo "%[1]s: not available: this kernel has no netfilter (podnet's no-netfilter test mode)" >&2
exit 1
`, name, shellQuote(log))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			return "", fmt.Errorf("nonetfilter: stand-in %s: %w", name, err)
		}
	}
	return log, nil
}

func readLog(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("nonetfilter: read the stand-ins' log: %w", err)
	}
	var calls []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			calls = append(calls, l)
		}
	}
	return calls, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// prependPath returns env with dir first on PATH.
func prependPath(env []string, dir string) []string {
	out := make([]string, 0, len(env)+1)
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
			continue
		}
		out = append(out, e)
	}
	return append(out, "PATH="+dir+string(os.PathListSeparator)+path)
}
