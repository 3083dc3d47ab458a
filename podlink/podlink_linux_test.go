package podlink

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/podnet/podnet/internal/nonetfilter"
	"github.com/podnet/podnet/sandbox"
	"golang.org/x/sys/unix"
)

// envChild makes the test binary the child of TestCreateWithoutNetfilter.
const envChild = "PODLINK_TEST_NONETFILTER_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		os.Exit(attachWithoutNetfilter())
	}
	os.Exit(m.Run())
}

// attachWithoutNetfilter puts the no-netfilter filter on this process, makes a pod network
// namespace as the lab's runtime does and attaches an interface in it as the agent does.
func attachWithoutNetfilter() int {
	if err := nonetfilter.Install(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The filter is on: a netfilter socket is refused as a kernel without netfilter refuses it.
	if fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_NETFILTER); err != unix.EPROTONOSUPPORT {
		unix.Close(fd)
		fmt.Fprintf(os.Stderr, "netfilter socket under the filter: %v, want EPROTONOSUPPORT\n", err)
		return 1
	}
	sb, err := sandbox.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer sb.Close()
	devs, err := Attach(sb.Path(), Config{
		IP:      netip.MustParseAddr("10.244.0.2"),
		Gateway: netip.MustParseAddr("10.244.0.1"),
		Queues:  1,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer devs[0].Close()
	if len(devs) != 1 || devs[0].Name() != "eth0" {
		fmt.Fprintf(os.Stderr, "TAP queues %v, want one eth0\n", devs)
		return 1
	}
	// A second interface of the same name is refused.
	if _, err := Attach(sb.Path(), Config{IP: netip.MustParseAddr("10.244.0.3"), Gateway: netip.MustParseAddr("10.244.0.1")}); !errors.Is(err, os.ErrExist) {
		fmt.Fprintf(os.Stderr, "a second eth0: %v, want os.ErrExist\n", err)
		return 1
	}
	return 0
}

// TestAttachWithoutNetfilter makes a pod's interface on a kernel that looks built without
// netfilter and XFRM (package nonetfilter): pod setup may use route netlink only.
func TestAttachWithoutNetfilter(t *testing.T) {
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		t.Skipf("a sandbox needs /dev/net/tun: %v", err)
	} else {
		f.Close()
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=1")
	if os.Geteuid() != 0 {
		// Rootless: as root of a user namespace of its own, as a rootless lab's agent is.
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
		}
		probe := exec.Command("/bin/true")
		probe.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
		if err := probe.Run(); err != nil {
			t.Skipf("not root and no user namespaces: %v", err)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("attach a pod interface under the no-netfilter filter: %v\n%s", err, out)
	}
}
