package ingress

import (
	"net"
	"net/netip"
	"sync"
)

// limitListener admits connections within MaxConns and MaxConnsPerClient and
// closes the others as soon as they are accepted, so the server never reads
// from them: a client over its cap gets no share of the server at all.
type limitListener struct {
	net.Listener
	c *Controller
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := l.c.admit(conn); tc != nil {
			return tc, nil
		}
		conn.Close()
	}
}

// admit registers conn, or returns nil when a bound is reached or the
// Controller is closing.
func (c *Controller) admit(conn net.Conn) *trackedConn {
	client := remoteIP(conn.RemoteAddr())
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.closing || (c.maxConns > 0 && len(c.conns) >= c.maxConns) ||
		(c.maxPerCl > 0 && c.perClient[client] >= c.maxPerCl) {
		c.rejected.Add(1)
		return nil
	}
	tc := &trackedConn{Conn: conn, c: c, client: client}
	c.conns[tc] = struct{}{}
	c.perClient[client]++
	c.accepted.Add(1)
	return tc
}

func remoteIP(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}

// trackedConn is an admitted client connection; its first Close gives its
// place back.
type trackedConn struct {
	net.Conn
	c      *Controller
	client netip.Addr
	once   sync.Once
}

func (tc *trackedConn) Close() error {
	err := tc.Conn.Close()
	tc.once.Do(func() {
		c := tc.c
		c.connMu.Lock()
		delete(c.conns, tc)
		if n := c.perClient[tc.client]; n <= 1 {
			delete(c.perClient, tc.client)
		} else {
			c.perClient[tc.client] = n - 1
		}
		c.connMu.Unlock()
	})
	return err
}
