// Package sandbox makes pod sandboxes: a Linux network namespace with `lo` up and a TAP `eth0`
// whose file descriptors (one per queue) the caller keeps, and the processes (containers) that run
// inside it.
//
// The design is the one of DESIGN.md's rootless section, used as root too: the caller (the node
// agent) stays in its own network namespace and creates each pod's namespace on a locked OS
// thread that opens the pod's TAP and configures the links from inside, and is then discarded
// rather than returned to the caller's namespace. Nothing in this package touches the caller's
// network namespace, so it needs CAP_NET_ADMIN only over the namespaces it creates — which a
// process has inside a user namespace of its own. No namespace is bind-mounted
// or named: a pod's network namespace lives while the sandbox holds its descriptor or a process
// runs in it, and disappears with them (so a killed agent leaves no namespace behind).
//
// Processes are started through a small init (see Init): the agent re-executes its own binary in a
// new PID and mount namespace; the init joins the pod's network namespace, bind-mounts the pod's
// resolv.conf over /etc/resolv.conf in its private mount namespace, and runs the command as its
// child, forwarding signals and reaping orphans. When the init dies — because the command exited,
// the agent killed it, or the agent itself died (the init has a parent-death signal) — the kernel
// kills every process left in its PID namespace.
//
// It uses route netlink and TAP only: no netfilter, XFRM, bridge, traffic control, kernel module
// or sysctl, so it works on kernels built without them (see the nonetfilter test mode).
//
// This package must never change the host's interfaces, routes, sysctls or mounts.
package sandbox

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"

	"github.com/podnet/podnet/tap"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Config describes a pod's network.
type Config struct {
	// IP is the pod's address; eth0 gets IP/32.
	IP netip.Addr
	// Gateway is the node's gateway: a link route to it and the default route via it.
	Gateway netip.Addr
	// MAC is eth0's hardware address.
	MAC net.HardwareAddr
	// MTU is eth0's MTU. Zero means 1500.
	MTU int
	// Queues is the number of queues of eth0: with more than one it is a multi-queue TAP
	// (IFF_MULTI_QUEUE), one descriptor per queue, so the pod's flows can be read by several
	// goroutines at once. Zero means DefaultQueues(); 1 gives a single-queue TAP. Where the kernel
	// refuses a multi-queue TAP, eth0 gets one queue: TAPQueues tells how many it has.
	Queues int
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

// Sandbox is one pod's network namespace and its TAP device.
type Sandbox struct {
	ns   netns.NsHandle
	devs []*tap.Device // eth0's queues; devs[0] is the first
}

// Create makes a new network namespace with lo up and a TAP eth0 configured from cfg, with
// cfg.Queues queues.
//
// The namespace is made on an OS thread of its own, which opens the TAP and configures the links
// from inside the new namespace and is then thrown away (its goroutine exits while locked, and the
// Go runtime ends the thread). It never returns to the caller's namespace: that would need
// CAP_SYS_ADMIN over the host's namespace, which a rootless agent does not have.
func Create(cfg Config) (*Sandbox, error) {
	if !cfg.IP.Is4() || !cfg.Gateway.Is4() {
		return nil, fmt.Errorf("sandbox: pod IP %v and gateway %v must be IPv4 addresses", cfg.IP, cfg.Gateway)
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.Queues == 0 {
		cfg.Queues = DefaultQueues()
	}
	if cfg.Queues < 0 {
		return nil, fmt.Errorf("sandbox: %d TAP queues: want at least 1", cfg.Queues)
	}
	type result struct {
		sb  *Sandbox
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: this thread ends with the goroutine
		sb, err := createHere(cfg)
		done <- result{sb, err}
	}()
	r := <-done
	return r.sb, r.err
}

// createHere moves the calling thread into a new network namespace and sets the pod up there.
func createHere(cfg Config) (_ *Sandbox, err error) {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("sandbox: new network namespace: %w", err)
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("sandbox: open network namespace: %w", err)
	}
	sb := &Sandbox{ns: ns}
	defer func() {
		if err != nil {
			sb.Close()
		}
	}()
	// Every queue is opened here, in the pod's namespace (and, rootless, its user namespace,
	// where this thread has CAP_NET_ADMIN): TUNSETIFF finds eth0 by name in the thread's
	// namespace.
	sb.devs, err = tap.OpenQueues("eth0", cfg.Queues)
	if errors.Is(err, unix.EINVAL) && cfg.Queues > 1 {
		// A kernel (or a TUN driver) without multi-queue TAP refuses IFF_MULTI_QUEUE: one
		// queue carries the pod all the same.
		sb.devs, err = tap.OpenQueues("eth0", 1)
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox: open TAP eth0: %w", err)
	}
	if err := configure(cfg); err != nil {
		return nil, err
	}
	return sb, nil
}

// configure sets up lo and eth0 of the calling thread's network namespace.
func configure(cfg Config) error {
	// Route netlink only: a handle without families opens a socket of every family the library
	// knows, NETLINK_NETFILTER and NETLINK_XFRM among them, and fails on kernels without them.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("sandbox: netlink in pod namespace: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("sandbox: find lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("sandbox: set lo up: %w", err)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("sandbox: find eth0: %w", err)
	}
	if len(cfg.MAC) > 0 {
		if err := h.LinkSetHardwareAddr(eth, cfg.MAC); err != nil {
			return fmt.Errorf("sandbox: set eth0 address %v: %w", cfg.MAC, err)
		}
	}
	if err := h.LinkSetMTU(eth, cfg.MTU); err != nil {
		return fmt.Errorf("sandbox: set eth0 MTU %d: %w", cfg.MTU, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("sandbox: set eth0 up: %w", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: cfg.IP.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := h.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("sandbox: add %v/32 to eth0: %w", cfg.IP, err)
	}
	gw := net.IP(cfg.Gateway.AsSlice())
	if err := h.RouteAdd(&netlink.Route{
		LinkIndex: eth.Attrs().Index,
		Dst:       &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)},
		Scope:     netlink.SCOPE_LINK,
	}); err != nil {
		return fmt.Errorf("sandbox: route to gateway %v: %w", cfg.Gateway, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("sandbox: default route via %v: %w", cfg.Gateway, err)
	}
	return nil
}

// TAP returns the pod's TAP device; for a multi-queue eth0, its first queue. The sandbox keeps
// ownership: Close closes it. It is nil after Close.
func (sb *Sandbox) TAP() *tap.Device {
	if len(sb.devs) == 0 {
		return nil
	}
	return sb.devs[0]
}

// TAPQueues returns every queue of the pod's TAP device (Config.Queues of them, or one where the
// kernel has no multi-queue TAP), the first being TAP's. The sandbox keeps ownership: Close
// closes them.
func (sb *Sandbox) TAPQueues() []*tap.Device { return sb.devs }

// NetNS returns a descriptor of the pod's network namespace, valid until Close.
func (sb *Sandbox) NetNS() int { return int(sb.ns) }

// Close releases the TAP device (every queue) and the namespace descriptor. The namespace itself
// goes away when no process runs in it any more.
func (sb *Sandbox) Close() error {
	var errs []error
	for _, d := range sb.devs {
		errs = append(errs, d.Close())
	}
	sb.devs = nil
	if sb.ns.IsOpen() {
		errs = append(errs, sb.ns.Close())
		sb.ns = netns.None()
	}
	return errors.Join(errs...)
}
