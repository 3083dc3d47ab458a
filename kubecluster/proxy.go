package kubecluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/podnet/podnet/internal/netns"
)

// Proxy forwards every TCP connection accepted on listen (in the caller's network namespace) to
// to inside the network namespace netns (an ip netns name), until ctx ends: the host's kubectl
// reaches the API server in the cluster's own namespace this way. Each connection to the target
// is made on an OS thread that enters netns and is then discarded; the sockets stay in netns
// whatever thread uses them later.
func Proxy(ctx context.Context, netns, listen, to string) error {
	f, err := os.Open("/run/netns/" + netns)
	if err != nil {
		return fmt.Errorf("cluster proxy: %w", err)
	}
	defer f.Close()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("cluster proxy: %w", err)
	}
	go func() { <-ctx.Done(); ln.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("cluster proxy: %w", err)
		}
		wg.Go(func() {
			defer c.Close()
			b, err := dialIn(int(f.Fd()), to)
			if err != nil {
				return
			}
			defer b.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(b, c)
				b.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			io.Copy(c, b)
			c.(*net.TCPConn).CloseWrite()
			<-done
		})
	}
}

// dialIn connects to addr from inside the network namespace ns.
func dialIn(ns int, addr string) (c net.Conn, err error) {
	err = netns.Do(ns, func() error {
		c, err = net.Dial("tcp", addr)
		return err
	})
	return c, err
}
