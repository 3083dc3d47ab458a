package ingress_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/podnet/podnet/ingress"
)

// hundredIngresses is a cluster of 100 Ingresses: 90 with a host of their
// own and four paths, 9 with a wildcard host, one without host.
func hundredIngresses() ingress.Config {
	var cfg ingress.Config
	for i := range 100 {
		name := fmt.Sprintf("app%d", i)
		var r networkingv1.IngressRule
		switch {
		case i < 90:
			r = rule(name+".example.com",
				path("/", prefix, name, "80"),
				path("/api", prefix, name+"-api", "80"),
				path(fmt.Sprintf("/api/v%d", i), exact, name+"-v", "80"),
				path("/static/", prefix, name+"-static", "http"))
		case i < 99:
			r = rule("*."+name+".example.com", path("/", prefix, name, "80"))
		default:
			r = rule("", path("/healthz", exact, name, "80"), path("/shared", prefix, name, "80"))
		}
		cfg.Ingresses = append(cfg.Ingresses, mkIngress("default", name, i, networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{r}}))
		for _, s := range []string{name, name + "-api", name + "-v", name + "-static"} {
			cfg.Services = append(cfg.Services, svc("default", s, 80, podAddr(i)))
		}
	}
	return cfg
}

// BenchmarkRoute is the lookup of every request, over 100 Ingresses, for a
// mix of requests: deep Prefix paths, Exact paths, a wildcard host, a
// fall-through to the rule without host, an upper-case Host with a port,
// and a 404.
func BenchmarkRoute(b *testing.B) {
	c := newRouter(b)
	mustNoProblems(b, c.Update(hundredIngresses()))
	reqs := []struct{ host, path string }{
		{"app7.example.com", "/api/users/123/orders"},
		{"app42.example.com", "/api/v42"},
		{"app3.example.com", "/static/css/site.css"},
		{"x.app95.example.com", "/index.html"},
		{"app10.example.com", "/"},
		{"unknown.example.org", "/shared/file"},
		{"App8.Example.com:8080", "/api"},
		{"unknown.example.org", "/nothing"},
	}
	for _, r := range reqs {
		if _, ok := c.Route(r.host, r.path); !ok && r.path != "/nothing" {
			b.Fatalf("%s%s: no route", r.host, r.path)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := reqs[i%len(reqs)]
		c.Route(r.host, r.path)
		i++
	}
}

// BenchmarkUpdate builds and swaps the table of 100 Ingresses.
func BenchmarkUpdate(b *testing.B) {
	c := newRouter(b)
	cfg := hundredIngresses()
	b.ReportAllocs()
	for b.Loop() {
		c.Update(cfg)
	}
}

// BenchmarkProxy is a GET through the controller to an in-process backend
// over kept-alive connections; BenchmarkDirect is the same GET without it,
// for comparison.
func BenchmarkProxy(b *testing.B) {
	f := newFixture(b, ingress.Options{})
	f.serve(b, "web.example.com", f.pod(b, 1, okHandler))
	benchGet(b, newClient(b, f.http, "127.0.0.1", nil, false), "http://web.example.com/")
}

// BenchmarkProxyPost is a POST of two bytes: a request with a body, which
// the fast server hands to net/http's server and ReverseProxy (so the
// connection stays with them): their cost, for comparison.
func BenchmarkProxyPost(b *testing.B) {
	f := newFixture(b, ingress.Options{})
	f.serve(b, "web.example.com", f.pod(b, 1, okHandler))
	benchPost(b, newClient(b, f.http, "127.0.0.1", nil, false))
}

// BenchmarkDirectPost is BenchmarkProxyPost straight to the backend.
func BenchmarkDirectPost(b *testing.B) {
	checkLeaks(b)
	srv := httptest.NewServer(okHandler)
	b.Cleanup(srv.Close)
	benchPost(b, newClient(b, srv.Listener.Addr().String(), "127.0.0.1", nil, false))
}

// benchPost POSTs two bytes with c for each iteration.
func benchPost(b *testing.B, c *http.Client) {
	b.ReportAllocs()
	for b.Loop() {
		res, err := c.Post("http://web.example.com/", "text/plain", strings.NewReader("hi"))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
}

func BenchmarkProxyParallel(b *testing.B) {
	f := newFixture(b, ingress.Options{})
	f.serve(b, "web.example.com", f.pod(b, 1, okHandler), f.pod(b, 2, okHandler))
	c := newClient(b, f.http, "127.0.0.1", nil, false)
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			doGet(b, c, "http://web.example.com/")
		}
	})
}

func BenchmarkDirect(b *testing.B) {
	checkLeaks(b)
	srv := httptest.NewServer(okHandler)
	b.Cleanup(srv.Close)
	benchGet(b, newClient(b, srv.Listener.Addr().String(), "127.0.0.1", nil, false), "http://web.example.com/")
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "web-1\n")
})

func benchGet(b *testing.B, c *http.Client, url string) {
	b.ReportAllocs()
	for b.Loop() {
		doGet(b, c, url)
	}
}

func doGet(b *testing.B, c *http.Client, url string) {
	res, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		b.Fatalf("status %d", res.StatusCode)
	}
}
