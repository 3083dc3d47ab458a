package proxy_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/leakcheck"
	"github.com/podnet/podnet/proxy"
	"github.com/podnet/podnet/proxy/proxytest"
)

var (
	node       = netip.MustParseAddr("127.0.0.1")
	clusterIPs atomic.Uint32 // gives each test Service its own ClusterIP
)

// nodePorts is a Proxy and a NodePorts on 127.0.0.1 with a HostDialer.
type nodePorts struct {
	*proxy.NodePorts
	proxy  *proxy.Proxy
	dialer *proxytest.HostDialer
}

func newNodePorts(t *testing.T, opts proxy.NodePortOptions) *nodePorts {
	t.Helper()
	leakcheck.AtCleanup(t, leakcheck.Options{Match: []string{"podnet/podnet/proxy.", "net/http.(*conn).serve"}})
	p := proxy.New(proxy.Options{Logger: testLogger(t)})
	d := &proxytest.HostDialer{}
	opts.Address, opts.Proxy, opts.Dialer, opts.Logger = node, p, d, testLogger(t)
	n := proxy.NewNodePorts(opts)
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &nodePorts{NodePorts: n, proxy: p, dialer: d}
}

// apply updates the table and the listeners, as the node agent does.
func (n *nodePorts) apply(t *testing.T, svcs ...proxy.Service) {
	t.Helper()
	n.FlushUDP(n.proxy.Update(svcs))
	if err := n.Sync(svcs); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// freePort returns a port of 127.0.0.1 that is free for TCP and UDP now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", l.Addr().String())
		l.Close()
		if err == nil {
			u.Close()
			return uint16(port)
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

// tcpPod is a "pod" on the host: it echoes each connection and half-closes
// its side when the client has.
func tcpPod(t *testing.T) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return addrPort(l.Addr())
}

// udpPod is a "pod" on the host that answers each datagram with prefix and
// the datagram.
func udpPod(t *testing.T, prefix string) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(append([]byte(prefix), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return addrPort(c.LocalAddr())
}

func addrPort(a net.Addr) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func service(name string, proto proxy.Protocol, nodePort uint16, backends ...netip.AddrPort) proxy.Service {
	s := proxy.Service{Namespace: "default", Name: name, ClusterIP: netip.AddrFrom4([4]byte{10, 96, 1, byte(clusterIPs.Add(1))}),
		Ports: []proxy.Port{{Name: "p", Protocol: proto, Port: 80, NodePort: nodePort}}}
	for _, b := range backends {
		s.Ports[0].Endpoints = append(s.Ports[0].Endpoints, proxy.Endpoint{Addr: b, Node: "node-a", Local: true, Ready: true})
	}
	return s
}

func dialNode(t *testing.T, port uint16) *net.TCPConn {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(netip.AddrPortFrom(node, port)))
	if err != nil {
		t.Fatalf("dial node port %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// roundTrip writes a line to c and reads the echo.
func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	got, err := r.ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("echo = %q, %v; want %q", got, err, msg+"\n")
	}
}

func TestNodePortTCPHalfClose(t *testing.T) {
	n := newNodePorts(t, proxy.NodePortOptions{})
	port := freePort(t)
	n.apply(t, service("web", proxy.TCP, port, tcpPod(t)))

	c := dialNode(t, port)
	msg := strings.Repeat("podnet ", 100_000) // larger than any socket buffer on the way
	go func() {
		io.WriteString(c, msg)
		c.CloseWrite() // the pod sees EOF only if the half-close is carried
	}()
	got, err := io.ReadAll(c) // and we see EOF only if the pod's is carried back
	if err != nil || string(got) != msg {
		t.Fatalf("read %d bytes, %v; want the %d bytes sent, then EOF", len(got), err, len(msg))
	}
	d := n.dialer.Dials()
	if len(d) != 1 || d[0].Proto != proxy.TCP || d[0].Src.IsValid() {
		t.Errorf("dials %+v, want one TCP dial from the node's address (invalid Src)", d)
	}
	if s := n.Stats(); s.TCPAccepted != 1 {
		t.Errorf("stats %+v, want 1 accepted", s)
	}
}

func TestNodePortLocalPolicyLoopbackClient(t *testing.T) {
	// externalTrafficPolicy Local keeps the client's address, but a loopback
	// client cannot be represented in a pod: the node's address is used.
	n := newNodePorts(t, proxy.NodePortOptions{})
	port := freePort(t)
	svc := service("web", proxy.TCP, port, tcpPod(t))
	svc.ExternalLocal = true
	n.apply(t, svc)
	c := dialNode(t, port)
	roundTrip(t, c, bufio.NewReader(c), "hello")
	if d := n.dialer.Dials(); len(d) != 1 || d[0].Src.IsValid() {
		t.Errorf("dials %+v, want one with invalid Src", d)
	}
}

// refused connects to the node port and reports nil if the connection is
// reset (during connect, when the reset is quick enough, or at the first read).
func refused(port uint16) error {
	c, err := net.Dial("tcp", netip.AddrPortFrom(node, port).String())
	if errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	return fmt.Errorf("read: %v, want a connection reset", err)
}

func TestNodePortRefusals(t *testing.T) {
	n := newNodePorts(t, proxy.NodePortOptions{})
	noEndpoint, dialFails, denied := freePort(t), freePort(t), freePort(t)
	closed := netip.AddrPortFrom(node, freePort(t)) // nothing listens
	lb := service("lb", proxy.TCP, 0, tcpPod(t))
	lb.Ports[0].Port = denied
	lb.LoadBalancerIPs = []netip.Addr{node}
	lb.SourceRanges = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	n.apply(t, service("empty", proxy.TCP, noEndpoint), service("dead", proxy.TCP, dialFails, closed), lb)

	for _, tc := range []struct {
		name string
		port uint16
	}{{"no endpoint", noEndpoint}, {"dial fails", dialFails}, {"outside loadBalancerSourceRanges", denied}} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			if err := refused(tc.port); err != nil {
				t.Error(err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("refused after %v, want at once", d)
			}
		})
	}
	if s := n.Stats(); s.TCPRefused != 2 || s.TCPDialFailed != 1 {
		t.Errorf("stats %+v, want 2 refused and 1 failed dial", s)
	}
}

