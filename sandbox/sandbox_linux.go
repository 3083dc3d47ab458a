// Package sandbox makes the lab's pod sandboxes: a Linux network namespace held by its
// descriptor, and the processes (containers) that run inside it. It is the lab pod runtime's
// tool, the part a kubelet and containerd play in Kubernetes; the pod's interface in the
// namespace is the node agent's business (package podlink, through the attach protocol).
//
// The design is the one of DESIGN.md's rootless section, used as root too: the caller stays in
// its own network namespace and creates each pod's namespace on a locked OS thread that is then
// discarded rather than returned to the caller's namespace. Nothing in this package touches the
// caller's network namespace, so it needs CAP_NET_ADMIN only over the namespaces it creates —
// which a process has inside a user namespace of its own. No namespace is bind-mounted or named:
// a pod's network namespace lives while the sandbox holds its descriptor or a process runs in it,
// and disappears with them (so a killed lab leaves no namespace behind).
//
// Processes are started through a small init (see Init): the runtime re-executes its own binary
// in a new PID and mount namespace; the init joins the pod's network namespace, bind-mounts the
// pod's resolv.conf over /etc/resolv.conf in its private mount namespace, and runs the command as
// its child, forwarding signals and reaping orphans. When the init dies — because the command
// exited, the runtime killed it, or the runtime itself died (the init has a parent-death signal)
// — the kernel kills every process left in its PID namespace.
//
// It needs no netfilter, XFRM, bridge, traffic control, kernel module or sysctl (see the
// nonetfilter test mode). This package must never change the host's interfaces, routes, sysctls
// or mounts.
package sandbox

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Sandbox is one pod's network namespace.
type Sandbox struct {
	ns netns.NsHandle
}

// New makes a new, empty network namespace: the node agent brings lo up and makes the pod's
// interface in it (attach.Request.NetNS is Path).
//
// The namespace is made on an OS thread of its own, which is then thrown away (its goroutine
// exits while locked, and the Go runtime ends the thread). It never returns to the caller's
// namespace: that would need CAP_SYS_ADMIN over the host's namespace, which a rootless lab does
// not have.
func New() (*Sandbox, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: this thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("sandbox: new network namespace: %w", err)}
			return
		}
		ns, err := netns.Get()
		if err != nil {
			err = fmt.Errorf("sandbox: open network namespace: %w", err)
		}
		done <- result{ns, err}
	}()
	r := <-done
	if r.err != nil {
		return nil, r.err
	}
	return &Sandbox{ns: r.ns}, nil
}

// NetNS returns a descriptor of the pod's network namespace, valid until Close.
func (sb *Sandbox) NetNS() int { return int(sb.ns) }

// Path names the pod's network namespace for this process, valid until Close.
func (sb *Sandbox) Path() string { return fmt.Sprintf("/proc/self/fd/%d", int(sb.ns)) }

// Close releases the namespace descriptor. The namespace itself goes away when no process runs
// in it and no descriptor of it (a pod's TAP, say) is left.
func (sb *Sandbox) Close() error {
	if !sb.ns.IsOpen() {
		return nil
	}
	err := sb.ns.Close()
	sb.ns = netns.None()
	return err
}
