// Package overlaytest provides an in-memory underlay for overlay tests that
// need no privileges: a Network of conn.Binds that pass datagrams to each
// other by address, like UDP sockets on one host. Nothing here is for
// production use.
package overlaytest

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
)

var (
	_ conn.Bind     = (*Bind)(nil)
	_ conn.Endpoint = Endpoint{}
)

// bindBatch is how many datagrams a Bind hands wireguard-go per receive and
// accepts per send.
const bindBatch = 64

// queueLen is each Bind's receive queue, in datagrams; a full queue drops,
// as a socket buffer does.
const queueLen = 4096

// Network joins Binds by address.
type Network struct {
	mu    sync.Mutex
	binds map[netip.AddrPort]*Bind // open binds; guarded by mu

	// Dropped counts datagrams to an address no open Bind has, or to a
	// full queue.
	Dropped atomic.Uint64
}

// NewNetwork returns an empty Network.
func NewNetwork() *Network {
	return &Network{binds: make(map[netip.AddrPort]*Bind)}
}

// Bind returns a Bind that listens on addr once the device opens it.
func (n *Network) Bind(addr netip.AddrPort) *Bind {
	return &Bind{net: n, addr: addr}
}

// datagram is one datagram in flight.
type datagram struct {
	from netip.AddrPort
	b    []byte
}

// Bind is a conn.Bind on a Network.
type Bind struct {
	net  *Network
	addr netip.AddrPort

	mu     sync.Mutex
	rx     chan datagram // guarded by mu; nil while closed
	closed chan struct{} // guarded by mu
}

// Endpoint is an address on a Network.
type Endpoint netip.AddrPort

func (Endpoint) ClearSrc()             {}
func (Endpoint) SrcToString() string   { return "" }
func (Endpoint) SrcIP() netip.Addr     { return netip.Addr{} }
func (e Endpoint) DstIP() netip.Addr   { return netip.AddrPort(e).Addr() }
func (e Endpoint) DstToString() string { return netip.AddrPort(e).String() }
func (e Endpoint) DstToBytes() []byte {
	b, _ := netip.AddrPort(e).MarshalBinary()
	return b
}

// Open implements conn.Bind; it listens on the Bind's address (port is
// ignored).
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rx != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	b.net.mu.Lock()
	defer b.net.mu.Unlock()
	if _, taken := b.net.binds[b.addr]; taken {
		return nil, 0, errors.New("overlaytest: address in use")
	}
	rx, closed := make(chan datagram, queueLen), make(chan struct{})
	b.rx, b.closed = rx, closed
	b.net.binds[b.addr] = b
	recv := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		var d datagram
		select {
		case d = <-rx:
		case <-closed:
			return 0, net.ErrClosed
		}
		n := 0
		for {
			sizes[n] = copy(bufs[n], d.b)
			eps[n] = Endpoint(d.from)
			n++
			if n == len(bufs) {
				return n, nil
			}
			select {
			case d = <-rx:
			default:
				return n, nil
			}
		}
	}
	return []conn.ReceiveFunc{recv}, b.addr.Port(), nil
}

// Close implements conn.Bind.
func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rx == nil {
		return nil
	}
	b.net.mu.Lock()
	delete(b.net.binds, b.addr)
	b.net.mu.Unlock()
	close(b.closed)
	b.rx, b.closed = nil, nil
	return nil
}

// SetMark implements conn.Bind.
func (*Bind) SetMark(uint32) error { return nil }

// Send implements conn.Bind: each datagram is copied to the receive queue
// of the Bind at ep, or dropped.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	dst, ok := ep.(Endpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	b.mu.Lock()
	open := b.rx != nil
	b.mu.Unlock()
	if !open {
		return net.ErrClosed
	}
	b.net.mu.Lock()
	to := b.net.binds[netip.AddrPort(dst)]
	b.net.mu.Unlock()
	for _, buf := range bufs {
		if to == nil || !to.deliver(datagram{from: b.addr, b: append([]byte(nil), buf...)}) {
			b.net.Dropped.Add(1)
		}
	}
	return nil
}

// deliver queues d unless the Bind is closed or its queue full.
func (b *Bind) deliver(d datagram) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.rx <- d: // a nil rx (closed) never receives
		return true
	default:
		return false
	}
}

// ParseEndpoint implements conn.Bind.
func (*Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return Endpoint(ap), nil
}

// BatchSize implements conn.Bind.
func (*Bind) BatchSize() int { return bindBatch }