func TestNodePortCarriesBackendReset(t *testing.T) {
	n := newNodePorts(t, proxy.NodePortOptions{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // a pod that resets every connection once it is spliced
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	port := freePort(t)
	n.apply(t, service("web", proxy.TCP, port, addrPort(l.Addr())))
	if err := refused(port); err != nil {
		t.Errorf("a backend's reset: %v", err)
	}
}

func TestLoadBalancerPort(t *testing.T) {
	n := newNodePorts(t, proxy.NodePortOptions{})
	lbPort := freePort(t)
	svc := service("lb", proxy.TCP, 0, tcpPod(t))
	svc.Ports[0].Port = lbPort
	svc.LoadBalancerIPs = []netip.Addr{ip("192.0.2.10"), node}
	svc.SourceRanges = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	other := service("elsewhere", proxy.TCP, 0, tcpPod(t))
	other.Ports[0].Port = freePort(t)
	other.LoadBalancerIPs = []netip.Addr{ip("192.0.2.11")} // not this node's address: not served here
	n.apply(t, svc, other)
	c := dialNode(t, lbPort)
	roundTrip(t, c, bufio.NewReader(c), "via the load-balancer IP")
	if _, err := net.Dial("tcp", netip.AddrPortFrom(node, other.Ports[0].Port).String()); err == nil {
		t.Errorf("a Service whose load-balancer IPs do not include the node's address is served on it")
	}
}

func TestNodePortMaxConns(t *testing.T) {
	n := newNodePorts(t, proxy.NodePortOptions{MaxConns: 1})
	port := freePort(t)
	n.apply(t, service("web", proxy.TCP, port, tcpPod(t)))
	first := dialNode(t, port)
	roundTrip(t, first, bufio.NewReader(first), "one")
	if err := refused(port); err != nil {
		t.Errorf("connection over MaxConns: %v", err)
	}
	roundTrip(t, first, bufio.NewReader(first), "still there")
}

func TestNodePortUDP(t *testing.T) {
	n := newNodePorts(t, proxy.NodePortOptions{UDPIdleTimeout: 300 * time.Millisecond})
	port := freePort(t)
	a, b := udpPod(t, "a:"), udpPod(t, "b:")
	n.apply(t, service("dns", proxy.UDP, port, a))

	dial := func() *net.UDPConn {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(node, port)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	exchange := func(c *net.UDPConn, msg string) string {
		t.Helper()
		// The connected client socket takes replies only from the node port.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		nr, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read reply to %q: %v", msg, err)
		}
		return string(buf[:nr])
	}
	c1, c2 := dial(), dial()
	if got := exchange(c1, "one"); got != "a:one" {
		t.Errorf("reply %q, want a:one", got)
	}
	if got := exchange(c2, "two"); got != "a:two" {
		t.Errorf("reply %q, want a:two", got)
	}
	if got := exchange(c1, "three"); got != "a:three" {
		t.Errorf("reply %q, want a:three", got)
	}
	if s := n.Stats(); s.UDPFlows != 2 {
		t.Errorf("%d UDP flows, want 2 (one per client)", s.UDPFlows)
	}

	// The endpoint is replaced: Update reports it, FlushUDP ends its flows,
	// and the same client's next datagram goes to the new one.
	n.apply(t, service("dns", proxy.UDP, port, b))
	if got := exchange(c1, "four"); got != "b:four" {
		t.Errorf("after the endpoint changed: reply %q, want b:four", got)
	}

	// Idle flows end.
	deadline := time.Now().Add(5 * time.Second)
	for n.Stats().UDPFlows != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d UDP flows left after the idle timeout", n.Stats().UDPFlows)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := exchange(c1, "five"); got != "b:five" {
		t.Errorf("after idling out: reply %q, want b:five", got)
	}
}

func TestNodePortUDPBounded(t *testing.T) {
	n := newNodePorts(t, proxy.NodePortOptions{MaxUDPFlows: 2})
	port := freePort(t)
	n.apply(t, service("dns", proxy.UDP, port, udpPod(t, "")))
	for i := range 5 {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(node, port)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{byte(i)})
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err = c.Read(make([]byte, 16))
		if answered := err == nil; answered != (i < 2) {
			t.Errorf("client %d answered %v (%v), want only the first 2", i, answered, err)
		}
	}
	if s := n.Stats(); s.UDPFlows != 2 || s.UDPDropped != 3 {
		t.Errorf("stats %+v, want 2 flows and 3 dropped", s)
	}
}

