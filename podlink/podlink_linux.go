// Package podlink makes a pod's network interface inside the pod's network namespace: a TAP
// device (eth0 by default) with the virtio-net header, whose descriptors the caller (the node
// agent) keeps, configured with the pod's address, MTU, MAC and routes, and lo brought up.
//
// The namespace is someone else's: the lab's pod runtime makes it, or, in Kubernetes mode, the
// container runtime (containerd hands its path to podnet-cni as CNI_NETNS). Attach enters it on
// an OS thread of its own, which opens the TAP and configures the links from inside and is then
// discarded rather than returned to the caller's namespace: returning would need CAP_SYS_ADMIN
// over the host's namespace, which a rootless agent does not have.
//
// It uses route netlink and TAP only: no netfilter, XFRM, bridge, veth, traffic control, kernel
// module or sysctl, so it works on kernels built without them (the no-netfilter test mode checks
// it). It never touches the caller's own network namespace.
package podlink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"

	pnetns "github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/tap"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Config describes a pod's interface.
type Config struct {
	// Name is the interface's name. Empty means eth0.
	Name string
	// IP is the pod's address; the interface gets IP/32.
	IP netip.Addr
	// Gateway is the node's gateway: a link route to it, and the routes of Routes via it.
	Gateway netip.Addr
	// Routes are the prefixes routed via Gateway, with IP as their preferred source. Nil means
	// one default route (a pod's). The node's own interface (Kubernetes mode) routes only the
	// cluster and service CIDRs.
	Routes []netip.Prefix
	// MAC is the interface's hardware address. Nil leaves the kernel's random one.
	MAC net.HardwareAddr
	// MTU is the interface's MTU. Zero means 1500.
	MTU int
	// Queues is the number of queues of the TAP: with more than one it is a multi-queue TAP
	// (IFF_MULTI_QUEUE), one descriptor per queue, so the pod's flows can be read by several
	// goroutines at once. Zero means DefaultQueues(); 1 gives a single-queue TAP. Where the kernel
	// refuses a multi-queue TAP, the interface gets one queue: Attach returns how many it has.
	Queues int
	// Persist makes the interface persistent (tap.Device.SetPersist): it outlives the agent's
	// descriptors, so a pod keeps its interface, address and routes while its agent restarts,
	// and Adopt takes it back. Release removes it.
	Persist bool
}

// MaxDefaultQueues bounds DefaultQueues.
const MaxDefaultQueues = 4

// DefaultQueues is the number of TAP queues of a pod when Config.Queues is zero: the number of
// CPUs the process may use, at most MaxDefaultQueues, but 1 on a machine with 2 CPUs or fewer.
//
// Several queues pay only when there are cores to spare beyond the pod's own sending and
// receiving processes: on a 2-CPU machine, 4 parallel streams between two pods already keep both
// CPUs ~90% busy with one queue, and with two queues carried the same (16.9 against 16.6 Gbit/s,
// within noise) for more CPU, while a single stream came out ~3% lower (stack/README.md).
func DefaultQueues() int {
	n := runtime.NumCPU()
	if n <= 2 {
		return 1
	}
	return min(n, MaxDefaultQueues)
}

