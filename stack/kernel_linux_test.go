package stack_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podnet/podnet/stack"
	"github.com/podnet/podnet/tap"
)

// netnsThread runs functions on an OS thread inside a network namespace of
// its own. The thread is never unlocked, so it dies with its goroutine and
// the test never touches the host namespace's configuration.
type netnsThread struct {
	calls chan func()
}

var errSkipNetns = errors.New("cannot create a network namespace")

func newNetnsThread(t *testing.T) *netnsThread {
	t.Helper()
	n := &netnsThread{calls: make(chan func())}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("%w: %v", errSkipNetns, err)
			return
		}
		ready <- nil
		for f := range n.calls {
			f()
		}
	}()
	if err := <-ready; err != nil {
		t.Skipf("skipping: %v", err)
	}
	t.Cleanup(func() { close(n.calls) })
	return n
}

// do runs f in the namespace and returns its error.
func (n *netnsThread) do(f func() error) error {
	errc := make(chan error, 1)
	n.calls <- func() { errc <- f() }
	return <-errc
}

// kernelPod creates a Linux pod: a namespace whose eth0 is a TAP with the
// given number of queues, configured as the node agent configures it,
// attached to s.
func kernelPod(t *testing.T, s *stack.Stack, ip netip.Addr, queues int) *netnsThread {
	t.Helper()
	ns := newNetnsThread(t)
	var devs []*tap.Device
	closeAll := func() {
		for _, d := range devs {
			d.Close()
		}
	}
	err := ns.do(func() error {
		var err error
		if devs, err = tap.OpenQueues("eth0", queues); err != nil {
			return err
		}
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(lo); err != nil {
			return err
		}
		eth, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := h.LinkSetHardwareAddr(eth, stack.PodMAC(ip)); err != nil {
			return err
		}
		if err := h.LinkSetMTU(eth, 1500); err != nil {
			return err
		}
		if err := h.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
			return err
		}
		if err := h.LinkSetUp(eth); err != nil {
			return err
		}
		idx := eth.Attrs().Index
		if err := h.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: gateway.AsSlice(), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("route to gateway: %w", err)
		}
		if err := h.RouteAdd(&netlink.Route{LinkIndex: idx, Gw: gateway.AsSlice()}); err != nil {
			return fmt.Errorf("default route: %w", err)
		}
		return nil
	})
	if err != nil {
		closeAll()
		t.Fatalf("kernel pod %v: %v", ip, err)
	}
	ports := make([]stack.Port, len(devs))
	for i, d := range devs {
		ports[i] = d
	}
	if err := s.AttachPodQueues(ip, ports); err != nil {
		closeAll()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.DetachPod(ip) })
	return ns
}

// stream sends n bytes over c and half-closes, while reading the peer's
// answer; it returns the answer and the throughput in Gbit/s.
func stream(c net.Conn, n int) (string, float64, error) {
	buf := make([]byte, 256<<10)
	start := time.Now()
	for sent := 0; sent < n; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			return "", 0, err
		}
	}
	c.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(c)
	gbps := float64(n) * 8 / time.Since(start).Seconds() / 1e9
	return string(reply), gbps, err
}

// countServer answers each connection on ln with the number of bytes read
// and the peer's address, once the peer half-closes.
func countServer(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			h := sha256.New()
			n, _ := io.Copy(h, c)
			fmt.Fprintf(c, "%d from %s", n, c.RemoteAddr().(*net.TCPAddr).IP)
		}()
	}
}

// TestKernelPods runs real Linux pods on TAP devices, single-queue and
// multi-queue: it checks that the kernel's TSO super-frames cross the fast
// path whole and that the netstack accepts them, and that what the netstack
// sends (host GSO) the kernel takes.
func TestKernelPods(t *testing.T) {
	for _, queues := range []int{1, 3} {
		t.Run(fmt.Sprintf("queues=%d", queues), func(t *testing.T) { testKernelPods(t, queues) })
	}
}

