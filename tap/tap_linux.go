package tap

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

const cloneDevice = "/dev/net/tun"

// baseOffloads are required; Open fails if the kernel refuses them.
const baseOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6

// udpOffloads (USO, Linux 6.2+) are enabled when the kernel accepts them.
const udpOffloads = unix.TUN_F_USO4 | unix.TUN_F_USO6

// maxQueues is the kernel's limit on the queues of one TAP device
// (MAX_TAP_QUEUES).
const maxQueues = 256

// Device is an open TAP device, or one queue of a multi-queue TAP device
// (OpenQueues). Its methods may be called concurrently; each ReadFrame and
// WriteFrame moves exactly one frame.
type Device struct {
	f        *os.File
	name     string
	offloads int
}

// Open creates TAP device name (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR) in the network
// namespace of the calling OS thread: a caller that wants another namespace
// locks its goroutine to the thread and enters the namespace first. An empty
// name lets the kernel choose one (tap%d); Name reports it.
//
// Open sets little-endian virtio_net_hdr of VirtioNetHdrLen bytes and enables
// the offloads TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6, plus TUN_F_USO4|TUN_F_USO6
// where the kernel supports them. It does not set MTU, MAC address or link
// state. The device exists as long as it is open, unless it was made
// persistent (SetPersist); Open of the name of an existing persistent device
// attaches to it.
//
// The descriptor is non-blocking and served by the Go runtime's poller, so
// Close unblocks a pending ReadFrame.
func Open(name string) (*Device, error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("open tap %q: name longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	d, err := openQueue(name, 0)
	if err != nil {
		return nil, fmt.Errorf("open tap %q: %w", name, err)
	}
	return d, nil
}

// OpenQueues creates TAP device name with n queues (IFF_MULTI_QUEUE) in the
// network namespace of the calling OS thread, as Open does, and returns one
// Device per queue: each is a descriptor of its own, attached to the device
// with TUNSETIFF, with the vnet header and offloads set as Open sets them. An
// empty name lets the kernel choose one; every queue reports it.
//
// The kernel receives a frame written to any queue the same way. It transmits
// each flow (a hash of its addresses and ports) on one queue: the queue the
// flow's frames were last written to, if any was in the last few seconds
// ("automq" steering), or a queue chosen by the hash. So the reader of a
// queue sees the flows the kernel put on it, in order; a writer that keeps
// each flow on one queue keeps the flow's replies on one queue too.
//
// With n = 1 it is Open (a single-queue device, without IFF_MULTI_QUEUE).
// The interface exists as long as one of its queues is open; closing a queue
// detaches it, and the kernel spreads flows over the queues left.
func OpenQueues(name string, n int) ([]*Device, error) {
	if n < 1 || n > maxQueues {
		return nil, fmt.Errorf("open tap %q: %d queues: want 1 to %d", name, n, maxQueues)
	}
	if n == 1 {
		d, err := Open(name)
		if err != nil {
			return nil, err
		}
		return []*Device{d}, nil
	}
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("open tap %q: name longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	qs := make([]*Device, 0, n)
	for i := range n {
		d, err := openQueue(name, unix.IFF_MULTI_QUEUE)
		if err != nil {
			for _, q := range qs {
				q.Close()
			}
			return nil, fmt.Errorf("open tap %q: queue %d of %d: %w", name, i, n, err)
		}
		qs = append(qs, d)
		name = d.name // the kernel's choice, if name was empty
	}
	return qs, nil
}

// openQueue opens the clone device and attaches it to TAP device name with
// the extra TUNSETIFF flags (0 or IFF_MULTI_QUEUE).
func openQueue(name string, flags uint16) (*Device, error) {
	fd, err := unix.Open(cloneDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cloneDevice, err)
	}
	d, err := setup(fd, name, flags)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return d, nil
}

// setup configures the freshly opened clone device fd and wraps it. The
// vnet header size, byte order and offloads belong to the device, not the
// queue; they are set on every queue all the same, which is harmless and
// keeps each Device's Offloads accurate.
func setup(fd int, name string, flags uint16) (*Device, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR | flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VirtioNetHdrLen); err != nil {
		return nil, fmt.Errorf("TUNSETVNETHDRSZ: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETLE, 1); err != nil {
		return nil, fmt.Errorf("TUNSETVNETLE: %w", err)
	}
	offloads := baseOffloads | udpOffloads
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloads); err != nil {
		// Kernels before 6.2 reject the USO bits with EINVAL.
		offloads = baseOffloads
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloads); err != nil {
			return nil, fmt.Errorf("TUNSETOFFLOAD: %w", err)
		}
	}
	// The descriptor is already non-blocking (O_NONBLOCK), so os.NewFile
	// registers it with the runtime poller.
	f := os.NewFile(uintptr(fd), cloneDevice)
	if f == nil {
		return nil, errors.New("invalid descriptor")
	}
	return &Device{f: f, name: ifr.Name(), offloads: offloads}, nil
}

// Name returns the name of the interface, as the kernel created it.
func (d *Device) Name() string { return d.name }

// Offloads returns the TUN_F_* offload flags the kernel accepted.
func (d *Device) Offloads() int { return d.offloads }

// ReadFrame reads one frame into b: a VirtioNetHdrLen-byte virtio_net_hdr,
// then the Ethernet frame. A GSO frame can be up to 64 KiB plus headers; a
// frame longer than b is truncated by the kernel. ReadFrame blocks until a
// frame arrives or the device is closed (then it returns an error wrapping
// os.ErrClosed).
func (d *Device) ReadFrame(b []byte) (int, error) {
	return d.f.Read(b)
}

// WriteFrame writes one frame laid out as ReadFrame returns it. It does not
// retain b.
func (d *Device) WriteFrame(b []byte) error {
	_, err := d.f.Write(b)
	return err
}

// SetPersist makes the interface persistent (TUNSETPERSIST) or not. A
// persistent interface outlives its descriptors: when the process holding
// them exits, even by SIGKILL, the interface stays in its namespace with its
// addresses and routes (without carrier; what the pod sends meanwhile is
// dropped), and Open or OpenQueues of its name attaches to it again. The node
// agent keeps pods' interfaces persistent so that a restarted agent takes
// them back. Clear it before closing the last descriptor to remove the
// interface.
func (d *Device) SetPersist(on bool) error {
	v := 0
	if on {
		v = 1
	}
	rc, err := d.f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetInt(int(fd), unix.TUNSETPERSIST, v)
	}); err != nil {
		return err
	}
	if ierr != nil {
		return fmt.Errorf("TUNSETPERSIST %s: %w", d.name, ierr)
	}
	return nil
}

// Close closes the device, which removes the interface (for a queue of a
// multi-queue device: once every queue is closed) unless it is persistent
// (SetPersist), and unblocks a pending ReadFrame.
func (d *Device) Close() error {
	return d.f.Close()
}
