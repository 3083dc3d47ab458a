package ingress_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/podnet/podnet/ingress"
	"github.com/podnet/podnet/ingress/ingresstest"
)

// rawClient writes requests byte for byte to the plain-HTTP listener and
// reads the responses, so that a test controls pipelining, line endings and
// connection reuse.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, conn: conn, br: bufio.NewReader(conn)}
}

func (r *rawClient) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.conn, s); err != nil {
		r.t.Fatal(err)
	}
}

// read reads the response to a request of method and its whole body.
func (r *rawClient) read(method string) (*http.Response, string) {
	r.t.Helper()
	res, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		r.t.Fatalf("read body: %v", err)
	}
	res.Body.Close()
	return res, string(b)
}

const host = "Host: web.example.com\r\n"

// TestFastHandoff: on one connection, requests the fast server takes and
// the first it does not (a body) are answered in order, the latter and the
// rest by net/http; an upgrade after a fast request works too.
func TestFastHandoff(t *testing.T) {
	f := newFixture(t, ingress.Options{})
	f.serve(t, "web.example.com", f.pod(t, 1, echoHandler("web-1")))
	rc := dialRaw(t, f.http)
	rc.send("GET /a HTTP/1.1\r\n" + host + "\r\n")
	rc.send("GET /b HTTP/1.1\r\n" + host + "\r\n" + // pipelined: one write
		"POST /c HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello" +
		"GET /d HTTP/1.1\r\n" + host + "\r\n")
	for _, want := range []struct{ uri, body string }{{"/a", ""}, {"/b", ""}, {"/c", "hello"}, {"/d", ""}} {
		res, body := rc.read("GET")
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d %q", want.uri, res.StatusCode, body)
		}
		e := decodeEcho(t, body)
		if e.URI != want.uri || e.Body != want.body || e.Header.Get("X-Forwarded-For") != "127.0.0.1" {
			t.Errorf("%s: backend got URI %q body %q X-Forwarded-For %q", want.uri, e.URI, e.Body, e.Header.Get("X-Forwarded-For"))
		}
	}

	f.serve(t, "echo.example.com", f.pod(t, 2, wsEcho))
	rc = dialRaw(t, f.http)
	rc.send("GET / HTTP/1.1\r\nHost: echo.example.com\r\n\r\n")
	if res, _ := rc.read("GET"); res.StatusCode != 400 { // the WebSocket handler refuses a plain GET
		t.Fatalf("plain GET to the WebSocket pod: %d", res.StatusCode)
	}
	if rc.br.Buffered() != 0 {
		t.Fatalf("%d stray bytes after the response", rc.br.Buffered())
	}
	cfg, _ := websocket.NewConfig("ws://echo.example.com/ws", "http://echo.example.com/")
	ws, err := websocket.NewClient(cfg, rc.conn)
	if err != nil {
		t.Fatalf("upgrade after a fast request: %v", err)
	}
	var got string
	if err := websocket.Message.Send(ws, "hi"); err != nil {
		t.Fatal(err)
	}
	if err := websocket.Message.Receive(ws, &got); err != nil || got != "hi" {
		t.Errorf("echo: %q %v", got, err)
	}
}

