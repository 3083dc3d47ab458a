package ingress_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/podnet/podnet/ingress"
)

type pathSpec struct {
	pt   networkingv1.PathType
	path string
}

// TestPathTypeExamples is the table "Examples" of the Ingress concept page
// (kubernetes.io/docs/concepts/services-networking/ingress/#examples): each
// row's paths in one Ingress, the request, and which path matches (-1: none,
// so the default backend).
func TestPathTypeExamples(t *testing.T) {
	P := func(path string) pathSpec { return pathSpec{prefix, path} }
	E := func(path string) pathSpec { return pathSpec{exact, path} }
	for _, tc := range []struct {
		paths    []pathSpec
		requests []string
		want     int
	}{
		{[]pathSpec{P("/")}, []string{"/", "/foo", "/foo/bar/", "/a/b/c/d"}, 0},
		{[]pathSpec{E("/foo")}, []string{"/foo"}, 0},
		{[]pathSpec{E("/foo")}, []string{"/bar"}, -1},
		{[]pathSpec{E("/foo")}, []string{"/foo/"}, -1},
		{[]pathSpec{E("/foo/")}, []string{"/foo"}, -1},
		{[]pathSpec{P("/foo")}, []string{"/foo", "/foo/"}, 0},
		{[]pathSpec{P("/foo/")}, []string{"/foo", "/foo/"}, 0},
		{[]pathSpec{P("/aaa/bb")}, []string{"/aaa/bbb"}, -1},
		{[]pathSpec{P("/aaa/bbb")}, []string{"/aaa/bbb"}, 0},
		{[]pathSpec{P("/aaa/bbb/")}, []string{"/aaa/bbb"}, 0},    // ignores trailing slash
		{[]pathSpec{P("/aaa/bbb")}, []string{"/aaa/bbb/"}, 0},    // matches trailing slash
		{[]pathSpec{P("/aaa/bbb")}, []string{"/aaa/bbb/ccc"}, 0}, // matches subpath
		{[]pathSpec{P("/aaa/bbb")}, []string{"/aaa/bbbxyz"}, -1}, // does not match string prefix
		{[]pathSpec{P("/"), P("/aaa")}, []string{"/aaa/ccc"}, 1}, // matches /aaa prefix
		{[]pathSpec{P("/"), P("/aaa"), P("/aaa/bbb")}, []string{"/aaa/bbb"}, 2},
		{[]pathSpec{P("/"), P("/aaa"), P("/aaa/bbb")}, []string{"/ccc"}, 0},
		{[]pathSpec{P("/aaa")}, []string{"/ccc"}, -1},                         // uses default backend
		{[]pathSpec{P("/foo"), E("/foo")}, []string{"/foo"}, 1},               // prefers Exact
		{[]pathSpec{E("/foo"), P("/foo")}, []string{"/foo"}, 0},               // in either order
		{[]pathSpec{P("/foo"), E("/foo")}, []string{"/foo/", "/foo/x"}, 0},    // Exact does not match those
		{[]pathSpec{P("/foo"), P("/foo/bar")}, []string{"/foo/bar/baz"}, 1},   // longest wins
		{[]pathSpec{P("/foo/bar"), P("/foo")}, []string{"/foo/bar/baz"}, 0},   // in either order
		{[]pathSpec{E("/foo/bar"), P("/foo")}, []string{"/foo/bar"}, 0},       // a longer Exact over a shorter Prefix
		{[]pathSpec{P("/foo/bar"), E("/foo")}, []string{"/foo/bar/"}, 0},      //
		{[]pathSpec{P("/Foo")}, []string{"/foo"}, -1},                         // case-sensitive
		{[]pathSpec{pathSpec{implSpec, "/foo"}}, []string{"/foo/bar"}, 0},     // ImplementationSpecific is Prefix
		{[]pathSpec{pathSpec{implSpec, "/foo"}}, []string{"/foobar"}, -1},     //
		{[]pathSpec{pathSpec{implSpec, ""}}, []string{"/anything"}, 0},        // an empty one is "/"
		{[]pathSpec{P("/aaa")}, []string{"/aaa/../ccc", "/aaa/./../ccc"}, -1}, // matched on the clean path
		{[]pathSpec{P("/aaa/bbb")}, []string{"/aaa//bbb/x", "/aaa/./bbb"}, 0}, //
		{[]pathSpec{E("/aaa/")}, []string{"/aaa//", "/aaa/b/../"}, 0},         // the trailing slash survives cleaning
	} {
		var paths []networkingv1.HTTPIngressPath
		var names []string
		for i, p := range tc.paths {
			paths = append(paths, path(p.path, p.pt, fmt.Sprintf("svc%d", i), "80"))
			names = append(names, fmt.Sprintf("%s %q", p.pt, p.path))
		}
		c := newRouter(t)
		mustNoProblems(t, c.Update(ingress.Config{Ingresses: []*networkingv1.Ingress{
			mkIngress("default", "paths", 0, networkingv1.IngressSpec{
				DefaultBackend: defaultBackend("default-http-backend", "80"),
				Rules:          []networkingv1.IngressRule{rule("", paths...)},
			}),
		}}))
		want := "default/default-http-backend:80"
		if tc.want >= 0 {
			want = fmt.Sprintf("default/svc%d:80", tc.want)
		}
		for _, req := range tc.requests {
			if got := routeOf(c, "example.com", req); got != want {
				t.Errorf("paths %s, request %s: routed to %s, want %s", strings.Join(names, ", "), req, got, want)
			}
		}
	}
}

