//go:build linux && (amd64 || arm64)

package nonetfilter

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Install puts the filter, with errno answers, on every thread of the calling process
// (SECCOMP_FILTER_FLAG_TSYNC) and so on everything it starts afterwards. It cannot be undone.
// Without CAP_SYS_ADMIN it sets no_new_privs first, as the kernel demands.
func Install() error {
	_, err := install(unix.SECCOMP_FILTER_FLAG_TSYNC, func(e unix.Errno) uint32 {
		return unix.SECCOMP_RET_ERRNO | uint32(e)
	})
	return err
}

// installListener puts the filter, with supervisor answers, on the calling thread only, and
// returns the listener descriptor (SECCOMP_FILTER_FLAG_NEW_LISTENER). The caller is locked to its
// OS thread and replaces the process with execve next, which makes that thread the process.
func installListener() (int, error) {
	return install(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, func(unix.Errno) uint32 {
		return unix.SECCOMP_RET_USER_NOTIF
	})
}

func install(flags uintptr, deny func(unix.Errno) uint32) (int, error) {
	// no_new_privs and the filter belong to a thread: both must land on the same one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prog, err := Program(deny)
	if err != nil {
		return -1, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return -1, fmt.Errorf("no-netfilter filter: assemble: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	load := func() (int, error) {
		r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
		if errno != 0 {
			return -1, errno
		}
		return int(r), nil
	}
	fd, err := load()
	if errors.Is(err, unix.EACCES) {
		// Not CAP_SYS_ADMIN: the kernel takes a filter only from a task that can gain no
		// privileges by execve.
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return -1, fmt.Errorf("no-netfilter filter: set no_new_privs: %w", err)
		}
		fd, err = load()
	}
	if err != nil {
		return -1, fmt.Errorf("no-netfilter filter: seccomp: %w", err)
	}
	if flags&unix.SECCOMP_FILTER_FLAG_TSYNC != 0 && fd != 0 {
		return -1, fmt.Errorf("no-netfilter filter: thread %d could not take the filter", fd)
	}
	return fd, nil
}
