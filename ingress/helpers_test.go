package ingress_test

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podnet/podnet/ingress"
	"github.com/podnet/podnet/internal/leakcheck"
)

var (
	exact    = networkingv1.PathTypeExact
	prefix   = networkingv1.PathTypePrefix
	implSpec = networkingv1.PathTypeImplementationSpecific
	epoch    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// checkLeaks fails t if goroutines of the Controller, of HTTP servers or of
// HTTP client connections are left once its cleanups ran. Call it first.
func checkLeaks(t testing.TB) {
	leakcheck.AtCleanup(t, leakcheck.Options{Match: []string{
		"podnet/podnet/ingress.", "net/http.(*conn).serve", "net/http.(*persistConn)", "net/http.(*http2serverConn)",
		"net/http.(*Server).Serve",
	}})
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// newRouter is a Controller without listeners: a routing table.
func newRouter(t testing.TB) *ingress.Controller {
	t.Helper()
	c, err := ingress.New(ingress.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mkIngress makes an Ingress of class podnet created age minutes after epoch.
func mkIngress(ns, name string, age int, spec networkingv1.IngressSpec) *networkingv1.Ingress {
	class := ingress.ClassName
	if spec.IngressClassName == nil {
		spec.IngressClassName = &class
	}
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Minute))},
		Spec:       spec,
	}
}

func rule(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}
}

// path routes p to service svc port, a number ("80") or a name ("http").
func path(p string, pt networkingv1.PathType, svc, port string) networkingv1.HTTPIngressPath {
	pt2 := pt
	return networkingv1.HTTPIngressPath{Path: p, PathType: &pt2, Backend: svcBackend(svc, port)}
}

func svcBackend(svc, port string) networkingv1.IngressBackend {
	b := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc}}
	if n, err := strconv.Atoi(port); err == nil {
		b.Service.Port.Number = int32(n)
	} else {
		b.Service.Port.Name = port
	}
	return b
}

func defaultBackend(svc, port string) *networkingv1.IngressBackend {
	b := svcBackend(svc, port)
	return &b
}

// podAddr is the pod address of test endpoint i.
func podAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)}), 8080)
}

// svc is a Service with one port (number and name "http") and endpoints.
func svc(ns, name string, port int32, eps ...netip.AddrPort) ingress.Service {
	sp := ingress.ServicePort{Name: "http", Port: port}
	for _, ep := range eps {
		sp.Endpoints = append(sp.Endpoints, ingress.Endpoint{Addr: ep})
	}
	return ingress.Service{Namespace: ns, Name: name, Ports: []ingress.ServicePort{sp}}
}

// routeOf returns "backend" or "404" for a request.
func routeOf(c *ingress.Controller, host, p string) string {
	r, ok := c.Route(host, p)
	if !ok {
		return "404"
	}
	return r.Backend
}

func mustNoProblems(t testing.TB, ps []ingress.Problem) {
	t.Helper()
	for _, p := range ps {
		t.Errorf("unexpected problem: %s", p)
	}
}

func problemStrings(ps []ingress.Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s/%s %s: %s", p.Namespace, p.Name, p.Field, p.Message))
	}
	return out
}
