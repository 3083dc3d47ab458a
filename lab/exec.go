package lab

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/podnet/podnet/cluster"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// The exec protocol, on exec.sock: the client sends one message holding an ExecRequest (JSON) and
// its standard input, output and error as SCM_RIGHTS descriptors, so the command reads and writes
// the client's own files (a terminal, a pipe) with no copying. The daemon answers with JSON lines:
// {"started":true} or {"error":"..."}, then {"exit":N}. While the command runs, the client sends
// {"signal":N} lines for the signals it receives; closing the connection kills the command.

// ExecRequest asks the daemon to run a command in a pod.
type ExecRequest struct {
	Namespace string   `json:"namespace"`
	Pod       string   `json:"pod"`
	Container string   `json:"container,omitempty"`
	Argv      []string `json:"argv"`
}

type execReply struct {
	Started bool   `json:"started,omitempty"`
	Error   string `json:"error,omitempty"`
	Exit    *int   `json:"exit,omitempty"`
}

type execSignal struct {
	Signal int `json:"signal"`
}

func (d *daemon) serveExec(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go d.handleExec(c.(*net.UnixConn))
	}
}

func (d *daemon) handleExec(c *net.UnixConn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	files, err := receiveFiles(oob[:oobn])
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	enc := json.NewEncoder(c)
	fail := func(err error) { enc.Encode(execReply{Error: err.Error()}) }
	if err != nil {
		fail(err)
		return
	}
	var req ExecRequest
	if err := json.Unmarshal(buf[:n], &req); err != nil {
		fail(fmt.Errorf("bad exec request: %w", err))
		return
	}
	if len(files) != 3 {
		fail(fmt.Errorf("exec request carries %d descriptors, want 3", len(files)))
		return
	}
	objs, _ := d.store.Get(cluster.KindPod, req.Namespace, req.Pod)
	if len(objs) == 0 {
		fail(fmt.Errorf("pods %q not found in namespace %q", req.Pod, req.Namespace))
		return
	}
	p := objs[0].(*corev1.Pod)
	rt := d.runtimeFor(p.Spec.NodeName)
	if rt == nil {
		fail(fmt.Errorf("pod %s is not running on a node", req.Pod))
		return
	}
	proc, err := rt.Exec(req.Namespace, req.Pod, req.Container, req.Argv, files[0], files[1], files[2])
	if err != nil {
		fail(err)
		return
	}
	// The process holds its own copies of the descriptors now.
	for _, f := range files {
		f.Close()
	}
	files = nil
	enc.Encode(execReply{Started: true})
	go func() {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			var s execSignal
			if json.Unmarshal(sc.Bytes(), &s) == nil && s.Signal > 0 && s.Signal < 65 {
				proc.Signal(syscall.Signal(s.Signal))
			}
		}
		// The client went away: so does the command (its init dies with its whole PID namespace).
		proc.Signal(syscall.SIGKILL)
	}()
	code, _ := proc.Wait()
	enc.Encode(execReply{Exit: &code})
}

func receiveFiles(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("exec request: %w", err)
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "exec-stdio"))
		}
	}
	return files, nil
}

// Exec runs argv in a pod of the lab with the given standard files, forwards SIGINT, SIGTERM,
// SIGHUP and SIGQUIT to it, and returns its exit code.
func (c *Client) Exec(req ExecRequest, stdin, stdout, stderr *os.File) (int, error) {
	conn, err := net.Dial("unix", filepath.Join(c.Dir, "exec.sock"))
	if err != nil {
		return 0, c.notRunning(err)
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)
	b, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	rights := unix.UnixRights(int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd()))
	if _, _, err := uc.WriteMsgUnix(b, rights, nil); err != nil {
		return 0, fmt.Errorf("send exec request: %w", err)
	}
	dec := json.NewDecoder(uc)
	var r execReply
	if err := dec.Decode(&r); err != nil {
		return 0, fmt.Errorf("exec: no answer from the lab: %w", err)
	}
	if r.Error != "" {
		return 0, errors.New(r.Error)
	}
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigc)
	done := make(chan struct{})
	defer close(done)
	go func() {
		enc := json.NewEncoder(uc)
		for {
			select {
			case s := <-sigc:
				enc.Encode(execSignal{Signal: int(s.(syscall.Signal))})
			case <-done:
				return
			}
		}
	}()
	for {
		var r execReply
		if err := dec.Decode(&r); err != nil {
			return 0, fmt.Errorf("exec: lost the lab: %w", err)
		}
		if r.Exit != nil {
			return *r.Exit, nil
		}
	}
}
