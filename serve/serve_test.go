package serve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/podnet/podnet/internal/depcheck"
	"github.com/podnet/podnet/internal/leakcheck"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const testName = "web-1"

// started is a server serving in the background.
type started struct {
	s    *server
	stop func() error // cancels and returns serve's result
}

// start binds opts on host (ports may be 0) and serves them until the test
// ends or stop is called.
func start(t *testing.T, opts Options, host string, linger time.Duration) *started {
	t.Helper()
	if opts.Name == "" {
		opts.Name = testName
	}
	s, err := listen(opts, host)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	if linger > 0 {
		s.linger = linger
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve returned before ready: %v", err)
	}
	var result error
	var stopped atomic.Bool
	stop := func() error {
		if stopped.Swap(true) {
			return result
		}
		cancel()
		select {
		case result = <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("serve did not return within 5s of cancel")
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return &started{s: s, stop: stop}
}

// localAddr returns addr with its host replaced by ip.
func localAddr(t *testing.T, addr net.Addr, ip string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(ip, port)
}

// tcpAnswer connects to addr, half-closes, and returns everything read.
func tcpAnswer(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatalf("close write: %v", err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return string(b)
}

// udpAnswer sends one datagram to addr and returns the reply.
func udpAnswer(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	buf := make([]byte, 1500)
	// UDP may drop; retry a few times.
	for range 5 {
		if _, err := c.Write([]byte("who?")); err != nil {
			t.Fatalf("send to %s: %v", addr, err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n])
		}
	}
	t.Fatalf("no UDP answer from %s", addr)
	return ""
}

// httpGet returns the status code and body of GET url, without keeping the
// connection alive.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// checkNoLeaks fails the test if goroutines of this package (other than the tests themselves)
// or of net/http's server are still running.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	leakcheck.Now(t, leakcheck.Options{
		Match:  []string{"podnet/serve.", "net/http.(*conn).serve"},
		Ignore: []string{"serve.Test", "serve.Fuzz", "serve.start"},
		Wait:   3 * time.Second,
	})
}

func TestServeAnswers(t *testing.T) {
	st := start(t, Options{TCP: []int{0, 0}, UDP: []int{0}, HTTP: []int{0}}, "127.0.0.1", 0)
	s := st.s

	for _, l := range s.tcp {
		if got := tcpAnswer(t, l.Addr().String()); got != testName+"\n" {
			t.Errorf("TCP %s answered %q, want %q", l.Addr(), got, testName+"\n")
		}
	}
	if got := udpAnswer(t, s.udp[0].LocalAddr().String()); got != testName+"\n" {
		t.Errorf("UDP answered %q, want %q", got, testName+"\n")
	}

	base := "http://" + s.http[0].Addr().String()
	tests := []struct {
		path   string
		status int
		body   string
	}{
		{"/", 200, testName + "\n"},
		{"/clientip", 200, "127.0.0.1\n"},
		{"/echo?msg=hello%20world", 200, "hello world\n"},
		{"/echo?msg=%3Cb%3E", 200, "<b>\n"},
		{"/echo", 200, "\n"},
		{"/nope", 200, testName + "\n"}, // any other path answers the name: Ingress paths reach it unchanged
		{"/foo/bar", 200, testName + "\n"},
	}
	for _, tt := range tests {
		status, body := httpGet(t, base+tt.path)
		if status != tt.status || body != tt.body {
			t.Errorf("GET %s = %d %q, want %d %q", tt.path, status, body, tt.status, tt.body)
		}
	}
	if status, body := httpGet(t, base+"/stream?n=2"); status != 200 || !strings.HasPrefix(body, "chunk 0 ") || !strings.Contains(body, "\nchunk 1 ") {
		t.Errorf("GET /stream?n=2 = %d %q, want two chunks", status, body)
	}
	if status, body := httpGet(t, base+"/headers"); status != 200 || !strings.HasPrefix(body, "Host: 127.0.0.1:") {
		t.Errorf("GET /headers = %d %q", status, body)
	}

	// A plain-text answer that browsers must not sniff.
	resp, err := http.Head(base + "/echo?msg=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("X-Content-Type-Options missing")
	}
	http.DefaultClient.CloseIdleConnections()

	if err := st.stop(); err != nil {
		t.Errorf("serve returned %v after cancel, want nil", err)
	}
	checkNoLeaks(t)
}

