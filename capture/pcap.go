package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// Link types of the pcap files podnet writes.
const (
	LinkTypeEthernet uint32 = 1   // a pod's eth0: Ethernet frames
	LinkTypeRaw      uint32 = 101 // the overlay's inner packets: IPv4/IPv6 packets without a link header
)

// MaxSnaplen is the largest snapshot length Writer accepts and the largest
// record Reader reads: 256 KiB, tcpdump's default and largest.
const MaxSnaplen = 262144

const (
	magicMicro      = 0xa1b2c3d4 // timestamps in microseconds
	magicNano       = 0xa1b23c4d // timestamps in nanoseconds
	magicPcapng     = 0x0a0d0d0a // a pcapng Section Header Block
	fileHeaderLen   = 24
	recordHeaderLen = 16
	versionMajor    = 2
	versionMinor    = 4
	maxUnixSeconds  = math.MaxUint32
	nanosPerMicro   = 1000
)

// Writer writes packets to a pcap file. It is not safe for concurrent use.
type Writer struct {
	w        io.Writer
	snaplen  uint32
	linkType uint32
	buf      []byte // record header and data, reused so that a record is one Write
}

// NewWriter writes the pcap file header to w and returns a Writer that
// appends records to it. linkType is one of the LinkType constants (any
// link type registered at tcpdump.org is written as given); snaplen is the
// most bytes kept of each packet, 0 meaning MaxSnaplen. Each record is
// written with one call to w.Write, so that a reader at the other end of a
// pipe never sees half a record; wrap a file in a bufio.Writer for speed.
func NewWriter(w io.Writer, linkType, snaplen uint32) (*Writer, error) {
	if snaplen == 0 {
		snaplen = MaxSnaplen
	}
	if snaplen > MaxSnaplen {
		return nil, fmt.Errorf("capture: snaplen %d is over the maximum %d", snaplen, MaxSnaplen)
	}
	var h [fileHeaderLen]byte
	binary.LittleEndian.PutUint32(h[0:], magicMicro)
	binary.LittleEndian.PutUint16(h[4:], versionMajor)
	binary.LittleEndian.PutUint16(h[6:], versionMinor)
	// h[8:16]: thiszone and sigfigs, both 0 (timestamps are UTC).
	binary.LittleEndian.PutUint32(h[16:], snaplen)
	binary.LittleEndian.PutUint32(h[20:], linkType)
	if _, err := w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("capture: write pcap header: %w", err)
	}
	return &Writer{w: w, snaplen: snaplen, linkType: linkType}, nil
}

// LinkType returns the link type written in the file header.
func (w *Writer) LinkType() uint32 { return w.linkType }

// WritePacket appends a record for a packet seen at time t: its first
// snaplen bytes and its original length. t must lie between 1970 and 2106,
// the range of the format's 32-bit seconds.
func (w *Writer) WritePacket(t time.Time, data []byte) error {
	sec := t.Unix()
	if sec < 0 || sec > maxUnixSeconds {
		return fmt.Errorf("capture: packet time %s is outside the pcap range 1970-2106", t.UTC().Format(time.RFC3339))
	}
	if uint64(len(data)) > math.MaxUint32 {
		return fmt.Errorf("capture: packet of %d bytes is too long for pcap", len(data))
	}
	incl := data
	if uint32(len(incl)) > w.snaplen {
		incl = incl[:w.snaplen]
	}
	buf := w.buf[:0]
	buf = binary.LittleEndian.AppendUint32(buf, uint32(sec))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(t.Nanosecond()/nanosPerMicro))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(incl)))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(data)))
	buf = append(buf, incl...)
	w.buf = buf
	if _, err := w.w.Write(buf); err != nil {
		return fmt.Errorf("capture: write packet: %w", err)
	}
	return nil
}

// Packet is one record of a pcap file.
type Packet struct {
	Time    time.Time // in UTC
	Data    []byte    // the bytes captured, at most the file's snaplen
	OrigLen int       // the packet's length on the wire; more than len(Data) when the capture cut it
}

