package overlay

import (
	"encoding/binary"
	"unsafe"

	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.zx2c4.com/wireguard/conn"
)

// udpBind is a conn.Bind on one UDP socket bound to exactly one address (the
// node's), unlike wireguard-go's StdNetBind, which listens on all addresses.
// It carries IPv4 or IPv6, whichever the address is.
type udpBind struct {
	addr netip.AddrPort

	mu sync.Mutex   // guards c and pc
	c  *net.UDPConn // nil while closed
	pc batchConn    // c, read and written in batches (recvmmsg, sendmmsg)

	gso atomic.Bool // UDP segmentation offload on send; turned off if the kernel refuses it
	gro atomic.Bool // the socket reads coalesced datagrams (UDP_GRO)
}

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// socketBuffer is the UDP socket's receive and send buffer size we ask for.
const socketBuffer = 8 << 20

// bindBatch is how many datagrams one system call reads or writes at most.
const bindBatch = 64

var (
	_ conn.Bind     = (*udpBind)(nil)
	_ conn.Endpoint = udpEndpoint{}
)

func newUDPBind(addr netip.AddrPort) *udpBind { return &udpBind{addr: addr} }

// udpEndpoint is a peer's UDP address.
type udpEndpoint netip.AddrPort

func (udpEndpoint) ClearSrc()             {}
func (udpEndpoint) SrcToString() string   { return "" }
func (udpEndpoint) SrcIP() netip.Addr     { return netip.Addr{} }
func (e udpEndpoint) DstIP() netip.Addr   { return netip.AddrPort(e).Addr() }
func (e udpEndpoint) DstToString() string { return netip.AddrPort(e).String() }
func (e udpEndpoint) DstToBytes() []byte {
	b, _ := netip.AddrPort(e).MarshalBinary()
	return b
}

// Open implements conn.Bind. It listens on the bind's address; if that has
// port 0, on port (0: a port the kernel picks).
func (b *udpBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	addr := b.addr
	if addr.Port() == 0 {
		addr = netip.AddrPortFrom(addr.Addr(), port)
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, 0, fmt.Errorf("listen on %v: %w", addr, err)
	}
	// Bursts of encrypted datagrams arrive faster than one reader drains them: give the socket
	// room (the kernel caps this at net.core.rmem_max/wmem_max; failure is harmless).
	_ = c.SetReadBuffer(socketBuffer)
	_ = c.SetWriteBuffer(socketBuffer)
	b.c = c
	b.gso.Store(supportsGSO(c))
	if addr.Addr().Is4() {
		b.pc = ipv4.NewPacketConn(c)
	} else {
		b.pc = ipv6.NewPacketConn(c)
	}
	pc := b.pc
	actual := c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	b.gro.Store(enableGRO(c))
	if b.gro.Load() {
		r := newGROReader(pc)
		return []conn.ReceiveFunc{r.receive}, actual, nil
	}
	msgs := make([]ipv4.Message, bindBatch) // used by the one goroutine that calls recv
	recv := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n := min(len(bufs), len(msgs))
		for i := 0; i < n; i++ {
			msgs[i].Buffers = bufs[i : i+1]
			msgs[i].N, msgs[i].Addr = 0, nil
		}
		got, err := pc.ReadBatch(msgs[:n], 0)
		if err != nil {
			return 0, err
		}
		for i := 0; i < got; i++ {
			sizes[i] = msgs[i].N
			eps[i] = endpointOf(msgs[i].Addr)
		}
		return got, nil
	}
	return []conn.ReceiveFunc{recv}, actual, nil
}

// Close implements conn.Bind.
func (b *udpBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c == nil {
		return nil
	}
	err := b.c.Close()
	b.c, b.pc = nil, nil
	return err
}

// SetMark implements conn.Bind; marks are not used.
func (*udpBind) SetMark(uint32) error { return nil }