// TestFastRequests: what the fast server answers itself, and what it hands
// to net/http (whose answers are the standard ones).
func TestFastRequests(t *testing.T) {
	f := newFixture(t, ingress.Options{})
	f.serve(t, "web.example.com", f.pod(t, 1, echoHandler("web-1")))
	for _, tc := range []struct {
		name, req string
		code      int
		uri       string // what the backend got, if it was asked
	}{
		{"bare LF", "GET /lf HTTP/1.1\nHost: web.example.com\n\n", 200, "/lf"},
		{"HTTP/1.0", "GET /old HTTP/1.0\r\n" + host + "\r\n", 200, "/old"},
		{"absolute form", "GET http://web.example.com/abs HTTP/1.1\r\nHost: other.example.com\r\n\r\n", 200, "/abs"},
		{"DELETE", "DELETE /x HTTP/1.1\r\n" + host + "\r\n", 200, "/x"},
		{"empty POST", "POST /p HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n", 200, "/p"},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400, ""},
		{"bad header name", "GET / HTTP/1.1\r\n" + host + "Bad Name: x\r\n\r\n", 400, ""},
		{"bad request line", "GET /\r\n" + host + "\r\n", 400, ""},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 404, ""}, // net/http's answer without h2c
		{"no rule", "GET /x HTTP/1.1\r\nHost: nothing.example.com\r\n\r\n", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, f.http)
			rc.send(tc.req)
			res, body := rc.read("GET")
			if res.StatusCode != tc.code {
				t.Fatalf("%d %q, want %d", res.StatusCode, body, tc.code)
			}
			if tc.uri != "" {
				if e := decodeEcho(t, body); e.URI != tc.uri {
					t.Errorf("backend got URI %q, want %q", e.URI, tc.uri)
				}
			}
		})
	}

	// Connection: close is answered with it, and the connection closed.
	rc := dialRaw(t, f.http)
	rc.send("GET / HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n")
	res, _ := rc.read("GET")
	if res.StatusCode != 200 || !res.Close {
		t.Errorf("Connection: close: %d, close %v", res.StatusCode, res.Close)
	}
	if n, err := rc.br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close: read %q %v, want EOF", n, err)
	}
}

// TestFastResponses: how backend responses are framed for the client:
// HEAD, 204 and 304 without a body; a response of unknown length chunked,
// with its trailers; hop-by-hop headers dropped; a Date added if missing.
func TestFastResponses(t *testing.T) {
	f := newFixture(t, ingress.Options{})
	mux := http.NewServeMux()
	mux.HandleFunc("/len", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	})
	mux.HandleFunc("/204", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	mux.HandleFunc("/304", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(304) })
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "ab")
		w.(http.Flusher).Flush()
		io.WriteString(w, "cd")
		w.Header().Set("X-Sum", "4")
	})
	mux.HandleFunc("/hop", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil // net/http's server: no Date at all
		w.Header().Set("Connection", "X-Private")
		w.Header().Set("X-Private", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		io.WriteString(w, "ok")
	})
	f.serve(t, "web.example.com", f.pod(t, 1, mux))
	rc := dialRaw(t, f.http) // all on one connection: a framing error would show in the next response

	rc.send("HEAD /len HTTP/1.1\r\n" + host + "\r\n")
	if res, body := rc.read("HEAD"); res.StatusCode != 200 || res.ContentLength != 5 || body != "" {
		t.Errorf("HEAD: %d length %d body %q", res.StatusCode, res.ContentLength, body)
	}
	rc.send("GET /len HTTP/1.1\r\n" + host + "\r\n")
	if res, body := rc.read("GET"); res.ContentLength != 5 || body != "hello" {
		t.Errorf("GET: length %d body %q", res.ContentLength, body)
	}
	for _, code := range []string{"204", "304"} {
		rc.send("GET /" + code + " HTTP/1.1\r\n" + host + "\r\n")
		if res, body := rc.read("GET"); res.Status[:3] != code || body != "" || res.Header["Content-Length"] != nil || res.TransferEncoding != nil {
			t.Errorf("%s: %s body %q header %v", code, res.Status, body, res.Header)
		}
	}
	rc.send("GET /stream HTTP/1.1\r\n" + host + "\r\n")
	res, body := rc.read("GET")
	if body != "abcd" || len(res.TransferEncoding) != 1 || res.TransferEncoding[0] != "chunked" || res.Trailer.Get("X-Sum") != "4" {
		t.Errorf("stream: body %q transfer-encoding %v trailer %v", body, res.TransferEncoding, res.Trailer)
	}
	rc.send("GET /hop HTTP/1.1\r\n" + host + "\r\n")
	res, body = rc.read("GET")
	if body != "ok" || res.Header["X-Private"] != nil || res.Header["Keep-Alive"] != nil || res.Header["Connection"] != nil {
		t.Errorf("hop-by-hop headers passed: %v", res.Header)
	}
	if _, err := http.ParseTime(res.Header.Get("Date")); err != nil {
		t.Errorf("Date %q: %v", res.Header.Get("Date"), err)
	}
}

