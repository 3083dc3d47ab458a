package ingress

import (
	"errors"
	"net"
	"syscall"
)

// peerClosed reports whether an idle connection to a backend has something
// to read: its peer closed it, reset it, or sent bytes nobody asked for.
// Such a connection is not reused. A Dialer's connection may answer by a
// method Readable (the agent's netstack connections do); a host socket is
// asked with a non-blocking peek. A connection that can tell neither way is
// taken as open.
func peerClosed(c net.Conn) bool {
	switch c := c.(type) {
	case interface{ Readable() bool }:
		return c.Readable()
	case syscall.Conn:
		raw, err := c.SyscallConn()
		if err != nil {
			return true
		}
		closed := false
		err = raw.Read(func(fd uintptr) bool {
			var b [1]byte
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			closed = n > 0 || err == nil || !errors.Is(err, syscall.EAGAIN)
			return true
		})
		return closed || err != nil
	}
	return false
}