// TestSimpleFanout is the docs' "Simple fanout" example.
func TestSimpleFanout(t *testing.T) {
	c := newRouter(t)
	mustNoProblems(t, c.Update(ingress.Config{Ingresses: []*networkingv1.Ingress{
		mkIngress("default", "simple-fanout-example", 0, networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
			rule("foo.bar.com",
				path("/foo", prefix, "service1", "4200"),
				path("/bar", prefix, "service2", "8080")),
		}}),
	}}))
	for _, tc := range []struct{ host, path, want string }{
		{"foo.bar.com", "/foo", "default/service1:4200"},
		{"foo.bar.com", "/foo/index.html", "default/service1:4200"},
		{"foo.bar.com", "/bar", "default/service2:8080"},
		{"foo.bar.com:8080", "/bar/", "default/service2:8080"},
		{"FOO.Bar.com", "/bar", "default/service2:8080"},
		{"foo.bar.com", "/baz", "404"},
		{"foo.bar.com", "/", "404"},
		{"bar.foo.com", "/foo", "404"},
		{"", "/foo", "404"},
	} {
		if got := routeOf(c, tc.host, tc.path); got != tc.want {
			t.Errorf("%s%s: routed to %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
}

// TestNameBasedVirtualHosting is the docs' "Name based virtual hosting"
// examples: two hosts, then a third rule without host catching the rest.
func TestNameBasedVirtualHosting(t *testing.T) {
	c := newRouter(t)
	mustNoProblems(t, c.Update(ingress.Config{Ingresses: []*networkingv1.Ingress{
		mkIngress("default", "name-virtual-host-ingress", 0, networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
			rule("foo.bar.com", path("/", prefix, "service1", "80")),
			rule("bar.foo.com", path("/", prefix, "service2", "80")),
		}}),
	}}))
	for _, tc := range []struct{ host, path, want string }{
		{"foo.bar.com", "/", "default/service1:80"},
		{"bar.foo.com", "/x/y", "default/service2:80"},
		{"other.com", "/", "404"},
		{"", "/", "404"},
	} {
		if got := routeOf(c, tc.host, tc.path); got != tc.want {
			t.Errorf("%s%s: routed to %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}

	mustNoProblems(t, c.Update(ingress.Config{Ingresses: []*networkingv1.Ingress{
		mkIngress("default", "name-virtual-host-ingress-no-third-host", 0, networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
			rule("first.bar.com", path("/", prefix, "service1", "80")),
			rule("second.bar.com", path("/", prefix, "service2", "80")),
			rule("", path("/", prefix, "service3", "80")),
		}}),
	}}))
	for _, tc := range []struct{ host, path, want string }{
		{"first.bar.com", "/", "default/service1:80"},
		{"second.bar.com", "/a", "default/service2:80"},
		{"third.bar.com", "/", "default/service3:80"},
		{"", "/", "default/service3:80"},
		{"10.0.0.1:80", "/", "default/service3:80"},
	} {
		if got := routeOf(c, tc.host, tc.path); got != tc.want {
			t.Errorf("%s%s: routed to %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
}

// TestHostPrecedence: the docs' "Hostname wildcards" table (a wildcard
// covers exactly one DNS label), then exact host before wildcard before no
// host, each taken only when one of its paths matches, then the default
// backend.
func TestHostPrecedence(t *testing.T) {
	c := newRouter(t)
	mustNoProblems(t, c.Update(ingress.Config{Ingresses: []*networkingv1.Ingress{
		mkIngress("default", "ingress-wildcard-host", 0, networkingv1.IngressSpec{
			DefaultBackend: defaultBackend("fallback", "80"),
			Rules: []networkingv1.IngressRule{
				rule("foo.bar.com", path("/bar", prefix, "service1", "80")),
				rule("*.foo.com", path("/foo", prefix, "service2", "80")),
				rule("exact.foo.com", path("/only", exact, "service3", "80")),
				rule("", path("/", prefix, "service4", "80"), path("/foo/x", prefix, "service5", "80")),
			},
		}),
	}}))
	for _, tc := range []struct{ host, path, want string }{
		{"foo.bar.com", "/bar", "default/service1:80"},
		{"bar.foo.com", "/foo", "default/service2:80"},     // shared suffix
		{"baz.bar.foo.com", "/foo", "default/service4:80"}, // a wildcard covers one label: falls to the host-less rule
		{"foo.com", "/foo", "default/service4:80"},         // nor the bare domain
		{"exact.foo.com", "/only", "default/service3:80"},  // exact host first
		{"exact.foo.com", "/foo", "default/service2:80"},   // then the wildcard
		{"exact.foo.com", "/foo/x", "default/service2:80"}, // a matching wildcard wins over a longer host-less path
		{"a.foo.com", "/other", "default/service4:80"},
		{"A.FOO.COM.", "/foo", "default/service2:80"},
		{"a.foo.com:443", "/foo", "default/service2:80"},
	} {
		if got := routeOf(c, tc.host, tc.path); got != tc.want {
			t.Errorf("%s%s: routed to %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}

	// Without the catch-all rule, what nothing matches goes to the default backend.
	mustNoProblems(t, c.Update(ingress.Config{Ingresses: []*networkingv1.Ingress{
		mkIngress("default", "ingress-wildcard-host", 0, networkingv1.IngressSpec{
			DefaultBackend: defaultBackend("fallback", "80"),
			Rules:          []networkingv1.IngressRule{rule("*.foo.com", path("/foo", prefix, "service2", "80"))},
		}),
	}}))
	for _, tc := range []struct{ host, path, want string }{
		{"bar.foo.com", "/foo", "default/service2:80"},
		{"bar.foo.com", "/", "default/fallback:80"},
		{"baz.bar.foo.com", "/foo", "default/fallback:80"},
	} {
		if got := routeOf(c, tc.host, tc.path); got != tc.want {
			t.Errorf("%s%s: routed to %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
}

// TestMerge: several Ingresses on one host merge their paths; on the same
// host, path and type the oldest wins (creation time, then namespace/name)
// and the other gets a problem; so does a younger default backend.
func TestMerge(t *testing.T) {
	c := newRouter(t)
	ps := c.Update(ingress.Config{Ingresses: []*networkingv1.Ingress{
		mkIngress("b", "young", 5, networkingv1.IngressSpec{
			DefaultBackend: defaultBackend("young-default", "80"),
			Rules: []networkingv1.IngressRule{rule("shop.example.com",
				path("/cart", prefix, "cart", "80"),
				path("/api/", prefix, "api-young", "80"), // the same as "/api" once the slash is dropped
				path("/api/v2", exact, "api-v2", "80"),
			)},
		}),
		mkIngress("a", "old", 1, networkingv1.IngressSpec{
			DefaultBackend: defaultBackend("old-default", "80"),
			Rules: []networkingv1.IngressRule{rule("shop.example.com",
				path("/api", prefix, "api-old", "80"),
				path("/", prefix, "web", "http"),
			)},
		}),
		mkIngress("a", "same-age-z", 5, networkingv1.IngressSpec{ // same age as b/young: namespace "a" is older
			Rules: []networkingv1.IngressRule{rule("shop.example.com", path("/cart", prefix, "cart-z", "80"))},
		}),
		mkIngress("a", "same-backend", 9, networkingv1.IngressSpec{ // a duplicate to the same backend is no conflict
			Rules: []networkingv1.IngressRule{rule("shop.example.com", path("/", prefix, "web", "http"))},
		}),
	}})
	want := []string{
		`b/young spec.defaultBackend: ignored: the older Ingress a/old sets the default backend (a/old-default:80)`,
		`b/young spec.rules[0].http.paths[0]: ignored: host shop.example.com's path /cart (Prefix) is already routed by a/same-age-z spec.rules[0].http.paths[0] to a/cart-z:80`,
		`b/young spec.rules[0].http.paths[1]: ignored: host shop.example.com's path /api (Prefix) is already routed by a/old spec.rules[0].http.paths[0] to a/api-old:80`,
	}
	if got := problemStrings(ps); !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, tc := range []struct{ host, path, want string }{
		{"shop.example.com", "/api/v1", "a/api-old:80"},
		{"shop.example.com", "/api/v2", "b/api-v2:80"},
		{"shop.example.com", "/api/v2/x", "a/api-old:80"},
		{"shop.example.com", "/cart", "a/cart-z:80"},
		{"shop.example.com", "/", "a/web:http"},
		{"other.example.com", "/", "a/old-default:80"},
	} {
		if got := routeOf(c, tc.host, tc.path); got != tc.want {
			t.Errorf("%s%s: routed to %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
	r, _ := c.Route("shop.example.com", "/api/v2")
	if r != (ingress.Route{Ingress: "b/young", Field: "spec.rules[0].http.paths[2]", Backend: "b/api-v2:80"}) {
		t.Errorf("Route = %+v", r)
	}
}

// TestClass: the annotation decides when present, then ingressClassName,
// then whether podnet is the default class.
func TestClass(t *testing.T) {
	other, ours := "nginx", ingress.ClassName
	mk := func(name string, class *string, annotation string) *networkingv1.Ingress {
		ing := mkIngress("default", name, 0, networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
			rule(name+".example.com", path("/", prefix, name, "80")),
		}})
		ing.Spec.IngressClassName = class
		if annotation != "" {
			ing.Annotations = map[string]string{"kubernetes.io/ingress.class": annotation}
		}
		return ing
	}
	ings := []*networkingv1.Ingress{
		mk("named", &ours, ""),
		mk("other", &other, ""),
		mk("unset", nil, ""),
		mk("annotated", nil, "podnet"),
		mk("annotated-other", &ours, "nginx"),
		nil, // ignored
	}
	for _, def := range []bool{false, true} {
		c := newRouter(t)
		mustNoProblems(t, c.Update(ingress.Config{Ingresses: ings, DefaultClass: def}))
		for name, want := range map[string]bool{"named": true, "other": false, "unset": def, "annotated": true, "annotated-other": false} {
			if _, ok := c.Route(name+".example.com", "/"); ok != want {
				t.Errorf("DefaultClass %v: Ingress %s served: %v, want %v", def, name, ok, want)
			}
		}
	}
}

// TestProblems: each invalid part of an Ingress is reported by field and
// left out; everything else is served.
func TestProblems(t *testing.T) {
	bad := func(p networkingv1.HTTPIngressPath, f func(*networkingv1.HTTPIngressPath)) networkingv1.HTTPIngressPath {
		f(&p)
		return p
	}
	c := newRouter(t)
	ps := c.Update(ingress.Config{Ingresses: []*networkingv1.Ingress{
		mkIngress("default", "bad", 0, networkingv1.IngressSpec{
			TLS: []networkingv1.IngressTLS{{Hosts: []string{"good.example.com"}, SecretName: "foo"}},
			Rules: []networkingv1.IngressRule{
				rule("good.example.com",
					path("/ok", prefix, "web", "80"),
					path("foo", prefix, "web", "80"),
					path("/a//b", exact, "web", "80"),
					path("/a/../b", prefix, "web", "80"),
					path("/a/..", prefix, "web", "80"),
					path("/a%2Fb", prefix, "web", "80"),
					path(`/api(/|$)(.*)`, implSpec, "web", "80"),
					path("/typo", "Regex", "web", "80"),
					bad(path("/nil-type", prefix, "web", "80"), func(p *networkingv1.HTTPIngressPath) { p.PathType = nil }),
					bad(path("/resource", prefix, "web", "80"), func(p *networkingv1.HTTPIngressPath) {
						p.Backend = networkingv1.IngressBackend{Resource: &corev1.TypedLocalObjectReference{Kind: "StorageBucket", Name: "static"}}
					}),
					bad(path("/noport", prefix, "web", "80"), func(p *networkingv1.HTTPIngressPath) { p.Backend.Service.Port.Number = 0 }),
					bad(path("/both", prefix, "web", "80"), func(p *networkingv1.HTTPIngressPath) { p.Backend.Service.Port.Name = "http" }),
					bad(path("/noname", prefix, "", "80"), func(*networkingv1.HTTPIngressPath) {}),
					bad(path("/bignum", prefix, "web", "80"), func(p *networkingv1.HTTPIngressPath) { p.Backend.Service.Port.Number = 70000 }),
				),
				rule("10.0.0.1", path("/", prefix, "web", "80")),
				rule("bad_host.example.com", path("/", prefix, "web", "80")),
				rule("*.*.example.com", path("/", prefix, "web", "80")),
			},
		}),
		mkIngress("default", "fine", 1, networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
			rule("fine.example.com", path("/", prefix, "missing-service", "80")),
		}}),
	}})
	want := []string{
		`default/bad spec.tls[0].secretName: Secret default/foo not found`,
		`default/bad spec.rules[0].http.paths[1].path: must start with / (is "foo")`,
		`default/bad spec.rules[0].http.paths[2].path: "/a//b" must not contain "//"`,
		`default/bad spec.rules[0].http.paths[3].path: "/a/../b" must not contain "/../"`,
		`default/bad spec.rules[0].http.paths[4].path: "/a/.." must not end with "/.."`,
		`default/bad spec.rules[0].http.paths[5].path: "/a%2Fb" must not contain "%2F"`,
		`default/bad spec.rules[0].http.paths[6].path: "/api(/|$)(.*)": regular expressions are not supported (ImplementationSpecific is matched as Prefix)`,
		`default/bad spec.rules[0].http.paths[7].pathType: unsupported value "Regex": must be Exact, Prefix or ImplementationSpecific`,
		`default/bad spec.rules[0].http.paths[8].pathType: must be set: Exact, Prefix or ImplementationSpecific`,
		`default/bad spec.rules[0].http.paths[9].backend.resource: resource backends are not supported; use a Service`,
		`default/bad spec.rules[0].http.paths[10].backend.service.port: must set number or name`,
		`default/bad spec.rules[0].http.paths[11].backend.service.port: set number or name, not both`,
		`default/bad spec.rules[0].http.paths[12].backend.service.name: must be set`,
		`default/bad spec.rules[0].http.paths[13].backend.service.port.number: 70000 is not a port number (1-65535)`,
		`default/bad spec.rules[1].host: "10.0.0.1" must be a DNS name, not an IP address`,
		`default/bad spec.rules[2].host: invalid host "bad_host.example.com": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
		`default/bad spec.rules[3].host: invalid host "*.*.example.com": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
	}
	if got := problemStrings(ps); !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := routeOf(c, "good.example.com", "/ok/x"); got != "default/web:80" {
		t.Errorf("the valid path of the bad Ingress: routed to %s", got)
	}
	if got := routeOf(c, "fine.example.com", "/"); got != "default/missing-service:80" {
		t.Errorf("a route to a missing Service is kept (503 at request time): routed to %s", got)
	}
}