func TestServeAllAddresses(t *testing.T) {
	st := start(t, Options{TCP: []int{0}, UDP: []int{0}, HTTP: []int{0}}, "", 0)
	s := st.s
	ips := []string{"127.0.0.1"}
	if l, err := net.Listen("tcp", "[::1]:0"); err == nil {
		l.Close()
		ips = append(ips, "::1")
	} else {
		t.Logf("no IPv6 loopback (%v): checking IPv4 only", err)
	}
	for _, ip := range ips {
		if got := tcpAnswer(t, localAddr(t, s.tcp[0].Addr(), ip)); got != testName+"\n" {
			t.Errorf("TCP via %s answered %q", ip, got)
		}
		if got := udpAnswer(t, localAddr(t, s.udp[0].LocalAddr(), ip)); got != testName+"\n" {
			t.Errorf("UDP via %s answered %q", ip, got)
		}
		url := "http://" + localAddr(t, s.http[0].Addr(), ip)
		if _, got := httpGet(t, url+"/clientip"); got != ip+"\n" {
			t.Errorf("/clientip via %s = %q, want %q", ip, got, ip+"\n")
		}
	}
	st.stop()
	checkNoLeaks(t)
}

// TestTCPLinger: a client that never closes its side is answered, kept open after the answer,
// and closed by the server (after the linger); one that half-closes at once is answered and
// closed at once, long before a linger of a minute. No durations are asserted, only the order of
// events (and generous deadlines, so that a broken server fails rather than hangs).
func TestTCPLinger(t *testing.T) {
	const linger = 500 * time.Millisecond
	st := start(t, Options{TCP: []int{0}}, "127.0.0.1", linger)
	c, err := net.Dial("tcp", st.s.tcp[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || line != testName+"\n" {
		t.Fatalf("read %q, %v; want the name", line, err)
	}
	// The client may write; the server reads and discards it, and keeps the connection.
	fmt.Fprintf(c, "hello\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	var ne net.Error
	if _, err := r.ReadByte(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("right after the answer: %v, want the connection still open", err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadAll(r); err != nil {
		t.Fatalf("waiting for the server to close: %v", err)
	}
	st.stop()
	checkNoLeaks(t)

	// A client that half-closes at once is answered and closed at once, not after the linger.
	st = start(t, Options{TCP: []int{0}}, "127.0.0.1", time.Minute)
	// (tcpAnswer's read fails after 5 s: well before the linger.)
	if got := tcpAnswer(t, st.s.tcp[0].Addr().String()); got != testName+"\n" {
		t.Errorf("half-closed client got %q, want the name", got)
	}
	st.stop()
	checkNoLeaks(t)
}

func TestCancelClosesOpenConnections(t *testing.T) {
	st := start(t, Options{TCP: []int{0}, HTTP: []int{0}}, "127.0.0.1", time.Minute)
	c, err := net.Dial("tcp", st.s.tcp[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || line != testName+"\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	// An HTTP client that connected but sent nothing yet.
	h, err := net.Dial("tcp", st.s.http[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	if err := st.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("TCP connection not closed by shutdown: read err %v", err)
	}
	checkNoLeaks(t)
}

// freePort returns a TCP port that was free a moment ago on all addresses.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestRun(t *testing.T) {
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var readyCalls atomic.Int32
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Name: "pod-x", TCP: []int{port}, Ready: func() {
			if readyCalls.Add(1) == 1 {
				close(ready)
			}
		}})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run not ready after 5s")
	}
	if got := tcpAnswer(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); got != "pod-x\n" {
		t.Errorf("answer %q, want %q", got, "pod-x\n")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if n := readyCalls.Load(); n != 1 {
		t.Errorf("Ready called %d times, want 1", n)
	}
	checkNoLeaks(t)
}

func TestRunErrors(t *testing.T) {
	busy, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	free := freePort(t)

	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"no ports", Options{}, "no ports"},
		{"port zero", Options{TCP: []int{0}}, "TCP port 0: out of range"},
		{"port too big", Options{UDP: []int{65536}}, "UDP port 65536: out of range"},
		{"duplicate TCP", Options{TCP: []int{80, 80}}, "TCP port 80 given twice"},
		{"duplicate UDP", Options{UDP: []int{53, 53}}, "UDP port 53 given twice"},
		{"TCP and HTTP", Options{TCP: []int{8080}, HTTP: []int{8080}}, "port 8080 given for both TCP and HTTP"},
		{"busy TCP port", Options{TCP: []int{free}, HTTP: []int{busyPort}}, fmt.Sprintf("HTTP port %d", busyPort)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Name = "x"
			err := Run(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Run error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	// The listener bound before the failure was closed again.
	if l, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(free))); err != nil {
		t.Errorf("port %d still bound after a failed Run: %v", free, err)
	} else {
		l.Close()
	}
	// UDP and TCP may share a port number.
	if err := validate(Options{TCP: []int{53}, UDP: []int{53}}); err != nil {
		t.Errorf("TCP and UDP on one port: %v", err)
	}
}

func TestPodName(t *testing.T) {
	t.Setenv("POD_NAME", "from-env")
	if got, _ := podName("given"); got != "given" {
		t.Errorf("podName(given) = %q", got)
	}
	if got, _ := podName(""); got != "from-env" {
		t.Errorf("podName with POD_NAME = %q, want from-env", got)
	}
	t.Setenv("POD_NAME", "")
	if got, err := podName(""); err != nil || got == "" {
		t.Errorf("podName falls back to the hostname: %q, %v", got, err)
	}
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr string
	}{
		{"", nil, ""},
		{"80", []int{80}, ""},
		{"80,8080", []int{80, 8080}, ""},
		{"80 8080", []int{80, 8080}, ""},
		{" 80, 8080 ,\t53 ", []int{80, 8080, 53}, ""},
		{"1,65535", []int{1, 65535}, ""},
		{"80,http", nil, `invalid port "http": not a number`},
		{"-1", nil, `invalid port "-1": not a number`},
		{"+80", nil, `invalid port "+80": not a number`},
		{"0", nil, `invalid port "0": out of range 1-65535`},
		{"65536", nil, `invalid port "65536": out of range 1-65535`},
		{"99999999999999999999999", nil, `invalid port "99999999999999999999999": out of range`},
		{"80,80", nil, `invalid port "80": listed twice`},
		{"80;81", nil, `invalid port "80;81"`},
	}
	for _, tt := range tests {
		got, err := ParsePorts(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParsePorts(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("ParsePorts(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"", "80", "80,8080", "80 8080", "0", "65536", "a,b", "1,,2", " 7 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParsePorts(s)
		if err != nil {
			return
		}
		seen := make(map[int]bool)
		for _, p := range ports {
			if p < 1 || p > 65535 || seen[p] {
				t.Fatalf("ParsePorts(%q) = %v: bad or repeated port %d", s, ports, p)
			}
			seen[p] = true
		}
		// What it accepts round-trips through its canonical form.
		strs := make([]string, len(ports))
		for i, p := range ports {
			strs[i] = strconv.Itoa(p)
		}
		again, err := ParsePorts(strings.Join(strs, ","))
		if err != nil || fmt.Sprint(again) != fmt.Sprint(ports) {
			t.Fatalf("ParsePorts(%q) = %v, but its canonical form parses to %v, %v", s, ports, again, err)
		}
	})
}

func BenchmarkParsePorts(b *testing.B) {
	for b.Loop() {
		if _, err := ParsePorts("80, 443, 8080 8443,9090"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestImports(t *testing.T) {
	depcheck.Forbid(t, func(dep string) string {
		if depcheck.IsOurs(dep) && dep != "github.com/podnet/podnet/serve" && !strings.HasPrefix(dep, "github.com/podnet/podnet/internal/") {
			return "serve must not depend on the rest of podnet"
		}
		return ""
	}, ".")
}