// Send implements conn.Bind: the datagrams go out in batches, one system call each.
func (b *udpBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	dst, ok := ep.(udpEndpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	b.mu.Lock()
	pc := b.pc
	b.mu.Unlock()
	if pc == nil {
		return net.ErrClosed
	}
	to := net.UDPAddrFromAddrPort(netip.AddrPort(dst))
	var msgs []ipv4.Message
	if b.gso.Load() {
		msgs = b.gsoMessages(bufs, to)
	} else {
		msgs = make([]ipv4.Message, len(bufs))
		for i := range bufs {
			msgs[i].Buffers = bufs[i : i+1]
			msgs[i].Addr = to
		}
	}
	for len(msgs) > 0 {
		n, err := pc.WriteBatch(msgs, 0)
		if err != nil {
			if b.gso.Load() && errors.Is(err, unix.EIO) {
				// The kernel refused segmentation offload (EIO): go on without it.
				b.gso.Store(false)
				return b.Send(bufs, ep)
			}
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

// maxGSOSegments bounds how many datagrams one UDP GSO send carries (the kernel allows 64).
const maxGSOSegments = 64

// gsoMessages packs runs of equal-sized datagrams (the last of a run may be shorter) into one
// message each, sent with a UDP_SEGMENT control message: the kernel's UDP layer then handles
// the run once instead of once per datagram, as wireguard-go's own Linux bind does.
func (b *udpBind) gsoMessages(bufs [][]byte, to *net.UDPAddr) []ipv4.Message {
	var msgs []ipv4.Message
	for i := 0; i < len(bufs); {
		size := len(bufs[i])
		j := i + 1
		total := size
		for j < len(bufs) && j-i < maxGSOSegments && len(bufs[j]) <= size && total+len(bufs[j]) <= 65000 {
			total += len(bufs[j])
			j++
			if len(bufs[j-1]) < size {
				break // a shorter datagram ends the run
			}
		}
		if j-i == 1 {
			msgs = append(msgs, ipv4.Message{Buffers: bufs[i:j], Addr: to})
		} else {
			oob := make([]byte, unix.CmsgSpace(2))
			h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
			h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
			h.SetLen(unix.CmsgLen(2))
			binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(size))
			msgs = append(msgs, ipv4.Message{Buffers: bufs[i:j], Addr: to, OOB: oob})
		}
		i = j
	}
	return msgs
}

// ParseEndpoint implements conn.Bind.
func (*udpBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return udpEndpoint(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())), nil
}

// BatchSize implements conn.Bind.
func (*udpBind) BatchSize() int { return bindBatch }

// countingBind wraps the Bind the device uses: it counts datagrams on the
// underlay and records the port Open reports.
type countingBind struct {
	conn.Bind
	ctr     *counters
	port    atomic.Uint32
	out, in *window // wireguard-go's windows (window.go)
}

// wireguard-go's transport data message: type 4, and a keepalive is one without payload (a
// 16-byte header and a 16-byte tag).
const (
	messageTransportType = 4
	keepaliveLen         = 32
)

func (b *countingBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	b.port.Store(uint32(actual))
	wrapped := make([]conn.ReceiveFunc, len(fns))
	for i, fn := range fns {
		wrapped[i] = func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			// Receive only while the inbound window has room: wireguard-go holds each data
			// message until it writes it to the TUN side, decrypted. Datagrams wait in the
			// socket's buffer meanwhile (the kernel drops what overflows).
			room := b.in.room()
			if room == 0 {
				return 0, net.ErrClosed
			}
			n, err := fn(bufs[:min(len(bufs), room)], sizes, eps)
			if n > 0 {
				bytes, data := 0, 0
				for i, s := range sizes[:n] {
					bytes += s
					if s > keepaliveLen && bufs[i][0] == messageTransportType {
						data++
					}
				}
				b.in.add(data)
				b.ctr.rxDatagrams.Add(uint64(n))
				b.ctr.rxDatagramBytes.Add(uint64(bytes))
			}
			return n, err
		}
	}
	return wrapped, actual, nil
}

func (b *countingBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	err := b.Bind.Send(bufs, ep)
	// Sent or not, wireguard-go is done with them. Keepalives and handshake messages are counted
	// too, which opens the window a little early.
	b.out.done(len(bufs))
	if err != nil {
		if !errors.Is(err, net.ErrClosed) {
			b.ctr.txDatagramErrors.Add(1)
		}
		return err
	}
	bytes := 0
	for _, buf := range bufs {
		bytes += len(buf)
	}
	b.ctr.txDatagrams.Add(uint64(len(bufs)))
	b.ctr.txDatagramBytes.Add(uint64(bytes))
	return nil
}

func endpointOf(a net.Addr) udpEndpoint {
	from := a.(*net.UDPAddr).AddrPort()
	return udpEndpoint(netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
}

// supportsGSO reports whether the kernel knows UDP segmentation offload (UDP_SEGMENT, Linux
// 4.18), asking as wireguard-go does: a kernel without it refuses the socket option. Sends then
// carry one datagram per message.
func supportsGSO(c *net.UDPConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		_, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
	}); err != nil || serr != nil {
		return false
	}
	return true
}

