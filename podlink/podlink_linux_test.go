package podlink

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"

	"github.com/podnet/podnet/internal/nonetfilter"
	"github.com/podnet/podnet/sandbox"
	"github.com/vishvananda/netlink"
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
	// A persistent interface outlives its descriptors and is adopted again with its address;
	// Release removes it.
	pcfg := Config{IP: netip.MustParseAddr("10.244.0.4"), Gateway: netip.MustParseAddr("10.244.0.1"), Queues: 1, Persist: true}
	sb2, err := sandbox.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer sb2.Close()
	pdevs, err := Attach(sb2.Path(), pcfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pdevs[0].Close()
	if err := Check(sb2.Path(), pcfg); err != nil {
		fmt.Fprintf(os.Stderr, "a persistent interface after its descriptor closed: %v\n", err)
		return 1
	}
	if _, err := Adopt(sb2.Path(), Config{IP: netip.MustParseAddr("10.244.0.9"), Queues: 1}); err == nil {
		fmt.Fprintln(os.Stderr, "Adopt with the wrong address succeeded")
		return 1
	}
	pdevs, err = Adopt(sb2.Path(), pcfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := Release(pdevs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := Adopt(sb2.Path(), pcfg); !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "Adopt after Release: %v, want os.ErrNotExist\n", err)
		return 1
	}
	// The node's own interface, in this process's namespace (a new one: the parent started it
	// in one): routes for the given prefixes only, with the node's address as their source.
	node, err := Attach("", Config{
		Name:    "podnet0",
		IP:      netip.MustParseAddr("10.244.0.254"),
		Gateway: netip.MustParseAddr("10.244.0.1"),
		Routes:  []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.96.0.0/12")},
		Queues:  1,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer node[0].Close()
	got, err := routes("podnet0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	want := []string{"10.244.0.0/16 via 10.244.0.1 src 10.244.0.254", "10.244.0.1/32 scope link", "10.96.0.0/12 via 10.244.0.1 src 10.244.0.254"}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		fmt.Fprintf(os.Stderr, "routes of podnet0: %q, want %q\n", got, want)
		return 1
	}
	return 0
}

// routes lists the IPv4 routes of the interface name in the calling process's namespace, as
// "DST[ via GW][ src SRC]" or "DST scope link".
func routes(name string) ([]string, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if err != nil {
		return nil, err
	}
	rs, err := h.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rs {
		s := "default"
		if r.Dst != nil {
			s = r.Dst.String()
		}
		if r.Gw != nil {
			s += " via " + r.Gw.String()
		}
		if r.Src != nil {
			s += " src " + r.Src.String()
		}
		if r.Scope == netlink.SCOPE_LINK {
			s += " scope link"
		}
		out = append(out, s)
	}
	return out, nil
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
	// In a network namespace of its own, where it makes the node's interface.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if os.Geteuid() != 0 {
		// Rootless: as root of a user namespace of its own, as a rootless lab's agent is.
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
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