// TestFastBackendConnections: a backend that closes each connection after
// one keep-alive response never costs the client an error (the next
// request finds the connection closed, or fails on it before any answer,
// and goes on a new one); one whose response ends with the connection is
// passed on chunked; garbage and endless headers are 502.
func TestFastBackendConnections(t *testing.T) {
	t.Run("closed after each response", func(t *testing.T) {
		f := newFixture(t, ingress.Options{})
		counts := scriptedBackend(t, f, 1, func(*http.Request) reply {
			return reply{data: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", close: true}
		})
		rc := dialRaw(t, f.http)
		for i := range 5 {
			rc.send("GET / HTTP/1.1\r\n" + host + "\r\n")
			if res, body := rc.read("GET"); res.StatusCode != 200 || body != "ok" {
				t.Fatalf("request %d: %d %q", i, res.StatusCode, body)
			}
		}
		if n := counts.conns.Load(); n != 5 {
			t.Errorf("backend connections: %d, want 5", n)
		}
		if s := f.Stats(); s.UpstreamErrors != 0 {
			t.Errorf("upstream errors: %d", s.UpstreamErrors)
		}
	})
	t.Run("close-delimited", func(t *testing.T) {
		f := newFixture(t, ingress.Options{})
		scriptedBackend(t, f, 1, func(*http.Request) reply {
			return reply{data: "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", close: true}
		})
		rc := dialRaw(t, f.http)
		for range 2 {
			rc.send("GET / HTTP/1.1\r\n" + host + "\r\n")
			if res, body := rc.read("GET"); res.StatusCode != 200 || body != "until the end" || len(res.TransferEncoding) == 0 {
				t.Fatalf("%d %q transfer-encoding %v", res.StatusCode, body, res.TransferEncoding)
			}
		}
	})
	for name, answer := range map[string]string{
		"garbage":         "garbage\r\n\r\n",
		"endless headers": "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("x", 1000)+"\r\n", 1100) + "\r\n",
		"cut body":        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, ingress.Options{})
			scriptedBackend(t, f, 1, func(*http.Request) reply { return reply{data: answer, close: true} })
			rc := dialRaw(t, f.http)
			rc.send("GET / HTTP/1.1\r\n" + host + "\r\n")
			if name == "cut body" {
				// The headers went out before the body was cut: the client gets
				// what came, and the connection ends.
				res, err := http.ReadResponse(rc.br, nil)
				if err != nil {
					t.Fatal(err)
				}
				if b, err := io.ReadAll(res.Body); err == nil || string(b) != "short" {
					t.Errorf("cut body: %q %v, want \"short\" and an error", b, err)
				}
				return
			}
			if res, body := rc.read("GET"); res.StatusCode != 502 {
				t.Errorf("%d %q, want 502", res.StatusCode, body)
			}
		})
	}
}

// TestFastClientLeaves: a client that leaves while its request waits on the
// backend ends that request: the backend sees its connection closed.
func TestFastClientLeaves(t *testing.T) {
	f := newFixture(t, ingress.Options{})
	gone := make(chan struct{})
	f.serve(t, "web.example.com", f.pod(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			close(gone)
		case <-time.After(10 * time.Second):
		}
	})))
	rc := dialRaw(t, f.http)
	rc.send("GET / HTTP/1.1\r\n" + host + "\r\n")
	time.Sleep(100 * time.Millisecond) // let the request reach the backend
	rc.conn.Close()
	select {
	case <-gone:
	case <-time.After(8 * time.Second):
		t.Fatal("the backend's request was not ended after the client left")
	}
	for f.Stats().Aborted != 1 {
		time.Sleep(10 * time.Millisecond) // the count follows the close; the test's deadline bounds this
	}
}