func testKernelPods(t *testing.T, queues int) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root for network namespaces and TAP devices")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("skipping: /dev/net/tun: %v", err)
	}
	size := 256 << 20
	if testing.Short() {
		size = 16 << 20
	}
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	go countServer(host)

	s := newStack(t, nil)
	a := kernelPod(t, s, podA, queues)
	b := kernelPod(t, s, podB, queues)

	var ln net.Listener
	if err := b.do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(podB, 5201).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go countServer(ln)

	dial := func(dst netip.AddrPort) net.Conn {
		var c net.Conn
		if err := a.do(func() (err error) {
			c, err = net.DialTimeout("tcp", dst.String(), 5*time.Second)
			return err
		}); err != nil {
			t.Fatalf("dial %v: %v", dst, err)
		}
		c.SetDeadline(time.Now().Add(60 * time.Second))
		return c
	}

	t.Run("pod to pod", func(t *testing.T) {
		before := s.Stats()
		c := dial(netip.AddrPortFrom(podB, 5201))
		defer c.Close()
		reply, gbps, err := stream(c, size)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%d from %s", size, podA); reply != want {
			t.Fatalf("reply %q, want %q", reply, want)
		}
		st := s.Stats()
		frames, bytes := st.FastPathFrames-before.FastPathFrames, st.FastPathBytes-before.FastPathBytes
		t.Logf("%d MiB in %.2f Gbit/s; fast path: %d frames, %d bytes per frame", size>>20, gbps, frames, bytes/max(frames, 1))
		if bytes < uint64(size) {
			t.Errorf("fast path carried %d bytes, want at least %d", bytes, size)
		}
		if bytes/max(frames, 1) < 3000 {
			t.Errorf("%d bytes per frame: TSO super-frames are not passed whole", bytes/max(frames, 1))
		}
	})

	t.Run("pod to pod, parallel streams", func(t *testing.T) {
		const streams = 4
		before := s.Stats()
		errc := make(chan error, streams)
		start := time.Now()
		for range streams {
			c := dial(netip.AddrPortFrom(podB, 5201))
			defer c.Close()
			go func() {
				reply, _, err := stream(c, size/streams)
				if want := fmt.Sprintf("%d from %s", size/streams, podA); err == nil && reply != want {
					err = fmt.Errorf("reply %q, want %q", reply, want)
				}
				errc <- err
			}()
		}
		for range streams {
			if err := <-errc; err != nil {
				t.Error(err)
			}
		}
		st := s.Stats()
		t.Logf("%d streams, %d MiB in %.2f Gbit/s", streams, size>>20, float64(size)*8/time.Since(start).Seconds()/1e9)
		if bytes := st.FastPathBytes - before.FastPathBytes; bytes < uint64(size) {
			t.Errorf("fast path carried %d bytes, want at least %d", bytes, size)
		}
	})

	t.Run("pod to host through the gateway", func(t *testing.T) {
		c := dial(netip.AddrPortFrom(gateway, uint16(host.Addr().(*net.TCPAddr).Port)))
		defer c.Close()
		n := size / 4
		reply, gbps, err := stream(c, n)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%d from 127.0.0.1", n); reply != want {
			t.Fatalf("reply %q, want %q", reply, want)
		}
		t.Logf("%d MiB in %.2f Gbit/s through the netstack", n>>20, gbps)
	})

	t.Run("host to pod", func(t *testing.T) {
		// The netstack sends: the pod receives host-GSO super-frames.
		var pl net.Listener
		if err := a.do(func() (err error) {
			pl, err = net.Listen("tcp", netip.AddrPortFrom(podA, 5202).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer pl.Close()
		got := make(chan string, 1)
		go func() {
			c, err := pl.Accept()
			if err != nil {
				got <- err.Error()
				return
			}
			defer c.Close()
			n, err := io.Copy(io.Discard, c)
			got <- fmt.Sprintf("%d %v", n, err)
		}()
		before := s.Stats()
		c, err := s.DialContextTCP(timeout(t, 5*time.Second), netip.AddrPortFrom(podA, 5202))
		if err != nil {
			t.Fatal(err)
		}
		n := size / 4
		buf := make([]byte, 256<<10)
		start := time.Now()
		for sent := 0; sent < n; sent += len(buf) {
			if _, err := c.Write(buf); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
		if r := <-got; r != fmt.Sprintf("%d <nil>", n) {
			t.Fatalf("pod read %s, want %d bytes", r, n)
		}
		st := s.Stats()
		frames := st.FromStackFrames - before.FromStackFrames
		t.Logf("%d MiB in %.2f Gbit/s from the netstack in %d frames", n>>20,
			float64(n)*8/time.Since(start).Seconds()/1e9, frames)
		if uint64(n)/max(frames, 1) < 3000 {
			t.Errorf("%d bytes per frame from the netstack: host GSO not in use", uint64(n)/max(frames, 1))
		}
	})
	t.Run("udp gso to host", func(t *testing.T) {
		// With USO on the TAP, one sendmsg with UDP_SEGMENT reaches the
		// Stack as one frame; the netstack gets it as datagrams.
		hostUDP, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer hostUDP.Close()
		var c *net.UDPConn
		if err := a.do(func() error {
			pc, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: gateway.AsSlice(), Port: hostUDP.LocalAddr().(*net.UDPAddr).Port})
			c = pc
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		raw, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, 1200) })
		if serr != nil {
			t.Skipf("skipping: UDP_SEGMENT: %v", serr)
		}
		before := s.Stats()
		payload := testData(3000)
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		hostUDP.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got []byte
		var sizes []int
		buf := make([]byte, 4096)
		for len(got) < len(payload) {
			n, err := hostUDP.Read(buf)
			if err != nil {
				t.Fatalf("after %v: %v", sizes, err)
			}
			sizes = append(sizes, n)
			got = append(got, buf[:n]...)
		}
		if fmt.Sprint(sizes) != "[1200 1200 600]" || string(got) != string(payload) {
			t.Fatalf("host received datagrams of %v bytes, want [1200 1200 600] with the payload", sizes)
		}
		frames := s.Stats().ToStackFrames - before.ToStackFrames
		t.Logf("3 datagrams reached the Stack in %d frame(s)", frames)
	})
	t.Logf("stats: %+v", s.Stats())
}
