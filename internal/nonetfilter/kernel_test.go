//go:build linux && (amd64 || arm64)

package nonetfilter

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/podnet/podnet/tap"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the programs the tests run under the filter (a probe of the
// kernel's answers), and as Run's child.
const envProbe = "NONETFILTER_TEST_PROBE" // "install": Install, then probe; "run": probe only

func TestMain(m *testing.M) {
	MaybeChild()
	if mode := os.Getenv(envProbe); mode != "" {
		os.Exit(probe(mode))
	}
	os.Exit(m.Run())
}

// probes are the calls the probe makes, each with the errno wanted under the filter ("" for
// success). Those marked privileged need CAP_NET_ADMIN over a new network namespace and a
// usable /dev/net/tun.
func probes() []struct {
	name, want string
	privileged bool
	do         func() error
} {
	udp := func(network string) (int, func(), error) {
		c, err := net.ListenPacket(network, "")
		if err != nil {
			return -1, nil, err
		}
		f, err := c.(*net.UDPConn).File()
		c.Close()
		if err != nil {
			return -1, nil, err
		}
		return int(f.Fd()), func() { f.Close() }, nil
	}
	sockopt := func(network string, level, opt int, get bool) func() error {
		return func() error {
			fd, done, err := udp(network)
			if err != nil {
				return err
			}
			defer done()
			if get {
				_, err = unix.GetsockoptInt(fd, level, opt)
			} else {
				err = unix.SetsockoptInt(fd, level, opt, 0)
			}
			return err
		}
	}
	socket := func(proto int) func() error {
		return func() error {
			fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}
	}
	return []struct {
		name, want string
		privileged bool
		do         func() error
	}{
		{"socket NETLINK_NETFILTER", "EPROTONOSUPPORT", false, socket(unix.NETLINK_NETFILTER)},
		{"socket NETLINK_XFRM", "EPROTONOSUPPORT", false, socket(unix.NETLINK_XFRM)},
		{"socket NETLINK_ROUTE", "", false, socket(unix.NETLINK_ROUTE)},
		{"route netlink, list links", "", false, func() error {
			h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
			if err != nil {
				return err
			}
			defer h.Close()
			_, err = h.LinkList()
			return err
		}},
		{"setsockopt IPT_SO_SET_REPLACE", "ENOPROTOOPT", false, sockopt("udp4", unix.SOL_IP, 64, false)},
		{"getsockopt IPT_SO_GET_INFO", "ENOPROTOOPT", false, sockopt("udp4", unix.SOL_IP, 64, true)},
		{"getsockopt SO_ORIGINAL_DST", "ENOPROTOOPT", false, sockopt("udp4", unix.SOL_IP, 80, true)},
		{"setsockopt ARPT_SO_SET_REPLACE", "ENOPROTOOPT", false, sockopt("udp4", unix.SOL_IP, 96, false)},
		{"setsockopt EBT_SO_SET_ENTRIES", "ENOPROTOOPT", false, sockopt("udp4", unix.SOL_IP, 128, false)},
		{"setsockopt IP6T_SO_SET_REPLACE", "ENOPROTOOPT", false, sockopt("udp6", unix.SOL_IPV6, 64, false)},
		{"setsockopt IP_TOS", "", false, sockopt("udp4", unix.SOL_IP, unix.IP_TOS, false)},
		{"setsockopt IPV6_TCLASS", "", false, sockopt("udp6", unix.SOL_IPV6, unix.IPV6_TCLASS, false)},
		{"setsockopt UDP_GRO", "", false, sockopt("udp4", unix.SOL_UDP, unix.UDP_GRO, false)},
		{"UDP on loopback", "", false, func() error {
			c, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := c.WriteTo([]byte("x"), c.LocalAddr()); err != nil {
				return err
			}
			_, _, err = c.ReadFrom(make([]byte, 8))
			return err
		}},
		{"finit_module", "ENOSYS", false, func() error {
			_, _, e := unix.Syscall(unix.SYS_FINIT_MODULE, ^uintptr(0), 0, 0)
			return errnoOrNil(e)
		}},
		{"init_module", "ENOSYS", false, func() error {
			_, _, e := unix.Syscall(unix.SYS_INIT_MODULE, 0, 0, 0)
			return errnoOrNil(e)
		}},
		{"new network namespace with a TAP", "", true, func() error {
			errc := make(chan error, 1)
			go func() {
				runtime.LockOSThread() // never unlocked: the thread ends in the new namespace
				if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
					errc <- err
					return
				}
				d, err := tap.Open("eth0")
				if err == nil {
					d.Close()
				}
				errc <- err
			}()
			return <-errc
		}},
	}
}

