// Package ingresstest holds fakes for tests of package ingress and of its
// users: a Dialer onto host sockets, so that "pods" can be HTTP servers on
// 127.0.0.1.
package ingresstest

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"github.com/podnet/podnet/ingress"
)

var _ ingress.Dialer = (*MapDialer)(nil)

// MapDialer is an ingress.Dialer that dials, for each pod address, the host
// address mapped to it. An address not mapped is refused (ECONNREFUSED), as
// a pod port that nothing listens on. The zero value is ready to use.
type MapDialer struct {
	mu    sync.Mutex // guards hosts, dials
	hosts map[netip.AddrPort]string
	dials map[netip.AddrPort]int
}

// Map makes dials to pod go to host ("127.0.0.1:34567").
func (d *MapDialer) Map(pod netip.AddrPort, host string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hosts == nil {
		d.hosts = map[netip.AddrPort]string{}
	}
	d.hosts[pod] = host
}

// Dials returns how many dials to pod were asked for, refused ones included.
func (d *MapDialer) Dials(pod netip.AddrPort) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials[pod]
}

// DialContext dials the host address mapped to addr, a pod "IP:port".
func (d *MapDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	pod, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	d.mu.Lock()
	if d.dials == nil {
		d.dials = map[netip.AddrPort]int{}
	}
	d.dials[pod]++
	host, ok := d.hosts[pod]
	d.mu.Unlock()
	if !ok {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(pod),
			Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, host)
}