// TestFastTLS: over TLS with HTTP/1.1, the fast server's requests and those
// it hands to net/http (a body) both tell the backend https and the HTTPS
// port; HTTP/2 connections are net/http's from the start.
func TestFastTLS(t *testing.T) {
	ca := newCA(t)
	f := newFixture(t, ingress.Options{})
	crt, key := ca.issue(t, "web.example.com")
	mustNoProblems(t, f.Update(ingress.Config{
		Ingresses: []*networkingv1.Ingress{mkIngress("default", "web", 0, networkingv1.IngressSpec{
			TLS:   []networkingv1.IngressTLS{{Hosts: []string{"web.example.com"}, SecretName: "tls"}},
			Rules: []networkingv1.IngressRule{rule("web.example.com", path("/", prefix, "web", "80"))},
		})},
		Secrets:  []*corev1.Secret{tlsSecret("default", "tls", crt, key)},
		Services: []ingress.Service{svc("default", "web", 80, f.pod(t, 1, echoHandler("web-1")))},
	}))
	_, port, _ := net.SplitHostPort(f.https)
	for _, h1only := range []bool{true, false} {
		c := newClient(t, f.https, "127.0.0.1", ca.clientConfig(""), h1only)
		for _, req := range []struct{ method, body string }{{"GET", ""}, {"POST", "hello"}, {"GET", ""}} {
			var body io.Reader
			if req.body != "" {
				body = strings.NewReader(req.body)
			}
			code, out := get(t, c, req.method, "https://web.example.com/", body)
			if code != 200 {
				t.Fatalf("h1only %v %s: %d %q", h1only, req.method, code, out)
			}
			e := decodeEcho(t, out)
			if e.Header.Get("X-Forwarded-Proto") != "https" || e.Header.Get("X-Forwarded-Port") != port || e.Body != req.body {
				t.Errorf("h1only %v %s: backend got proto %q port %q body %q", h1only, req.method,
					e.Header.Get("X-Forwarded-Proto"), e.Header.Get("X-Forwarded-Port"), e.Body)
			}
		}
	}
}

// slowFirst routes web.example.com to a pod that echoes every request but
// /slow, which it answers "slow" after 700 ms (past the fast server's
// watch delay); it returns a connection on which GET /slow was answered.
func slowFirst(t *testing.T, f *fixture) *rawClient {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/", echoHandler("web-1"))
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(700 * time.Millisecond)
		io.WriteString(w, "slow")
	})
	f.serve(t, "web.example.com", f.pod(t, 1, mux))
	rc := dialRaw(t, f.http)
	rc.send("GET /slow HTTP/1.1\r\n" + host + "\r\n")
	if res, body := rc.read("GET"); res.StatusCode != 200 || body != "slow" {
		t.Fatalf("slow: %d %q", res.StatusCode, body)
	}
	return rc
}

// TestFastSlowRequests: requests that take longer than the fast server
// waits before it watches the client (half a second) are answered, and the
// connection goes on, whether the client waits or has already sent its
// next request.
func TestFastSlowRequests(t *testing.T) {
	f := newFixture(t, ingress.Options{})
	rc := slowFirst(t, f)
	rc.send("GET /slow HTTP/1.1\r\n" + host + "\r\n" + "GET /after HTTP/1.1\r\n" + host + "\r\n")
	if res, body := rc.read("GET"); res.StatusCode != 200 || body != "slow" {
		t.Fatalf("slow, pipelined: %d %q", res.StatusCode, body)
	}
	for _, uri := range []string{"/after", "/last"} {
		if uri == "/last" {
			rc.send("GET /last HTTP/1.1\r\n" + host + "\r\n")
		}
		res, body := rc.read("GET")
		if res.StatusCode != 200 || decodeEcho(t, body).URI != uri {
			t.Fatalf("%s: %d %q", uri, res.StatusCode, body)
		}
	}
	if s := f.Stats(); s.Aborted != 0 {
		t.Errorf("aborted: %d", s.Aborted)
	}
}

