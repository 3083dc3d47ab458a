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

// Device is an open TAP device. Its methods may be called concurrently; each
// ReadFrame and WriteFrame moves exactly one frame.
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
// state. The device exists as long as it is open (it is not persistent).
//
// The descriptor is non-blocking and served by the Go runtime's poller, so
// Close unblocks a pending ReadFrame.
func Open(name string) (*Device, error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("open tap %q: name longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open(cloneDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open tap %q: %s: %w", name, cloneDevice, err)
	}
	d, err := setup(fd, name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open tap %q: %w", name, err)
	}
	return d, nil
}

// setup configures the freshly opened clone device fd and wraps it.
func setup(fd int, name string) (*Device, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
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

// Close closes the device, which removes the interface, and unblocks a
// pending ReadFrame.
func (d *Device) Close() error {
	return d.f.Close()
}
