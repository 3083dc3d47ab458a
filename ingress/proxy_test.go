package ingress_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/podnet/podnet/ingress"
)

// TestForwardedHeaders: the backend gets the client's Host unchanged and
// X-Forwarded-* and X-Real-IP set by the controller, whatever the client
// claimed, and no hop-by-hop header.
func TestForwardedHeaders(t *testing.T) {
	f := newFixture(t, ingress.Options{})
	f.serve(t, "web.example.com", f.pod(t, 1, echoHandler("web-1")))
	c := newClient(t, f.http, "127.0.0.3", nil, false)
	code, body := get(t, c, "GET", "http://web.example.com/a/b?x=1&y=2", nil,
		"X-Forwarded-For", "203.0.113.7",
		"X-Forwarded-Proto", "https",
		"X-Forwarded-Host", "evil.example.com",
		"X-Forwarded-Port", "1",
		"X-Real-IP", "203.0.113.8",
		"Forwarded", "for=203.0.113.9",
		"Connection", "X-Hop",
		"X-Hop", "1",
	)
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	e := decodeEcho(t, body)
	_, port, _ := net.SplitHostPort(f.http)
	for h, want := range map[string]string{
		"X-Forwarded-For":   "203.0.113.7, 127.0.0.3",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "web.example.com",
		"X-Forwarded-Port":  port,
		"X-Real-Ip":         "127.0.0.3",
		"Forwarded":         "",
		"X-Hop":             "",
	} {
		if got := strings.Join(e.Header[h], "|"); got != want {
			t.Errorf("backend got %s %q, want %q", h, got, want)
		}
	}
	if e.Host != "web.example.com" || e.URI != "/a/b?x=1&y=2" || e.Proto != "HTTP/1.1" {
		t.Errorf("backend got Host %q URI %q proto %s", e.Host, e.URI, e.Proto)
	}
}

// TestNotFoundAndUnavailable: 404 when nothing matches, 503 with the reason
// when the Service, its port or a ready endpoint is missing.
func TestNotFoundAndUnavailable(t *testing.T) {
	f := newFixture(t, ingress.Options{})
	mustNoProblems(t, f.Update(ingress.Config{
		Ingresses: []*networkingv1.Ingress{mkIngress("default", "web", 0, networkingv1.IngressSpec{
			Rules: []networkingv1.IngressRule{rule("web.example.com",
				path("/empty", prefix, "empty", "80"),
				path("/missing", prefix, "missing", "80"),
				path("/noport", prefix, "empty", "8080"),
				path("/noname", prefix, "empty", "grpc"),
			)},
		})},
		Services: []ingress.Service{svc("default", "empty", 80)},
	}))
	c := newClient(t, f.http, "127.0.0.1", nil, false)
	for _, tc := range []struct {
		url  string
		code int
		body string
	}{
		{"http://web.example.com/other", 404, "404 page not found: no Ingress rule for host web.example.com path /other\n"},
		{"http://other.example.com:8080/", 404, "404 page not found: no Ingress rule for host other.example.com path /\n"},
		{"http://web.example.com/empty", 503, "503 Service Unavailable: no ready endpoint for default/empty:80\n"},
		{"http://web.example.com/missing/x", 503, "503 Service Unavailable: Service default/missing not found\n"},
		{"http://web.example.com/noport", 503, "503 Service Unavailable: Service default/empty has no port 8080\n"},
		{"http://web.example.com/noname", 503, "503 Service Unavailable: Service default/empty has no port grpc\n"},
	} {
		if code, body := get(t, c, "GET", tc.url, nil); code != tc.code || body != tc.body {
			t.Errorf("GET %s: %d %q, want %d %q", tc.url, code, body, tc.code, tc.body)
		}
	}
	s := f.Stats()
	if s.NoRoute != 2 || s.NoEndpoint != 4 || s.Responses[4] != 2 || s.Responses[5] != 4 {
		t.Errorf("stats %+v", s)
	}
}