// Reader reads packets from a pcap file. It is not safe for concurrent use.
type Reader struct {
	r        *bufio.Reader
	order    binary.ByteOrder
	nanos    bool   // timestamps' fractions are nanoseconds, not microseconds
	snaplen  uint32 // the header's snaplen, MaxSnaplen when it is 0 or larger
	linkType uint32
	hdr      [recordHeaderLen]byte
	n        int // records read, for error messages
}

// NewReader reads the pcap file header from r and returns a Reader for its
// records. It accepts both byte orders and both microsecond and nanosecond
// timestamps. The Reader buffers r and owns it from then on.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReader(r)
	var h [fileHeaderLen]byte
	n, err := io.ReadFull(br, h[:])
	switch {
	case n == 0 && (err == io.EOF || err == io.ErrUnexpectedEOF):
		return nil, errors.New("capture: read pcap header: the file is empty")
	case err == io.ErrUnexpectedEOF:
		return nil, fmt.Errorf("capture: read pcap header: %d of %d bytes: %w", n, fileHeaderLen, err)
	case err != nil:
		return nil, fmt.Errorf("capture: read pcap header: %w", err)
	}
	rd := &Reader{r: br}
	switch binary.LittleEndian.Uint32(h[0:]) {
	case magicMicro:
		rd.order = binary.LittleEndian
	case magicNano:
		rd.order, rd.nanos = binary.LittleEndian, true
	default:
		switch m := binary.BigEndian.Uint32(h[0:]); m {
		case magicMicro:
			rd.order = binary.BigEndian
		case magicNano:
			rd.order, rd.nanos = binary.BigEndian, true
		case magicPcapng:
			return nil, errors.New("capture: the file is pcapng, not pcap; convert it with editcap -F pcap")
		default:
			return nil, fmt.Errorf("capture: not a pcap file: magic number 0x%08x", m)
		}
	}
	if major := rd.order.Uint16(h[4:]); major != versionMajor {
		return nil, fmt.Errorf("capture: pcap version %d.%d is not supported (only 2.x)", major, rd.order.Uint16(h[6:]))
	}
	rd.snaplen = rd.order.Uint32(h[16:])
	if rd.snaplen == 0 || rd.snaplen > MaxSnaplen {
		rd.snaplen = MaxSnaplen // as libpcap does for files with a bogus snaplen
	}
	rd.linkType = rd.order.Uint32(h[20:])
	return rd, nil
}

// LinkType returns the link type of the file's packets.
func (r *Reader) LinkType() uint32 { return r.linkType }

// unit returns the number of timestamp fractions in a second.
func (r *Reader) unit() uint32 {
	if r.nanos {
		return 1e9
	}
	return 1e6
}

// Next returns the next packet. At the end of a file that ends after a
// whole record it returns io.EOF itself; a file that ends inside a record
// yields an error wrapping io.ErrUnexpectedEOF; a record longer than the
// file's snaplen or than MaxSnaplen, or whose timestamp has a fraction of
// a second or more, yields an error. Each Packet's Data is
// a new slice that the caller owns.
func (r *Reader) Next() (Packet, error) {
	n, err := io.ReadFull(r.r, r.hdr[:])
	if n == 0 && err == io.EOF {
		return Packet{}, io.EOF
	}
	record := r.n + 1
	if err != nil {
		return Packet{}, fmt.Errorf("capture: read header of pcap record %d: %w", record, err)
	}
	sec := r.order.Uint32(r.hdr[0:])
	frac := r.order.Uint32(r.hdr[4:])
	incl := r.order.Uint32(r.hdr[8:])
	orig := r.order.Uint32(r.hdr[12:])
	if unit := r.unit(); frac >= unit {
		return Packet{}, fmt.Errorf("capture: pcap record %d: timestamp fraction %d is not under a second (%d)", record, frac, unit)
	}
	if incl > r.snaplen {
		return Packet{}, fmt.Errorf("capture: pcap record %d: captured length %d is over the snaplen %d", record, incl, r.snaplen)
	}
	data := make([]byte, incl)
	if _, err := io.ReadFull(r.r, data); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Packet{}, fmt.Errorf("capture: read data of pcap record %d: %w", record, err)
	}
	r.n = record
	nsec := int64(frac)
	if !r.nanos {
		nsec *= nanosPerMicro
	}
	return Packet{Time: time.Unix(int64(sec), nsec).UTC(), Data: data, OrigLen: int(orig)}, nil
}