func TestHealthCheck(t *testing.T) {
	n := newNodePorts(t, proxy.NodePortOptions{})
	hc := freePort(t)
	svc := service("web", proxy.TCP, freePort(t), tcpPod(t), tcpPod(t))
	svc.ExternalLocal = true
	svc.HealthCheckNodePort = hc
	svc.Ports = append(svc.Ports, proxy.Port{Name: "q", Protocol: proxy.UDP, Port: 81, Endpoints: svc.Ports[0].Endpoints})
	n.apply(t, svc)
	url := "http://" + netip.AddrPortFrom(node, hc).String() + "/"
	client := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()

	check := func(wantCode, wantLocal int) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": " +
			string(rune('0'+wantLocal)) + ",\n\t\"serviceProxyHealthy\": true\n}"
		if resp.StatusCode != wantCode || string(body) != want {
			t.Errorf("GET %s = %d\n%s\nwant %d\n%s", url, resp.StatusCode, body, wantCode, want)
		}
		if ct, nosniff := resp.Header.Get("Content-Type"), resp.Header.Get("X-Content-Type-Options"); ct != "application/json" || nosniff != "nosniff" {
			t.Errorf("headers Content-Type %q, X-Content-Type-Options %q", ct, nosniff)
		}
	}
	// Two local pods; the same pod on two ports counts once (distinct IPs).
	// Both pods are 127.0.0.1 here, so: one.
	check(http.StatusOK, 1)

	for i := range svc.Ports {
		svc.Ports[i].Endpoints = []proxy.Endpoint{{Addr: ap("10.244.1.2:80"), Node: "node-b", Ready: true}}
	}
	n.apply(t, svc)
	check(http.StatusServiceUnavailable, 0)

	// Cluster policy: no health check.
	svc.ExternalLocal = false
	n.apply(t, svc)
	if _, err := client.Get(url); err == nil {
		t.Errorf("health check still served for externalTrafficPolicy Cluster")
	}
}

func TestSyncKeepsEstablished(t *testing.T) {
	n := newNodePorts(t, proxy.NodePortOptions{})
	p1, p2 := freePort(t), freePort(t)
	pod := tcpPod(t)
	one, two := service("one", proxy.TCP, p1, pod), service("two", proxy.TCP, p2, pod)
	n.apply(t, one)
	c := dialNode(t, p1)
	r := bufio.NewReader(c)
	roundTrip(t, c, r, "before")

	n.apply(t, one, two) // add a port
	roundTrip(t, c, r, "after adding a port")
	c2 := dialNode(t, p2)
	roundTrip(t, c2, bufio.NewReader(c2), "on the new port")

	n.apply(t, two) // remove the connection's own port
	roundTrip(t, c, r, "after its port was removed")
	if c, err := net.Dial("tcp", netip.AddrPortFrom(node, p1).String()); err == nil {
		c.Close()
		t.Errorf("the removed port still accepts connections")
	}
	if s := n.Stats(); s.TCPActive != 2 {
		t.Errorf("%d active connections, want 2", s.TCPActive)
	}

	// Close ends them.
	n.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Errorf("connection still open after Close")
	}
	if err := n.Sync([]proxy.Service{one}); err == nil {
		t.Errorf("Sync after Close succeeded")
	}
}

func TestSyncErrors(t *testing.T) {
	n := newNodePorts(t, proxy.NodePortOptions{})
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := addrPort(busy.Addr()).Port()
	good := freePort(t)
	shared := freePort(t)
	pod := tcpPod(t)
	svcs := []proxy.Service{
		service("blocked", proxy.TCP, taken, pod),
		service("good", proxy.TCP, good, pod),
		service("first", proxy.TCP, shared, pod),
		service("second", proxy.TCP, shared, pod),
	}
	n.proxy.Update(svcs)
	err = n.Sync(svcs)
	if err == nil {
		t.Fatal("Sync succeeded with a port in use and a duplicate nodePort")
	}
	for _, want := range []string{"default/blocked", "address already in use", "default/second", "default/first"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	c := dialNode(t, good)
	roundTrip(t, c, bufio.NewReader(c), "the other listeners open")

	// A later Sync retries once the port is free.
	busy.Close()
	if err := n.Sync(svcs[:3]); err != nil {
		t.Errorf("Sync after the port was freed: %v", err)
	}
	c = dialNode(t, taken)
	roundTrip(t, c, bufio.NewReader(c), "retried")
}

// testLogger logs to t.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}