// TestRoundRobinAndRetry: requests take the ready endpoints in turn; a
// refused connection is retried once on the next endpoint for GET and for
// PUT with its body, never for POST.
func TestRoundRobinAndRetry(t *testing.T) {
	f := newFixture(t, ingress.Options{})
	a, b := f.pod(t, 1, echoHandler("a")), f.pod(t, 2, echoHandler("b"))
	f.serve(t, "web.example.com", a, b)
	c := newClient(t, f.http, "127.0.0.1", nil, false)
	var pods []string
	for range 6 {
		_, body := get(t, c, "GET", "http://web.example.com/", nil)
		pods = append(pods, decodeEcho(t, body).Pod)
	}
	if got := strings.Join(pods, ","); got != "a,b,a,b,a,b" {
		t.Errorf("round-robin: %s", got)
	}

	refused := podAddr(3) // not mapped: the dial is refused
	f.serve(t, "web.example.com", refused, b)
	for i := range 6 {
		code, body := get(t, c, "GET", "http://web.example.com/", nil)
		if code != 200 || decodeEcho(t, body).Pod != "b" {
			t.Errorf("GET %d: %d %s", i, code, body)
		}
		code, body = get(t, c, "PUT", "http://web.example.com/", strings.NewReader("payload"))
		if code != 200 || decodeEcho(t, body).Body != "payload" {
			t.Errorf("PUT %d: %d %s", i, code, body)
		}
	}
	if s, d := f.Stats(), f.dialer.Dials(refused); s.Retries != 6 || d != 6 || s.UpstreamErrors != 0 {
		t.Errorf("retries %d, dials to the refusing endpoint %d, upstream errors %d; want 6, 6, 0", s.Retries, d, s.UpstreamErrors)
	}
	codes := map[int]int{}
	for range 4 {
		code, body := get(t, c, "POST", "http://web.example.com/", strings.NewReader("order"))
		codes[code]++
		if code == 502 && body != "502 Bad Gateway: no answer from default/web:80\n" {
			t.Errorf("502 body %q", body)
		}
	}
	if codes[200] != 2 || codes[502] != 2 {
		t.Errorf("POST answers %v, want 2 of 200 and 2 of 502 (no retry)", codes)
	}

	f.serve(t, "web.example.com", refused) // nowhere else to go
	if code, _ := get(t, c, "GET", "http://web.example.com/", nil); code != 502 {
		t.Errorf("GET with the only endpoint refusing: %d, want 502", code)
	}
	if s := f.Stats(); s.Retries != 6 || s.UpstreamErrors != 3 {
		t.Errorf("retries %d upstream errors %d, want 6 and 3", s.Retries, s.UpstreamErrors)
	}
}

// TestUpstreamTimeout: a backend that does not answer in
// UpstreamHeaderTimeout gets 504.
func TestUpstreamTimeout(t *testing.T) {
	f := newFixture(t, ingress.Options{UpstreamHeaderTimeout: 100 * time.Millisecond})
	f.serve(t, "web.example.com", f.pod(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})))
	c := newClient(t, f.http, "127.0.0.1", nil, false)
	if code, body := get(t, c, "GET", "http://web.example.com/", nil); code != 504 || body != "504 Gateway Timeout: no answer in time from default/web:80\n" {
		t.Errorf("%d %q", code, body)
	}
}

// TestWebSocket: an upgrade passes through and both directions flow.
func TestWebSocket(t *testing.T) {
	f := newFixture(t, ingress.Options{})
	f.serve(t, "echo.example.com", f.pod(t, 1, wsEcho))
	ws := dialWebSocket(t, f.http)
	defer ws.Close()
	for _, msg := range []string{"hello", strings.Repeat("x", 100000), "bye"} {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			t.Fatal(err)
		}
		if got != msg {
			t.Errorf("echo of %d bytes: got %d bytes", len(msg), len(got))
		}
	}
	if s := f.Stats(); s.Responses[1] != 1 {
		t.Errorf("101 responses: %d", s.Responses[1])
	}
}