// Attach makes the interface in the network namespace netns (a path: /proc/PID/ns/net, a bind
// mount such as /var/run/netns/NAME, or /proc/self/fd/N of a descriptor this process holds) and
// returns its queues. The caller owns them: closing every queue removes the interface.
//
// An empty netns means the caller's own network namespace (the node's, for the node's own
// interface), entered by no one.
//
// An interface of that name already in the namespace is an error (os.ErrExist in the chain).
func Attach(netns string, cfg Config) ([]*tap.Device, error) {
	if !cfg.IP.Is4() || !cfg.Gateway.Is4() {
		return nil, fmt.Errorf("podlink: pod IP %v and gateway %v must be IPv4 addresses", cfg.IP, cfg.Gateway)
	}
	if cfg.Name == "" {
		cfg.Name = "eth0"
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.Queues == 0 {
		cfg.Queues = DefaultQueues()
	}
	if cfg.Queues < 0 {
		return nil, fmt.Errorf("podlink: %d TAP queues: want at least 1", cfg.Queues)
	}
	for _, r := range cfg.Routes {
		if !r.Addr().Is4() {
			return nil, fmt.Errorf("podlink: route %v: want an IPv4 prefix", r)
		}
	}
	ns := -1
	if netns != "" {
		var err error
		if ns, err = unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return nil, fmt.Errorf("podlink: open network namespace %s: %w", netns, err)
		}
		defer unix.Close(ns)
	} else {
		netns = "the agent's own network namespace"
	}
	type result struct {
		devs []*tap.Device
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: this thread ends with the goroutine
		devs, err := attachIn(ns, cfg)
		done <- result{devs, err}
	}()
	r := <-done
	if r.err != nil {
		return nil, fmt.Errorf("podlink: %s in %s: %w", cfg.Name, netns, r.err)
	}
	return r.devs, nil
}

// attachIn moves the calling thread into the namespace ns (-1: stays where it is) and makes the
// interface there.
func attachIn(ns int, cfg Config) (devs []*tap.Device, err error) {
	if ns >= 0 {
		if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
			return nil, fmt.Errorf("enter network namespace: %w", err)
		}
	}
	// Route netlink only: a handle without families opens a socket of every family the library
	// knows, NETLINK_NETFILTER and NETLINK_XFRM among them, and fails on kernels without them.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	if _, err := h.LinkByName(cfg.Name); err == nil {
		return nil, fmt.Errorf("interface %s: %w", cfg.Name, os.ErrExist)
	}
	// Every queue is opened here, in the pod's namespace (and, rootless, its user namespace,
	// where this thread has CAP_NET_ADMIN): TUNSETIFF finds the device by name in the thread's
	// namespace.
	devs, err = tap.OpenQueues(cfg.Name, cfg.Queues)
	if errors.Is(err, unix.EINVAL) && cfg.Queues > 1 {
		// A kernel (or a TUN driver) without multi-queue TAP refuses IFF_MULTI_QUEUE: one
		// queue carries the pod all the same.
		devs, err = tap.OpenQueues(cfg.Name, 1)
	}
	if err != nil {
		return nil, fmt.Errorf("open TAP: %w", err)
	}
	defer func() {
		if err != nil {
			for _, d := range devs {
				d.Close()
			}
			devs = nil
		}
	}()
	if err := configure(h, cfg); err != nil {
		return devs, err
	}
	if cfg.Persist {
		if err := devs[0].SetPersist(true); err != nil {
			return devs, err
		}
	}
	return devs, nil
}

// Adopt attaches to a persistent interface that Attach made in the namespace netns (a path, as
// for Attach) for an agent that is gone: it checks that cfg.Name is a TAP holding cfg.IP and
// opens cfg.Queues queues of it (the number Attach returned; zero means 1). The interface keeps
// its addresses, routes, MAC and MTU; nothing is reconfigured. A namespace or interface that no
// longer exists is an error wrapping os.ErrNotExist: the pod went while no agent held it.
func Adopt(netns string, cfg Config) ([]*tap.Device, error) {
	if cfg.Name == "" {
		cfg.Name = "eth0"
	}
	if cfg.Queues <= 0 {
		cfg.Queues = 1
	}
	var devs []*tap.Device
	where, err := inNamespace(netns, func(h *netlink.Handle) error {
		link, err := h.LinkByName(cfg.Name)
		if err != nil {
			return fmt.Errorf("no such interface (%v): %w", err, os.ErrNotExist)
		}
		if _, ok := link.(*netlink.Tuntap); !ok {
			return fmt.Errorf("a %s interface, not a TAP", link.Type())
		}
		if err := hasAddr(h, link, cfg.IP); err != nil {
			return err
		}
		if devs, err = tap.OpenQueues(cfg.Name, cfg.Queues); err != nil {
			return fmt.Errorf("open TAP: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("podlink: adopt %s in %s: %w", cfg.Name, where, err)
	}
	return devs, nil
}

// inNamespace runs fn with a route netlink handle on an OS thread inside the network namespace
// at the path netns (empty: the caller's own), a thread that is discarded after, and returns
// what to call the namespace in errors. A namespace that does not exist is os.ErrNotExist.
func inNamespace(netns string, fn func(h *netlink.Handle) error) (string, error) {
	run := func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		defer h.Close()
		return fn(h)
	}
	if netns == "" {
		done := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread ends with the goroutine
			done <- run()
		}()
		return "the agent's own network namespace", <-done
	}
	ns, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return netns, fmt.Errorf("open network namespace: %w", err)
	}
	defer unix.Close(ns)
	return netns, pnetns.Do(ns, run)
}

