package ingress_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/podnet/podnet/ingress"
	"github.com/podnet/podnet/ingress/ingresstest"
)

// fixture is a Controller serving HTTP and HTTPS on 127.0.0.1, whose
// "pods" are HTTP servers on 127.0.0.1 reached through a MapDialer.
type fixture struct {
	*ingress.Controller
	dialer *ingresstest.MapDialer
	http   string // the Controller's HTTP address
	https  string
}

func newFixture(t testing.TB, opts ingress.Options) *fixture {
	t.Helper()
	checkLeaks(t)
	d := &ingresstest.MapDialer{}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.HTTPListener, opts.HTTPSListener, opts.Dialer = hl, sl, d
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	c, err := ingress.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &fixture{Controller: c, dialer: d, http: c.HTTPAddr().String(), https: c.HTTPSAddr().String()}
}

// pod serves h as the pod of podAddr(i) and returns that address.
func (f *fixture) pod(t testing.TB, i int, h http.Handler) netip.AddrPort {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	f.dialer.Map(podAddr(i), srv.Listener.Addr().String())
	return podAddr(i)
}

// serve routes host/ (Prefix) to the Service ns/name port 80 with eps.
func (f *fixture) serve(t testing.TB, host string, eps ...netip.AddrPort) {
	t.Helper()
	mustNoProblems(t, f.Update(ingress.Config{
		Ingresses: []*networkingv1.Ingress{mkIngress("default", "web", 0, networkingv1.IngressSpec{
			Rules: []networkingv1.IngressRule{rule(host, path("/", prefix, "web", "80"))},
		})},
		Services: []ingress.Service{svc("default", "web", 80, eps...)},
	}))
}

// echo is what echoHandler answers.
type echo struct {
	Pod    string
	Proto  string
	Host   string
	URI    string
	Header http.Header
	Body   string
}

// echoHandler answers every request with its own description as JSON.
func echoHandler(pod string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echo{Pod: pod, Proto: r.Proto, Host: r.Host, URI: r.RequestURI, Header: r.Header, Body: string(body)})
	})
}

// newClient returns a client that sends every request to addr (whatever
// the URL's host) from the address src, over TLS with tlsConf if it is set
// (HTTP/2 offered unless h1only).
func newClient(t testing.TB, addr, src string, tlsConf *tls.Config, h1only bool) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr := &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
		TLSClientConfig:   tlsConf,
		ForceAttemptHTTP2: tlsConf != nil && !h1only,
	}
	if h1only {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP1(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get sends a request and returns the status and body.
func get(t testing.TB, c *http.Client, method, url string, body io.Reader, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return res.StatusCode, string(b)
}

func decodeEcho(t testing.TB, body string) echo {
	t.Helper()
	var e echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("not an echo: %q: %v", body, err)
	}
	return e
}