// wsEcho answers each WebSocket message with the same message.
var wsEcho = websocket.Handler(func(ws *websocket.Conn) {
	for {
		var msg string
		if websocket.Message.Receive(ws, &msg) != nil || websocket.Message.Send(ws, msg) != nil {
			return
		}
	}
})

func dialWebSocket(t testing.TB, addr string) *websocket.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := websocket.NewConfig("ws://echo.example.com/ws", "http://echo.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(cfg, conn)
	if err != nil {
		conn.Close()
		t.Fatalf("websocket handshake through the proxy: %v", err)
	}
	return ws
}

// streamer writes "first", flushes, and writes "last" only when released:
// a client that needs "first" before release proves the proxy streams.
func streamer(release <-chan struct{}, contentType string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "last\n")
	})
}

// TestStreaming: a chunked response and an event stream reach the client
// as they are written, over HTTP/1.1 and HTTP/2.
func TestStreaming(t *testing.T) {
	ca := newCA(t)
	for _, tc := range []struct {
		name, contentType string
		tls               bool
	}{
		{"chunked", "text/plain", false},
		{"event-stream", "text/event-stream", false},
		{"chunked-h2", "text/plain", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, ingress.Options{})
			release := make(chan struct{})
			crt, key := ca.issue(t, "stream.example.com")
			mustNoProblems(t, f.Update(ingress.Config{
				Ingresses: []*networkingv1.Ingress{mkIngress("default", "web", 0, networkingv1.IngressSpec{
					TLS:   []networkingv1.IngressTLS{{Hosts: []string{"stream.example.com"}, SecretName: "tls"}},
					Rules: []networkingv1.IngressRule{rule("stream.example.com", path("/", prefix, "web", "80"))},
				})},
				Secrets:  []*corev1.Secret{tlsSecret("default", "tls", crt, key)},
				Services: []ingress.Service{svc("default", "web", 80, f.pod(t, 1, streamer(release, tc.contentType)))},
			}))
			c, url := newClient(t, f.http, "127.0.0.1", nil, false), "http://stream.example.com/"
			if tc.tls {
				c, url = newClient(t, f.https, "127.0.0.1", ca.clientConfig(""), false), "https://stream.example.com/"
			}
			res, err := c.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if tc.tls && res.ProtoMajor != 2 {
				t.Errorf("proto %s, want HTTP/2", res.Proto)
			}
			br := bufio.NewReader(res.Body)
			first, err := br.ReadString('\n')
			if err != nil || first != "first\n" {
				t.Fatalf("first chunk: %q %v", first, err)
			}
			close(release) // only now is "last" written
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != "last\n" {
				t.Fatalf("rest: %q %v", rest, err)
			}
		})
	}
}

// TestUpdateDuringRequest: a request in flight completes on its backend
// while Update removes its route; the next one gets 404.
func TestUpdateDuringRequest(t *testing.T) {
	f := newFixture(t, ingress.Options{})
	arrived, release := make(chan struct{}), make(chan struct{})
	f.serve(t, "web.example.com", f.pod(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "done")
	})))
	c := newClient(t, f.http, "127.0.0.1", nil, false)
	type result struct {
		code int
		body string
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.Get("http://web.example.com/")
		if err != nil {
			done <- result{0, err.Error()}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		done <- result{res.StatusCode, string(b)}
	}()
	<-arrived
	mustNoProblems(t, f.Update(ingress.Config{}))
	close(release)
	if r := <-done; r.code != 200 || r.body != "done" {
		t.Errorf("request in flight across Update: %d %q", r.code, r.body)
	}
	if code, _ := get(t, c, "GET", "http://web.example.com/", nil); code != 404 {
		t.Errorf("after Update: %d, want 404", code)
	}
}