// offloads reports whether sends use UDP GSO and reads UDP GRO.
func (b *udpBind) offloads() (gso, gro bool) { return b.gso.Load(), b.gro.Load() }

// enableGRO asks the kernel to coalesce datagrams of one flow (UDP_GRO): a burst of encrypted
// packets then reaches us in a few large reads. It reports whether the kernel agreed.
func enableGRO(c *net.UDPConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1)
	}); err != nil || serr != nil {
		return false
	}
	return true
}

// groReads is how many (coalesced) messages one receive system call reads at most; each may
// hold up to 64 datagrams.
const groReads = 8

// groReader reads coalesced datagrams into buffers of its own and hands them to wireguard-go one
// datagram per slot, keeping what does not fit for the next call. wireguard-go calls a
// ReceiveFunc from one goroutine only, so it needs no lock.
type groReader struct {
	pc      batchConn
	msgs    []ipv4.Message
	bufs    [][]byte // groReads buffers of 64 KiB
	pending []groSegment
}

type groSegment struct {
	data []byte // in one of bufs; valid until the next read
	from udpEndpoint
}

func newGROReader(pc batchConn) *groReader {
	r := &groReader{pc: pc, msgs: make([]ipv4.Message, groReads)}
	for i := range r.msgs {
		r.bufs = append(r.bufs, make([]byte, 1<<16))
		r.msgs[i].OOB = make([]byte, unix.CmsgSpace(4))
	}
	return r
}

func (r *groReader) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	if len(r.pending) == 0 {
		for i := range r.msgs {
			r.msgs[i].Buffers = r.bufs[i : i+1]
			r.msgs[i].N, r.msgs[i].NN, r.msgs[i].Addr = 0, 0, nil
		}
		n, err := r.pc.ReadBatch(r.msgs, 0)
		if err != nil {
			return 0, err
		}
		r.pending = r.pending[:0]
		for i := 0; i < n; i++ {
			m := &r.msgs[i]
			data, from := r.bufs[i][:m.N], endpointOf(m.Addr)
			size := groSegmentSize(m.OOB[:m.NN])
			if size <= 0 || size >= len(data) {
				r.pending = append(r.pending, groSegment{data, from})
				continue
			}
			for len(data) > 0 {
				k := min(size, len(data))
				r.pending = append(r.pending, groSegment{data[:k], from})
				data = data[k:]
			}
		}
	}
	out := 0
	for ; out < len(bufs) && out < len(r.pending); out++ {
		sizes[out] = copy(bufs[out], r.pending[out].data)
		eps[out] = r.pending[out].from
	}
	r.pending = r.pending[out:]
	return out, nil
}

// groSegmentSize returns the segment size of a coalesced read from its UDP_GRO control message,
// or 0 if there is none.
func groSegmentSize(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_UDP && m.Header.Type == unix.UDP_GRO && len(m.Data) >= 4 {
			return int(binary.NativeEndian.Uint32(m.Data))
		}
	}
	return 0
}
