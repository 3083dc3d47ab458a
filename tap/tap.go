// Package tap opens Linux TAP devices with a virtio-net header and offloads.
//
// A pod's eth0 is a TAP device whose file descriptor the node agent holds.
// Every frame read from or written to it is preceded by a virtio_net_hdr
// (VirtioNetHdrLen bytes): with IFF_VNET_HDR and the TSO/checksum offloads
// enabled, the pod's kernel hands over TCP segments of up to 64 KiB with a
// partial checksum instead of MTU-sized, fully checksummed frames, which is
// what makes a userspace data path fast enough (see DESIGN.md, "Data path").
//
// The package only opens devices and moves frames. It never configures
// addresses, MTU, MAC or link state (the caller does that with netlink), and it
// never switches network namespaces itself: Open works in the namespace of the
// calling OS thread.
//
// The package opens devices itself, with ioctls on /dev/net/tun, rather than
// through github.com/songgao/water, the library most Go programs use for TUN and
// TAP: water cannot set IFF_VNET_HDR (nor the vnet header size and offloads
// that go with it), and without the vnet header the fast path carries about a
// ninth of the throughput (DESIGN.md).
//
// The header layout and its constants (VirtioNetHdr) are portable; opening a
// device is Linux-only (tap_linux.go).
package tap

import (
	"encoding/binary"
	"errors"
)

// VirtioNetHdrLen is the length of struct virtio_net_hdr, the default
// TUNSETVNETHDRSZ. Every frame on a Device starts with a header this long.
const VirtioNetHdrLen = 10

// Flags of VirtioNetHdr.Flags (linux/virtio_net.h).
const (
	// FlagNeedsCsum: the L4 checksum is partial (it holds the pseudo-header
	// sum); the receiver completes it over the bytes from CsumStart on and
	// stores it at CsumStart+CsumOffset.
	FlagNeedsCsum = 1
	// FlagDataValid: the checksum has already been validated.
	FlagDataValid = 2
)

// GSO types of VirtioNetHdr.GSOType (linux/virtio_net.h).
const (
	GSONone  = 0    // a single frame
	GSOTCPv4 = 1    // a TCP/IPv4 super-frame to be cut into GSOSize segments
	GSOUDP   = 3    // UFO (obsolete IP fragmentation offload; never enabled here)
	GSOTCPv6 = 4    // a TCP/IPv6 super-frame
	GSOUDPL4 = 5    // a UDP super-frame (USO): GSOSize bytes of payload per datagram
	GSOECN   = 0x80 // modifier bit: the TCP flow uses ECN (CWR set on the first segment)
)

// VirtioNetHdr is struct virtio_net_hdr. Open sets the device to
// little-endian headers (TUNSETVNETLE), so Decode and Encode use little-endian
// byte order on every host.
type VirtioNetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16 // length of the headers (Ethernet + IP + L4) of a GSO frame
	GSOSize    uint16 // payload bytes per segment of a GSO frame
	CsumStart  uint16 // offset, from the start of the Ethernet header, where checksumming starts
	CsumOffset uint16 // offset, from CsumStart, where the checksum is stored
}

// ErrShortFrame is returned by DecodeVirtioNetHdr for a frame shorter than the
// header.
var ErrShortFrame = errors.New("tap: frame shorter than virtio_net_hdr")

// DecodeVirtioNetHdr reads the header at the start of frame.
func DecodeVirtioNetHdr(frame []byte) (VirtioNetHdr, error) {
	if len(frame) < VirtioNetHdrLen {
		return VirtioNetHdr{}, ErrShortFrame
	}
	return VirtioNetHdr{
		Flags:      frame[0],
		GSOType:    frame[1],
		HdrLen:     binary.LittleEndian.Uint16(frame[2:]),
		GSOSize:    binary.LittleEndian.Uint16(frame[4:]),
		CsumStart:  binary.LittleEndian.Uint16(frame[6:]),
		CsumOffset: binary.LittleEndian.Uint16(frame[8:]),
	}, nil
}

// Encode writes h into the first VirtioNetHdrLen bytes of b, which must be at
// least that long.
func (h VirtioNetHdr) Encode(b []byte) {
	_ = b[VirtioNetHdrLen-1]
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
}
