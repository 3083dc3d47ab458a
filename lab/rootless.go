package lab

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// A rootless lab (DESIGN.md, "Rootless"): `lab up` run by an ordinary user starts the daemon in a
// user namespace of its own, where the user is mapped to root, and in a mount namespace owned by
// it. The daemon keeps the host's network namespace, so its host-facing sockets are ordinary
// unprivileged sockets, and it makes every pod's network namespace inside its user namespace,
// where it has CAP_NET_ADMIN. No setuid helper, no file capabilities, nothing outside the user's
// own directories.

// Rootless reports whether this process runs without real root: as an ordinary user, or as root
// inside a user namespace that maps only part of the host's IDs (a rootless lab's daemon).
func Rootless() bool {
	if os.Geteuid() != 0 {
		return true
	}
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}

// Mode is "root" or "rootless": how this process runs labs.
func Mode() string {
	if Rootless() {
		return "rootless"
	}
	return "root"
}

// daemonAttr returns how the daemon process is started: in a session of its own, and for an
// ordinary user in a new user and mount namespace with the user mapped to root.
func daemonAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setsid: true}
	if os.Geteuid() != 0 {
		attr.Cloneflags = syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
	return attr
}

// preflight checks, before anything is created, that this user can run a lab, and says what to
// change if not.
func preflight() error {
	if err := unix.Access("/dev/net/tun", unix.R_OK|unix.W_OK); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return errors.New("/dev/net/tun does not exist: podnet needs the kernel's TUN/TAP driver (CONFIG_TUN; where it is a module: modprobe tun; in a container: --device /dev/net/tun)")
		}
		return fmt.Errorf("cannot open /dev/net/tun for reading and writing (%v): podnet needs it to make pod TAP devices; "+
			"it is mode 0666 on stock Debian and Ubuntu, and an administrator can restore that with: chmod 0666 /dev/net/tun", err)
	}
	if os.Geteuid() != 0 {
		// Try the user namespace the daemon will need.
		cmd := exec.Command("/proc/self/exe", "--help")
		cmd.SysProcAttr = daemonAttr()
		cmd.SysProcAttr.Setsid = false
		if err := cmd.Run(); err != nil {
			return userNamespaceError(err, readSysctl)
		}
	}
	// And the namespaces of a pod: its network namespace, and the PID and mount namespaces its
	// containers run in.
	cmd := exec.Command("/proc/self/exe", "--help")
	cmd.SysProcAttr = daemonAttr()
	cmd.SysProcAttr.Setsid = false
	cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNET | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("podnet needs network, PID and mount namespaces (a kernel with CONFIG_NET_NS and CONFIG_PID_NS), and making them failed: %v", err)
	}
	return nil
}

func readSysctl(path string) string {
	b, _ := os.ReadFile(path)
	return string(bytes.TrimSpace(b))
}

// userNamespaceError explains why an unprivileged user namespace could not be made, from the
// settings that read returns (a path under /proc/sys to its value, "" if absent).
func userNamespaceError(err error, read func(path string) string) error {
	const hint = "a rootless lab needs unprivileged user namespaces"
	switch {
	case read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
		return fmt.Errorf("%s, but kernel.unprivileged_userns_clone is 0; an administrator can enable them with: sysctl -w kernel.unprivileged_userns_clone=1 (%v)", hint, err)
	case read("/proc/sys/user/max_user_namespaces") == "0":
		return fmt.Errorf("%s, but user.max_user_namespaces is 0; an administrator can allow them with: sysctl -w user.max_user_namespaces=15000 (%v)", hint, err)
	case read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
		return fmt.Errorf("%s, but AppArmor restricts them (kernel.apparmor_restrict_unprivileged_userns=1); an administrator can lift that with: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or allow podnet with an AppArmor profile granting 'userns' (%v)", hint, err)
	}
	return fmt.Errorf("%s, and making one failed: %v (check user.max_user_namespaces and any seccomp or LSM policy)", hint, err)
}

// ownerListener accepts only connections from processes of the lab's owner: the same user ID as
// this process, as the kernel reports it for the peer (SO_PEERCRED). Inside a rootless lab's user
// namespace the owner is 0 and every other user appears as the overflow ID, so both modes refuse
// other users even where file permissions would let them reach the socket (root, say).
type ownerListener struct{ net.Listener }

func (l ownerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if peerIsOwner(c) {
			return c, nil
		}
		c.Close()
	}
}

func peerIsOwner(c net.Conn) bool {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	var credErr error
	raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	return credErr == nil && cred != nil && int(cred.Uid) == os.Geteuid()
}