// Release removes the interface whose queues are devs: it clears persistence and closes every
// queue.
func Release(devs []*tap.Device) error {
	var err error
	if len(devs) > 0 {
		err = devs[0].SetPersist(false)
	}
	for _, d := range devs {
		d.Close()
	}
	return err
}

// configure sets up lo and the pod's interface in the calling thread's network namespace.
func configure(h *netlink.Handle, cfg Config) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	eth, err := h.LinkByName(cfg.Name)
	if err != nil {
		return fmt.Errorf("find %s: %w", cfg.Name, err)
	}
	if len(cfg.MAC) > 0 {
		if err := h.LinkSetHardwareAddr(eth, cfg.MAC); err != nil {
			return fmt.Errorf("set address %v: %w", cfg.MAC, err)
		}
	}
	if err := h.LinkSetMTU(eth, cfg.MTU); err != nil {
		return fmt.Errorf("set MTU %d: %w", cfg.MTU, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: cfg.IP.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := h.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("add %v/32: %w", cfg.IP, err)
	}
	gw := net.IP(cfg.Gateway.AsSlice())
	if err := h.RouteAdd(&netlink.Route{
		LinkIndex: eth.Attrs().Index,
		Dst:       &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)},
		Scope:     netlink.SCOPE_LINK,
	}); err != nil {
		return fmt.Errorf("route to gateway %v: %w", cfg.Gateway, err)
	}
	if cfg.Routes == nil {
		if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}); err != nil {
			return fmt.Errorf("default route via %v: %w", cfg.Gateway, err)
		}
		return nil
	}
	for _, r := range cfg.Routes {
		r = r.Masked()
		if err := h.RouteAdd(&netlink.Route{
			LinkIndex: eth.Attrs().Index,
			Dst:       &net.IPNet{IP: r.Addr().AsSlice(), Mask: net.CIDRMask(r.Bits(), 32)},
			Gw:        gw,
			Src:       cfg.IP.AsSlice(),
		}); err != nil {
			return fmt.Errorf("route %v via %v: %w", r, cfg.Gateway, err)
		}
	}
	return nil
}

// Check reports whether the namespace netns has the pod's interface cfg.Name (empty: eth0), up,
// with address cfg.IP; the error says what is missing. It changes nothing.
func Check(netns string, cfg Config) error {
	if cfg.Name == "" {
		cfg.Name = "eth0"
	}
	_, err := inNamespace(netns, func(h *netlink.Handle) error {
		link, err := h.LinkByName(cfg.Name)
		if err != nil {
			return fmt.Errorf("no such interface: %w", err)
		}
		if link.Attrs().Flags&net.FlagUp == 0 {
			return errors.New("the interface is down")
		}
		return hasAddr(h, link, cfg.IP)
	})
	if err != nil {
		return fmt.Errorf("podlink: %s in %s: %w", cfg.Name, netns, err)
	}
	return nil
}

// hasAddr reports whether link has the IPv4 address ip.
func hasAddr(h *netlink.Handle, link netlink.Link, ip netip.Addr) error {
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if a2, ok := netip.AddrFromSlice(a.IP); ok && a2.Unmap() == ip {
			return nil
		}
	}
	return fmt.Errorf("the interface has no address %v", ip)
}
