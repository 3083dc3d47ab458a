package proxy

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// maxDatagram is the largest UDP payload a flow carries.
const maxDatagram = 65535

// udpPort serves one UDP NodePort or load-balancer port: a flow per client
// address.
type udpPort struct {
	n    *NodePorts
	port uint16
	conn *net.UDPConn

	mu     sync.Mutex // guards flows, closed
	flows  map[netip.AddrPort]*udpFlow
	closed bool
}

// udpFlow is one client's flow: a connected socket to its backend.
type udpFlow struct {
	client  netip.AddrPort
	backend netip.AddrPort
	conn    net.Conn
	last    atomic.Int64 // since NodePorts.epoch: the last datagram either way
}

// serve reads client datagrams until the socket is closed, then ends every
// flow.
func (u *udpPort) serve() {
	defer u.closeFlows()
	buf := make([]byte, maxDatagram)
	for {
		nr, from, err := u.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			u.n.log.Debug("node port read", "port", u.port, "err", err)
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		f := u.flow(from)
		if f == nil {
			u.n.udpDropped.Add(1)
			continue
		}
		if _, err := f.conn.Write(buf[:nr]); err != nil {
			u.n.udpDropped.Add(1)
		}
	}
}

// flow returns client's flow, marked as just used, starting one if needed;
// nil if the datagram is to be dropped.
func (u *udpPort) flow(client netip.AddrPort) *udpFlow {
	n := u.n
	now := int64(time.Since(n.epoch))
	u.mu.Lock()
	defer u.mu.Unlock()
	if f := u.flows[client]; f != nil {
		f.last.Store(now)
		return f
	}
	if u.closed {
		return nil
	}
	backend, svc, res := n.proxy.PickExternal(UDP, client.Addr(), n.addr, u.port)
	if res != Picked {
		return nil // a host socket cannot answer ICMP port unreachable
	}
	if n.udpFlows.Add(1) > n.maxFlows {
		n.udpFlows.Add(-1)
		return nil
	}
	c, err := n.dialer.DialUDP(ExternalSource(svc, client.Addr()), backend)
	if err != nil {
		n.udpFlows.Add(-1)
		n.log.Debug("node port dial", "service", svc.Namespace+"/"+svc.Name, "backend", backend, "err", err)
		return nil
	}
	f := &udpFlow{client: client, backend: backend, conn: c}
	f.last.Store(now)
	u.flows[client] = f
	n.wg.Go(func() { u.reply(f) })
	return f
}

// reply writes f's backend datagrams back to its client until f idles out
// or its socket fails or is closed.
func (u *udpPort) reply(f *udpFlow) {
	n := u.n
	defer u.end(f, false)
	buf := make([]byte, maxDatagram)
	for {
		f.conn.SetReadDeadline(n.epoch.Add(time.Duration(f.last.Load()) + n.idle))
		nr, err := f.conn.Read(buf)
		if nr > 0 {
			f.last.Store(int64(time.Since(n.epoch)))
			u.conn.WriteToUDPAddrPort(buf[:nr], f.client)
		}
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && !u.end(f, true) {
			continue // the client sent something meanwhile
		}
		return
	}
}

// end removes f and closes its socket; if idleOnly, only when f is idle,
// and it reports whether it did.
func (u *udpPort) end(f *udpFlow, idleOnly bool) bool {
	u.mu.Lock()
	if idleOnly && time.Since(u.n.epoch)-time.Duration(f.last.Load()) < u.n.idle {
		u.mu.Unlock()
		return false
	}
	if u.flows[f.client] == f {
		delete(u.flows, f.client)
		u.n.udpFlows.Add(-1)
	}
	u.mu.Unlock()
	f.conn.Close()
	return true
}

// flush ends the flows to backends.
func (u *udpPort) flush(backends []netip.AddrPort) {
	u.mu.Lock()
	var gone []*udpFlow
	for c, f := range u.flows {
		if slices.Contains(backends, f.backend) {
			delete(u.flows, c)
			u.n.udpFlows.Add(-1)
			gone = append(gone, f)
		}
	}
	u.mu.Unlock()
	for _, f := range gone {
		f.conn.Close()
	}
}

// closeFlows ends every flow; no new one starts.
func (u *udpPort) closeFlows() {
	u.mu.Lock()
	u.closed = true
	flows := u.flows
	u.flows = map[netip.AddrPort]*udpFlow{}
	u.n.udpFlows.Add(-int64(len(flows)))
	u.mu.Unlock()
	for _, f := range flows {
		f.conn.Close()
	}
}
