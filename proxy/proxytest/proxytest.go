// Package proxytest provides a fake of proxy.Dialer for tests that need no
// node data path: HostDialer stands in for the pods with host sockets (a
// "pod" is any listener on the host, such as 127.0.0.1:port) and records the
// source address each dial asked for, since a host socket cannot use it.
// Nothing here is for production use.
package proxytest

import (
	"context"
	"net"
	"net/netip"
	"sync"

	"github.com/podnet/podnet/proxy"
)

var _ proxy.Dialer = (*HostDialer)(nil)

// Dial is one call of a HostDialer.
type Dial struct {
	Proto proxy.Protocol
	Src   netip.Addr // as asked: invalid means the node's address
	Dst   netip.AddrPort
}

// HostDialer is a proxy.Dialer that connects to dst on the host network,
// ignoring src (it records it). The zero value is ready to use.
type HostDialer struct {
	mu    sync.Mutex // guards dials
	dials []Dial
}

// DialTCP connects to dst over the host network.
func (d *HostDialer) DialTCP(ctx context.Context, src netip.Addr, dst netip.AddrPort) (net.Conn, error) {
	d.record(Dial{proxy.TCP, src, dst})
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", dst.String())
}

// DialUDP opens a connected UDP socket to dst over the host network.
func (d *HostDialer) DialUDP(src netip.Addr, dst netip.AddrPort) (net.Conn, error) {
	d.record(Dial{proxy.UDP, src, dst})
	return net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
}

// Dials returns the dials so far, oldest first.
func (d *HostDialer) Dials() []Dial {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Dial(nil), d.dials...)
}

func (d *HostDialer) record(x Dial) {
	d.mu.Lock()
	d.dials = append(d.dials, x)
	d.mu.Unlock()
}
