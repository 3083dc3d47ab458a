package ingress_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/podnet/podnet/ingress"
)

// TestBackendStats: responses are counted by backend (the Service port as the Ingress names it)
// and status class, on the fast path and on net/http's, the Controller's own answers included;
// requests no rule matched count under the empty backend. A backend keeps its counters across
// Updates that keep it, and loses them when it leaves the table.
func TestBackendStats(t *testing.T) {
	f := newFixture(t, ingress.Options{})
	web := f.pod(t, 1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/teapot" {
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	update := func(withEmpty bool) {
		t.Helper()
		paths := []networkingv1.HTTPIngressPath{path("/", prefix, "web", "http")}
		if withEmpty {
			paths = append(paths, path("/empty", prefix, "empty", "80"))
		}
		mustNoProblems(t, f.Update(ingress.Config{
			Ingresses: []*networkingv1.Ingress{mkIngress("default", "web", 0, networkingv1.IngressSpec{
				Rules: []networkingv1.IngressRule{rule("web.example.com", paths...)},
			})},
			Services: []ingress.Service{svc("default", "web", 80, web), svc("default", "empty", 80)},
		}))
	}
	update(true)
	c := newClient(t, f.http, "127.0.0.1", nil, false)
	for _, r := range []struct {
		method, url string
		code        int
	}{
		{"GET", "http://web.example.com/", 200},       // the fast path
		{"POST", "http://web.example.com/", 200},      // with a body: net/http's
		{"GET", "http://web.example.com/teapot", 418}, // the backend's 4xx
		{"GET", "http://web.example.com/empty", 503},  // the Controller's, for the backend
		{"POST", "http://web.example.com/empty", 503}, // the same on net/http's path
		{"GET", "http://other.example.com/", 404},     // no rule
	} {
		var body io.Reader
		if r.method == "POST" {
			body = strings.NewReader("a body")
		}
		if code, _ := get(t, c, r.method, r.url, body); code != r.code {
			t.Fatalf("%s %s: %d, want %d", r.method, r.url, code, r.code)
		}
	}
	want := []ingress.BackendStats{
		{Backend: "", Responses: [6]uint64{4: 1}},
		{Backend: "default/empty:80", Responses: [6]uint64{5: 2}},
		{Backend: "default/web:http", Responses: [6]uint64{2: 2, 4: 1}},
	}
	if got := f.Stats().Backends; !slices.Equal(got, want) {
		t.Errorf("backends %+v, want %+v", got, want)
	}
	update(false)
	want = slices.Delete(want, 1, 2)
	if got := f.Stats().Backends; !slices.Equal(got, want) {
		t.Errorf("after an Update without default/empty: backends %+v, want %+v", got, want)
	}
}