func errnoOrNil(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// probe makes every call and prints "name: ERRNO" (or "name: ok") per line.
func probe(mode string) int {
	if mode == "install" {
		if err := Install(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	privileged := os.Getenv("NONETFILTER_TEST_PRIVILEGED") == "1"
	for _, p := range probes() {
		if p.privileged && !privileged {
			continue
		}
		result := "ok"
		if err := p.do(); err != nil {
			var e unix.Errno
			if errors.As(err, &e) {
				result = unix.ErrnoName(e)
			} else {
				result = err.Error()
			}
		}
		fmt.Printf("%s: %s\n", p.name, result)
	}
	return 0
}

// probeCmd returns a command that runs the probe. Without root it runs in a user namespace of
// its own (as root inside it) where one can be made, so the privileged probes run too.
func probeCmd(t *testing.T, mode string) (cmd *exec.Cmd, privileged bool) {
	t.Helper()
	privileged = os.Geteuid() == 0 || userNamespaces()
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envProbe+"="+mode)
	if privileged {
		if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
			t.Logf("the namespace and TAP probe is skipped: %v", err)
			privileged = false
		} else {
			f.Close()
		}
	}
	if privileged {
		cmd.Env = append(cmd.Env, "NONETFILTER_TEST_PRIVILEGED=1")
		if os.Geteuid() != 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{
				Cloneflags:  syscall.CLONE_NEWUSER,
				UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
				GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
			}
		}
	} else {
		t.Log("the namespace and TAP probe is skipped: neither root nor user namespaces")
	}
	return cmd, privileged
}

func userNamespaces() bool {
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	return cmd.Run() == nil
}

// checkProbe compares the probe's output with what each call should get under the filter.
func checkProbe(t *testing.T, out string, privileged bool) {
	t.Helper()
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if name, result, ok := strings.Cut(l, ": "); ok {
			got[name] = result
		}
	}
	for _, p := range probes() {
		if p.privileged && !privileged {
			continue
		}
		want := p.want
		if want == "" {
			want = "ok"
		}
		if got[p.name] != want {
			t.Errorf("%s: got %q, want %q", p.name, got[p.name], want)
		}
	}
}

// TestInstall runs the probe with the filter installed: each refused call gets the errno of a
// kernel without netfilter, and route netlink, UDP sockets, namespaces and TAP still work.
func TestInstall(t *testing.T) {
	cmd, privileged := probeCmd(t, "install")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	checkProbe(t, string(out), privileged)
}

// TestRun runs the probe under Run's supervisor: the same answers, and each refusal recorded
// with the process that made it; a stand-in called through PATH is recorded and fails.
func TestRun(t *testing.T) {
	cmd, privileged := probeCmd(t, "run")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	rep, err := Run(cmd, Options{StandIns: t.TempDir()})
	if err != nil {
		t.Fatalf("run the probe: %v\n%s", err, out.String())
	}
	checkProbe(t, out.String(), privileged)
	var calls []string
	for _, r := range rep.Refused {
		calls = append(calls, r.Call)
		if r.PID <= 0 || r.Command == "" {
			t.Errorf("refusal %v: no process", r)
		}
	}
	want := []string{
		"socket(AF_NETLINK, NETLINK_NETFILTER)",
		"socket(AF_NETLINK, NETLINK_XFRM)",
		"setsockopt(level 0, option 64: ip_tables)",
		"getsockopt(level 0, option 64: ip_tables)",
		"getsockopt(level 0, option 80: SO_ORIGINAL_DST)",
		"setsockopt(level 0, option 96: arp_tables)",
		"setsockopt(level 0, option 128: ebtables)",
		"setsockopt(level 41, option 64: ip6_tables)",
		"finit_module",
		"init_module",
	}
	if !slices.Equal(calls, want) {
		t.Errorf("refused calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	if rep.Clean() || len(rep.StandIns) != 0 {
		t.Errorf("report %v: want refusals and no stand-in calls", rep)
	}

	// A stand-in: found first on PATH, fails, and is recorded with its arguments.
	// The command itself is a stand-in too when named without a path.
	direct := exec.Command("iptables", "-S")
	direct.Stdout, direct.Stderr = io.Discard, io.Discard
	rep, err = Run(direct, Options{StandIns: t.TempDir()})
	if err == nil || len(rep.StandIns) != 1 || !strings.HasPrefix(rep.StandIns[0], "iptables -S (pid ") {
		t.Errorf("iptables run directly: err %v, stand-in calls %q; want the stand-in's failure", err, rep.StandIns)
	}

	sh := exec.Command("/bin/sh", "-c", "iptables -t nat -L && echo ran")
	var shOut strings.Builder
	sh.Stdout, sh.Stderr = &shOut, &shOut
	rep, err = Run(sh, Options{StandIns: t.TempDir()})
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("iptables through a stand-in: err %v, want the shell's failure\n%s", err, shOut.String())
	}
	if strings.Contains(shOut.String(), "ran") || !strings.Contains(shOut.String(), "no netfilter") {
		t.Errorf("the stand-in did not fail as it should: %q", shOut.String())
	}
	if len(rep.StandIns) != 1 || !strings.HasPrefix(rep.StandIns[0], "iptables -t nat -L (pid ") {
		t.Errorf("stand-in calls %q, want one of iptables -t nat -L", rep.StandIns)
	}
}