// TestBodyLimit: a body over MaxBodyBytes gets 413, announced by
// Content-Length (the backend is not asked) or chunked.
func TestBodyLimit(t *testing.T) {
	f := newFixture(t, ingress.Options{MaxBodyBytes: 1000})
	var mu sync.Mutex
	var seen []int
	f.serve(t, "web.example.com", f.pod(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen = append(seen, int(n))
		mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprint(w, n)
	})))
	c := newClient(t, f.http, "127.0.0.1", nil, false)
	if code, body := get(t, c, "POST", "http://web.example.com/", strings.NewReader(strings.Repeat("x", 1000))); code != 200 || body != "1000" {
		t.Errorf("1000 bytes: %d %q", code, body)
	}
	if code, body := get(t, c, "POST", "http://web.example.com/", strings.NewReader(strings.Repeat("x", 1001))); code != 413 {
		t.Errorf("1001 bytes with Content-Length: %d %q", code, body)
	}
	mu.Lock()
	if len(seen) != 1 {
		t.Errorf("the backend saw %d requests, want 1 (the oversized one must not reach it)", len(seen))
	}
	mu.Unlock()
	req, _ := http.NewRequest("POST", "http://web.example.com/", io.MultiReader(strings.NewReader(strings.Repeat("x", 100000))))
	req.ContentLength = -1 // chunked
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 413 {
		t.Errorf("chunked 100000 bytes: %d %q", res.StatusCode, b)
	}
	if s := f.Stats(); s.TooLarge != 2 {
		t.Errorf("TooLarge %d, want 2", s.TooLarge)
	}
}

// TestHeaderLimit: headers over MaxHeaderBytes get 431.
func TestHeaderLimit(t *testing.T) {
	f := newFixture(t, ingress.Options{MaxHeaderBytes: 4096})
	f.serve(t, "web.example.com", f.pod(t, 1, echoHandler("a")))
	c := newClient(t, f.http, "127.0.0.1", nil, false)
	if code, _ := get(t, c, "GET", "http://web.example.com/", nil, "X-Big", strings.Repeat("x", 3000)); code != 200 {
		t.Errorf("3000-byte header: %d", code)
	}
	// net/http allows 4 KiB of slack over MaxHeaderBytes, and somewhat more
	// on a connection kept alive.
	req, _ := http.NewRequest("GET", "http://web.example.com/", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 20000))
	res, err := c.Do(req) // the server closes the connection with part of the request unread: the body may be cut
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 431 {
		t.Errorf("20000-byte header: %d, want 431", res.StatusCode)
	}
}

// TestClose: Close ends requests in flight, WebSockets and idle
// connections, and leaves no goroutine behind.
func TestClose(t *testing.T) {
	f := newFixture(t, ingress.Options{})
	release := make(chan struct{})
	defer close(release)
	mux := http.NewServeMux()
	mux.Handle("/ws", wsEcho)
	mux.Handle("/", streamer(release, ""))
	mustNoProblems(t, f.Update(ingress.Config{
		Ingresses: []*networkingv1.Ingress{mkIngress("default", "web", 0, networkingv1.IngressSpec{
			Rules: []networkingv1.IngressRule{rule("", path("/", prefix, "web", "80"))},
		})},
		Services: []ingress.Service{svc("default", "web", 80, f.pod(t, 1, mux))},
	}))
	c := newClient(t, f.http, "127.0.0.1", nil, false)
	ws := dialWebSocket(t, f.http)
	defer ws.Close()
	res, err := c.Get("http://stream.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	if first, err := br.ReadString('\n'); err != nil || first != "first\n" {
		t.Fatalf("first chunk: %q %v", first, err)
	}
	idle, err := net.Dial("tcp", f.http)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	waitFor(t, "3 active connections", func() bool { return f.Stats().ActiveConns == 3 })

	closed := make(chan error, 1)
	go func() { closed <- f.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := io.ReadAll(br); err == nil {
		t.Error("the stream in flight ended cleanly, want an error")
	}
	var msg string
	if err := websocket.Message.Receive(ws, &msg); err == nil {
		t.Error("the WebSocket is still open")
	}
	idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("idle connection: read %v, want it closed", err)
	}
	if s := f.Stats(); s.ActiveConns != 0 {
		t.Errorf("ActiveConns %d after Close", s.ActiveConns)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
