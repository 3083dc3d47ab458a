package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
)

// udpBind is a conn.Bind on one UDP socket bound to exactly one address (the
// node's), unlike wireguard-go's StdNetBind, which listens on all addresses.
// It carries IPv4 or IPv6, whichever the address is.
type udpBind struct {
	addr netip.AddrPort

	mu sync.Mutex   // guards c
	c  *net.UDPConn // nil while closed
}

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
	b.c = c
	actual := c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	recv := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, from, err := c.ReadFromUDPAddrPort(bufs[0])
		if err != nil {
			return 0, err
		}
		sizes[0] = n
		eps[0] = udpEndpoint(netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
		return 1, nil
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
	b.c = nil
	return err
}

// SetMark implements conn.Bind; marks are not used.
func (*udpBind) SetMark(uint32) error { return nil }

// Send implements conn.Bind.
func (b *udpBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	dst, ok := ep.(udpEndpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	b.mu.Lock()
	c := b.c
	b.mu.Unlock()
	if c == nil {
		return net.ErrClosed
	}
	for _, buf := range bufs {
		if _, err := c.WriteToUDPAddrPort(buf, netip.AddrPort(dst)); err != nil {
			return err
		}
	}
	return nil
}

// ParseEndpoint implements conn.Bind.
func (*udpBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return udpEndpoint(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())), nil
}

// BatchSize implements conn.Bind: one datagram per system call.
func (*udpBind) BatchSize() int { return 1 }

// countingBind wraps the Bind the device uses: it counts datagrams on the
// underlay and records the port Open reports.
type countingBind struct {
	conn.Bind
	ctr  *counters
	port atomic.Uint32
}

func (b *countingBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	b.port.Store(uint32(actual))
	wrapped := make([]conn.ReceiveFunc, len(fns))
	for i, fn := range fns {
		wrapped[i] = func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			n, err := fn(bufs, sizes, eps)
			if n > 0 {
				bytes := 0
				for _, s := range sizes[:n] {
					bytes += s
				}
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