// reply is what a scriptedBackend writes for a request: data, after
// delay; with close, it then closes the connection.
type reply struct {
	data  string
	delay time.Duration
	close bool
}

// backendCounts are a scriptedBackend's connections and requests so far.
type backendCounts struct{ conns, requests atomic.Int32 }

// scriptedBackend is the pod of podAddr(i), routed for web.example.com,
// which reads requests on kept-alive connections and answers each with the
// reply script gives for it.
func scriptedBackend(t testing.TB, f *fixture, i int, script func(*http.Request) reply) *backendCounts {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var counts backendCounts
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			counts.conns.Add(1)
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Go(func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					counts.requests.Add(1)
					r := script(req)
					time.Sleep(r.delay)
					if _, err := io.WriteString(conn, r.data); err != nil || r.close {
						return
					}
				}
			})
		}
	})
	f.dialer.Map(podAddr(i), ln.Addr().String())
	f.serve(t, "web.example.com", podAddr(i))
	return &counts
}

// TestFastBackendLeftovers: a backend connection with bytes after the end
// of a response (a 204 or a HEAD answered with a body) is not reused: those
// bytes never become the next request's response, another client's least
// of all.
func TestFastBackendLeftovers(t *testing.T) {
	f := newFixture(t, ingress.Options{})
	scriptedBackend(t, f, 1, func(req *http.Request) reply {
		switch {
		case req.URL.Path == "/204":
			return reply{data: "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned"}
		case req.Method == "HEAD":
			return reply{data: "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned"}
		}
		return reply{data: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal"}
	})
	for _, first := range []struct{ method, path string }{{"GET", "/204"}, {"HEAD", "/"}} {
		a := dialRaw(t, f.http)
		a.send(first.method + " " + first.path + " HTTP/1.1\r\n" + host + "\r\n")
		if res, body := a.read(first.method); res.StatusCode/100 != 2 || body != "" {
			t.Fatalf("%s %s: %d %q", first.method, first.path, res.StatusCode, body)
		}
		b := dialRaw(t, f.http) // another client
		b.send("GET / HTTP/1.1\r\n" + host + "\r\n")
		if res, body := b.read("GET"); res.StatusCode != 200 || body != "real" {
			t.Errorf("after %s %s, another client got %d %q, want its own answer", first.method, first.path, res.StatusCode, body)
		}
	}
}

// TestFastHeaderTimeoutNotRetried: a request whose backend does not answer
// within UpstreamHeaderTimeout on a reused connection gets 504 and is not
// sent again.
func TestFastHeaderTimeoutNotRetried(t *testing.T) {
	f := newFixture(t, ingress.Options{UpstreamHeaderTimeout: 200 * time.Millisecond})
	counts := scriptedBackend(t, f, 1, func(req *http.Request) reply {
		r := reply{data: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}
		if req.URL.Path == "/slow" {
			r.delay = time.Second
		}
		return r
	})
	rc := dialRaw(t, f.http)
	rc.send("GET / HTTP/1.1\r\n" + host + "\r\n") // the backend connection is then in the pool
	rc.read("GET")
	rc.send("GET /slow HTTP/1.1\r\n" + host + "\r\n")
	if res, body := rc.read("GET"); res.StatusCode != 504 {
		t.Errorf("slow backend: %d %q, want 504", res.StatusCode, body)
	}
	if got := counts.requests.Load(); got != 2 {
		t.Errorf("the backend got %d requests, want 2 (the slow one once)", got)
	}
}

// gonetListener gives connections whose read timeouts are not
// os.ErrDeadlineExceeded but a net.Error of their own, as gVisor's gonet
// connections report them (a listener on a node's stack).
type gonetListener struct{ net.Listener }

func (l gonetListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return gonetConn{c}, nil
}

type gonetConn struct{ net.Conn }

func (c gonetConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		err = &net.OpError{Op: "read", Net: "tcp", Err: gonetTimeout{}}
	}
	return n, err
}

