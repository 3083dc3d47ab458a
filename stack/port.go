package stack

import "github.com/podnet/podnet/tap"

// MaxFrameLen is the size of the buffer the Stack passes to Port.ReadFrame:
// a virtio_net_hdr, an Ethernet header and the largest IP packet (a GSO
// super-frame of 64 KiB), with room to spare.
const MaxFrameLen = tap.VirtioNetHdrLen + 14 + 1<<16 + 64

// Port is one pod's link. Frames are a virtio_net_hdr (tap.VirtioNetHdrLen
// bytes, little-endian, as tap.VirtioNetHdr encodes it) followed by an
// Ethernet frame. *tap.Device satisfies it; stacktest.ChannelPort and
// stacktest.FramePort are fakes.
type Port interface {
	// ReadFrame reads one frame into b and returns its length. b is at
	// least MaxFrameLen bytes long; a longer frame may be truncated.
	// ReadFrame blocks until a frame is available. It returns an error only
	// when the port can deliver no more frames (after Close, it must return
	// promptly); the Stack then stops reading the port. ReadFrame is called
	// from one goroutine at a time.
	ReadFrame(b []byte) (int, error)

	// WriteFrame writes one frame. It must be safe for concurrent use: the
	// Stack writes to a port from the readers of other ports (the fast
	// path) and from the netstack's goroutines at the same time. It must
	// not block for long (a full queue drops the frame and returns an
	// error) and must not retain b after it returns; it may modify b.
	WriteFrame(b []byte) error

	// Close releases the port and makes a pending or later ReadFrame return
	// an error. Later WriteFrame calls return errors. The Stack calls Close
	// exactly once, from DetachPod or Close.
	Close() error
}
