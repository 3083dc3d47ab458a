package ingress_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podnet/podnet/ingress"
)

// dialFrom connects to addr from the local address src (any 127/8 address
// is the loopback's), so that tests can play several clients.
func dialFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// closedWithin reports whether the server closes conn within d (a read
// returns EOF or a reset rather than timing out).
func closedWithin(conn net.Conn, d time.Duration) bool {
	conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestSlowloris: clients that dribble their headers a byte at a time are closed by the server
// before they finish (ReadHeaderTimeout; at their pace the headers would take 11 s), and
// meanwhile another client is served. How long each takes is BenchmarkSlowloris's business:
// this test asserts no durations.
func TestSlowloris(t *testing.T) {
	const timeout = 300 * time.Millisecond
	f := newFixture(t, ingress.Options{ReadHeaderTimeout: timeout})
	f.serve(t, "web.example.com", f.pod(t, 1, echoHandler("web")))

	const slow = 50
	var wg sync.WaitGroup
	closedEarly := make([]bool, slow)
	for i := range slow {
		conn := dialFrom(t, "127.0.0.2", f.http)
		wg.Go(func() {
			req := "GET / HTTP/1.1\r\nHost: web.example.com\r\nX-Slow: " + strings.Repeat("x", 200) + "\r\n\r\n"
			for j := range len(req) {
				if _, err := conn.Write([]byte{req[j]}); err != nil || closedWithin(conn, 50*time.Millisecond) {
					closedEarly[i] = j < len(req)-1
					return
				}
			}
		})
	}

	c := newClient(t, f.http, "127.0.0.3", nil, false)
	for i := range 20 {
		if code, body := get(t, c, "GET", "http://web.example.com/", nil); code != 200 {
			t.Errorf("request %d of the well-behaved client: %d %s", i, code, body)
		}
	}
	// A TLS client that never finishes its handshake is closed as well (it would wait for ever).
	tlsConn := dialFrom(t, "127.0.0.2", f.https)
	io.WriteString(tlsConn, "\x16\x03\x01") // the start of a ClientHello
	if !closedWithin(tlsConn, 30*time.Second) {
		t.Error("a stalled TLS handshake was never closed")
	}
	wg.Wait()
	if s := f.Stats(); s.RejectedConns != 0 || s.AcceptedConns != slow+2 {
		t.Errorf("stats %+v: every slow client should have been accepted (and then timed out)", s)
	}
	for i, early := range closedEarly {
		if !early {
			t.Errorf("slow client %d sent all its headers: the server never closed it", i)
		}
	}
}

// TestConnectionCaps: a client over MaxConnsPerClient is closed at accept
// while other clients are served; MaxConns bounds everybody.
func TestConnectionCaps(t *testing.T) {
	f := newFixture(t, ingress.Options{MaxConnsPerClient: 3, MaxConns: 5})
	f.serve(t, "web.example.com", f.pod(t, 1, echoHandler("web")))
	greedy := make([]net.Conn, 3)
	for i := range greedy {
		greedy[i] = dialFrom(t, "127.0.0.2", f.http)
	}
	waitFor(t, "3 connections", func() bool { return f.Stats().ActiveConns == 3 })
	if !closedWithin(dialFrom(t, "127.0.0.2", f.http), 2*time.Second) {
		t.Error("the client's 4th connection is open")
	}
	if s := f.Stats(); s.RejectedConns != 1 || s.ActiveConns != 3 {
		t.Errorf("stats %+v", s)
	}
	// Another client is served.
	c := newClient(t, f.http, "127.0.0.3", nil, false)
	if code, _ := get(t, c, "GET", "http://web.example.com/", nil); code != 200 {
		t.Errorf("another client: %d", code)
	}
	// The greedy client gets a place back when it closes one.
	greedy[0].Close()
	waitFor(t, "the place given back", func() bool { return f.Stats().ActiveConns == 3 })
	again := dialFrom(t, "127.0.0.2", f.http)
	if _, err := io.WriteString(again, "GET / HTTP/1.1\r\nHost: web.example.com\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(again); !strings.HasPrefix(string(b), "HTTP/1.1 200 OK") {
		t.Errorf("the greedy client's new connection: %q", b)
	}

	// 127.0.0.2 holds 2, 127.0.0.3 1 kept alive: 5 in all with two more.
	waitFor(t, "3 connections", func() bool { return f.Stats().ActiveConns == 3 })
	dialFrom(t, "127.0.0.4", f.http)
	dialFrom(t, "127.0.0.4", f.http)
	waitFor(t, "5 connections", func() bool { return f.Stats().ActiveConns == 5 })
	if !closedWithin(dialFrom(t, "127.0.0.5", f.http), 2*time.Second) {
		t.Error("a connection over MaxConns is open")
	}
	if s := f.Stats(); s.RejectedConns != 2 {
		t.Errorf("RejectedConns %d, want 2", s.RejectedConns)
	}
}

// TestNewErrors: a port that cannot be opened fails New, naming address
// and port; a Dialer is required to serve.
func TestNewErrors(t *testing.T) {
	checkLeaks(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ap := netip.MustParseAddrPort(busy.Addr().String())
	_, err = ingress.New(ingress.Options{Address: ap.Addr(), HTTPSPort: ap.Port(), Dialer: new(nopDialer)})
	if err == nil || !strings.Contains(err.Error(), "HTTPS on "+ap.String()) {
		t.Errorf("New on a port in use: %v", err)
	}
	_, err = ingress.New(ingress.Options{HTTPPort: 8080, Dialer: new(nopDialer)})
	if err == nil || !strings.Contains(err.Error(), "no address") {
		t.Errorf("New without address: %v", err)
	}
	_, err = ingress.New(ingress.Options{Address: ap.Addr(), HTTPPort: ap.Port() + 1})
	if err == nil || !strings.Contains(err.Error(), "Dialer is required") {
		t.Errorf("New without Dialer: %v", err)
	}

	// With a free port it listens on Address.
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	port := netip.MustParseAddrPort(free.Addr().String()).Port()
	free.Close()
	c, err := ingress.New(ingress.Options{Address: ap.Addr(), HTTPPort: port, Dialer: new(nopDialer)})
	if err != nil {
		t.Skipf("the free port was taken meanwhile: %v", err)
	}
	defer c.Close()
	if got := c.HTTPAddr(); got != netip.AddrPortFrom(ap.Addr(), port) || c.HTTPSAddr().IsValid() {
		t.Errorf("HTTPAddr %v HTTPSAddr %v", got, c.HTTPSAddr())
	}
}

type nopDialer struct{}

func (nopDialer) DialContext(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("no")
}

// BenchmarkSlowloris: the timing TestSlowloris leaves out. While 50 clients dribble their
// headers a byte every 50 ms, each iteration is a request of a well-behaved client (ns/op is
// its latency); close/timeout is how long the server took to close a slow client, as a multiple
// of ReadHeaderTimeout (goal: about 1).
func BenchmarkSlowloris(b *testing.B) {
	const timeout = 300 * time.Millisecond
	f := newFixture(b, ingress.Options{ReadHeaderTimeout: timeout})
	f.serve(b, "web.example.com", f.pod(b, 1, echoHandler("web")))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var closedAfter []time.Duration
	start := time.Now()
	for range 50 {
		conn := dialFrom(b, "127.0.0.2", f.http)
		wg.Go(func() {
			req := "GET / HTTP/1.1\r\nHost: web.example.com\r\nX-Slow: " + strings.Repeat("x", 200) + "\r\n\r\n"
			for j := range len(req) {
				if _, err := conn.Write([]byte{req[j]}); err != nil || closedWithin(conn, 50*time.Millisecond) {
					break
				}
			}
			mu.Lock()
			closedAfter = append(closedAfter, time.Since(start))
			mu.Unlock()
		})
	}
	c := newClient(b, f.http, "127.0.0.3", nil, false)
	for b.Loop() {
		if code, body := get(b, c, "GET", "http://web.example.com/", nil); code != 200 {
			b.Fatalf("%d %s", code, body)
		}
	}
	wg.Wait()
	var worst time.Duration
	for _, d := range closedAfter {
		worst = max(worst, d)
	}
	b.ReportMetric(float64(worst)/float64(timeout), "close/timeout")
}