type gonetTimeout struct{}

func (gonetTimeout) Error() string   { return "i/o timeout" }
func (gonetTimeout) Timeout() bool   { return true }
func (gonetTimeout) Temporary() bool { return true }

// TestFastWatchAnyTimeout: the end of the client watch (a read deadline in
// the past) is not taken for a client that left, whatever error the
// connection reports for it.
func TestFastWatchAnyTimeout(t *testing.T) {
	checkLeaks(t)
	d := &ingresstest.MapDialer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ingress.New(ingress.Options{HTTPListener: gonetListener{ln}, Dialer: d, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	f := &fixture{Controller: c, dialer: d, http: c.HTTPAddr().String()}
	rc := slowFirst(t, f)
	rc.send("GET /next HTTP/1.1\r\n" + host + "\r\n")
	if res, body := rc.read("GET"); res.StatusCode != 200 || decodeEcho(t, body).URI != "/next" {
		t.Errorf("the request after a slow one: %d %q", res.StatusCode, body)
	}
	if s := f.Stats(); s.Aborted != 0 {
		t.Errorf("aborted: %d", s.Aborted)
	}
}

// TestFastLongSlowHeaders: a client whose headers outgrow the fast server's buffer just before
// ReadHeaderTimeout, and then stall, is closed at that timeout: net/http, which gets the
// connection, does not start the headers' time again. The test checks the order of events, not a
// duration: half a timeout after the hand-over, a connection whose clock started again (at
// about one timeout from the start) would still be open; this one must be closed by then.
func TestFastLongSlowHeaders(t *testing.T) {
	const timeout = time.Second
	f := newFixture(t, ingress.Options{ReadHeaderTimeout: timeout})
	f.serve(t, "web.example.com", f.pod(t, 1, echoHandler("web")))
	conn := dialFrom(t, "127.0.0.2", f.http)
	req := "GET / HTTP/1.1\r\n" + host + "X-Long: " + strings.Repeat("x", 5000)
	conn.Write([]byte(req[:4000]))
	time.Sleep(timeout - 100*time.Millisecond)
	conn.Write([]byte(req[4000:4200])) // now over the buffer: handed to net/http
	time.Sleep(timeout / 2)
	// Closed (EOF or reset) at once, or still open (the read times out).
	if !closedWithin(conn, 10*time.Millisecond) {
		t.Error("still open half a timeout after the hand-over: net/http started ReadHeaderTimeout again")
	}
}

// TestEarlyHints: a backend's 103 reaches the client before the final
// response, on the fast server (GET) and on net/http's side (a POST).
func TestEarlyHints(t *testing.T) {
	f := newFixture(t, ingress.Options{})
	scriptedBackend(t, f, 1, func(*http.Request) reply {
		return reply{data: "HTTP/1.1 103 Early Hints\r\nLink: </site.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}
	})
	for _, req := range []string{
		"GET / HTTP/1.1\r\n" + host + "\r\n",
		"POST / HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi",
	} {
		rc := dialRaw(t, f.http)
		rc.send(req)
		res, _ := rc.read("GET")
		if res.StatusCode != 103 || res.Header.Get("Link") != "</site.css>; rel=preload" {
			t.Errorf("%.4s: first response %d %v, want the 103 with its Link", req, res.StatusCode, res.Header)
		}
		if res, body := rc.read("GET"); res.StatusCode != 200 || body != "ok" {
			t.Errorf("%.4s: final response %d %q", req, res.StatusCode, body)
		}
	}
}
