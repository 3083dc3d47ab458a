package cluster

import (
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ingressDoc is an Ingress document named ing with the given spec lines (indented by two
// spaces).
func ingressDoc(spec string) string {
	return "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: ing}\nspec:\n" + spec
}

// classDoc is an IngressClass document named c with the given spec lines.
func classDoc(spec string) string {
	return "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: c}\nspec:\n" + spec
}

// backend is a rule's path list with one path of the given type and path to web:80.
func onePath(pathType, path string) string {
	return "  rules:\n  - host: web.example\n    http:\n      paths:\n      - {path: " + path + ", pathType: " + pathType + ", backend: {service: {name: web, port: {number: 80}}}}\n"
}

var ingressCases = []struct {
	name  string
	in    string
	docs  int
	wants []string
}{
	// Good Ingresses.
	{name: "the fanout example", in: ingressDoc(`  ingressClassName: podnet
  rules:
  - host: foo.bar.com
    http:
      paths:
      - path: /foo
        pathType: Prefix
        backend: {service: {name: service1, port: {number: 4200}}}
      - path: /bar
        pathType: Prefix
        backend: {service: {name: service2, port: {number: 8080}}}
`), docs: 1},
	{name: "default backend only, port by name", in: ingressDoc("  defaultBackend: {service: {name: web, port: {name: http}}}\n"), docs: 1},
	{name: "wildcard host, TLS, every path type", in: ingressDoc(`  tls:
  - hosts: [a.example, "*.b.example"]
    secretName: tls-ab
  - {}
  rules:
  - host: "*.b.example"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: b, port: {number: 80}}}}
      - {path: /exact, pathType: Exact, backend: {service: {name: b, port: {number: 80}}}}
      - {pathType: ImplementationSpecific, backend: {service: {name: b, port: {number: 80}}}}
      - {path: /x, pathType: ImplementationSpecific, backend: {service: {name: b, port: {number: 80}}}}
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: b, port: {number: 80}}}}
`), docs: 1},
	{name: "legacy class annotation", in: strings.Replace(ingressDoc("  defaultBackend: {service: {name: web, port: {number: 80}}}\n"),
		"{name: ing}", "{name: ing, annotations: {kubernetes.io/ingress.class: podnet}}", 1), docs: 1},

	// Bad Ingresses, each naming its field.
	{name: "neither rules nor defaultBackend", in: ingressDoc("  tls: []\n"), wants: []string{
		"lab.yaml: document 1 (line 1): ingress.networking.k8s.io/ing: spec: Invalid value: either `defaultBackend` or `rules` must be specified"}},
	{name: "pathType missing", in: ingressDoc("  rules:\n  - http:\n      paths:\n      - {path: /, backend: {service: {name: web, port: {number: 80}}}}\n"), wants: []string{
		"ingress.networking.k8s.io/ing: spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified: Exact, Prefix or ImplementationSpecific"}},
	{name: "pathType unknown", in: ingressDoc(onePath("Regex", "/a")), wants: []string{
		`spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values: "Exact", "Prefix", "ImplementationSpecific"`}},
	{name: "Prefix path not absolute", in: ingressDoc(onePath("Prefix", "foo")), wants: []string{
		`ingress.networking.k8s.io/ing: spec.rules[0].http.paths[0].path: Invalid value: "foo": must be an absolute path`}},
	{name: "Exact path empty", in: ingressDoc(strings.Replace(onePath("Exact", "x"), "path: x, ", "", 1)), wants: []string{
		`spec.rules[0].http.paths[0].path: Invalid value: "": must be an absolute path`}},
	{name: "ImplementationSpecific path not absolute", in: ingressDoc(onePath("ImplementationSpecific", "foo")), wants: []string{
		`spec.rules[0].http.paths[0].path: Invalid value: "foo": must be an absolute path`}},
	{name: "path with a dot segment", in: ingressDoc(onePath("Prefix", "/a/../b/.")), wants: []string{
		`spec.rules[0].http.paths[0].path: Invalid value: "/a/../b/.": must not contain '/../'`,
		`spec.rules[0].http.paths[0].path: Invalid value: "/a/../b/.": cannot end with '/.'`}},
	{name: "path with an encoded slash", in: ingressDoc(onePath("Exact", "/a%2Fb")), wants: []string{
		`spec.rules[0].http.paths[0].path: Invalid value: "/a%2Fb": must not contain '%2F'`}},
	{name: "no paths", in: ingressDoc("  rules:\n  - host: a.example\n    http: {paths: []}\n"), wants: []string{
		`spec.rules[0].http.paths: Required value`}},
	{name: "bad hosts", in: ingressDoc(`  rules:
  - {host: Web.Example}
  - {host: "*"}
  - {host: "a.*.example"}
  - {host: 10.0.0.1}
  - {host: "foo..example"}
`), wants: []string{
		`ingress.networking.k8s.io/ing: spec.rules[0].host: Invalid value: "Web.Example": a lowercase RFC 1123 subdomain`,
		`ingress.networking.k8s.io/ing: spec.rules[1].host: Invalid value: "*": a wildcard DNS-1123 subdomain must start with '*.'`,
		`ingress.networking.k8s.io/ing: spec.rules[2].host: Invalid value: "a.*.example": a wildcard DNS-1123 subdomain must start with '*.'`,
		`ingress.networking.k8s.io/ing: spec.rules[3].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address`,
		`ingress.networking.k8s.io/ing: spec.rules[4].host: Invalid value: "foo..example": a lowercase RFC 1123 subdomain`}},
	{name: "bad backends", in: ingressDoc(`  defaultBackend: {service: {name: web}}
  rules:
  - http:
      paths:
      - {path: /a, pathType: Prefix, backend: {service: {name: web, port: {number: 80, name: http}}}}
      - {path: /b, pathType: Prefix, backend: {service: {port: {number: 0}}}}
      - {path: /c, pathType: Prefix, backend: {service: {name: 1web, port: {number: 70000}}}}
      - {path: /d, pathType: Prefix, backend: {service: {name: web, port: {name: Not_A_Name}}}}
      - {path: /e, pathType: Prefix, backend: {}}
      - {path: /f, pathType: Prefix, backend: {resource: {kind: Bucket, name: b}}}
      - {path: /g, pathType: Prefix, backend: {resource: {kind: Bucket, name: b}, service: {name: web, port: {number: 80}}}}
`), wants: []string{
		"ingress.networking.k8s.io/ing: spec.defaultBackend.service.port: Required value: port name or number is required",
		"ingress.networking.k8s.io/ing: spec.rules[0].http.paths[0].backend.service.port: Invalid value: cannot set both port name & port number",
		"ingress.networking.k8s.io/ing: spec.rules[0].http.paths[1].backend.service.name: Required value",
		"ingress.networking.k8s.io/ing: spec.rules[0].http.paths[1].backend.service.port: Required value: port name or number is required",
		`ingress.networking.k8s.io/ing: spec.rules[0].http.paths[2].backend.service.name: Invalid value: "1web": a DNS-1035 label`,
		"ingress.networking.k8s.io/ing: spec.rules[0].http.paths[2].backend.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive",
		`ingress.networking.k8s.io/ing: spec.rules[0].http.paths[3].backend.service.port.name: Invalid value: "Not_A_Name"`,
		"ingress.networking.k8s.io/ing: spec.rules[0].http.paths[4].backend: Invalid value: resource or service backend is required",
		"ingress.networking.k8s.io/ing: spec.rules[0].http.paths[5].backend.resource: Forbidden: resource backends are not supported by podnet: use a service backend",
		"ingress.networking.k8s.io/ing: spec.rules[0].http.paths[6].backend: Invalid value: cannot set both resource and service backends"}},
	{name: "bad TLS", in: ingressDoc(`  defaultBackend: {service: {name: web, port: {number: 80}}}
  tls:
  - hosts: [ok.example, "**.example", UPPER.example]
    secretName: Bad_Secret
`), wants: []string{
		`ingress.networking.k8s.io/ing: spec.tls[0].hosts[1]: Invalid value: "**.example"`,
		`ingress.networking.k8s.io/ing: spec.tls[0].hosts[2]: Invalid value: "UPPER.example"`,
		`ingress.networking.k8s.io/ing: spec.tls[0].secretName: Invalid value: "Bad_Secret": a lowercase RFC 1123 subdomain`}},
	{name: "bad ingressClassName", in: ingressDoc("  ingressClassName: Podnet!\n  defaultBackend: {service: {name: web, port: {number: 80}}}\n"), wants: []string{
		`ingress.networking.k8s.io/ing: spec.ingressClassName: Invalid value: "Podnet!": a lowercase RFC 1123 subdomain`}},
	{name: "class annotation disagrees with ingressClassName", in: strings.Replace(ingressDoc("  ingressClassName: podnet\n  defaultBackend: {service: {name: web, port: {number: 80}}}\n"),
		"{name: ing}", "{name: ing, annotations: {kubernetes.io/ingress.class: nginx}}", 1), wants: []string{
		"ingress.networking.k8s.io/ing: metadata.annotations[kubernetes.io/ingress.class]: Invalid value: \"nginx\": must match `ingressClassName` when both are specified"}},
	{name: "unknown field and wrong type", in: ingressDoc("  rules:\n  - hosts: [a]\n  - host: a.example\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: \"80\"}}}}]}\n"), wants: []string{
		`ingress.networking.k8s.io/ing: unknown field "spec.rules[0].hosts"`,
		`ingress.networking.k8s.io/ing: spec.rules[1].http.paths[0].backend.service.port.number: Invalid value: "80": must be an integer: remove the quotes`}},
	{name: "every bad Ingress of a stream at its position", in: ingressDoc("  defaultBackend: {service: {name: web, port: {number: 80}}}\n") + "---\n" +
		strings.Replace(ingressDoc(onePath("Prefix", "rel")), "{name: ing}", "{name: second}", 1), wants: []string{
		`lab.yaml: document 2 (line 7): ingress.networking.k8s.io/second: spec.rules[0].http.paths[0].path: Invalid value: "rel": must be an absolute path`}},

	// IngressClasses.
	{name: "class with parameters", in: classDoc("  controller: example.com/ingress\n  parameters: {apiGroup: k8s.example.com, kind: IngressParameters, name: external-lb}\n"), docs: 1},
	{name: "class with namespaced parameters", in: classDoc("  controller: example.com/ingress\n  parameters: {kind: ConfigMap, name: p, scope: Namespace, namespace: dev}\n"), docs: 1},
	{name: "class without controller", in: classDoc("  parameters: {kind: ConfigMap, name: p, scope: Namespace}\n"), wants: []string{
		"ingressclass.networking.k8s.io/c: spec.controller: Required value",
		"ingressclass.networking.k8s.io/c: spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"}},
	{name: "class with bad controller and parameters", in: classDoc("  controller: not-a-domain-path\n  parameters: {apiGroup: Bad_Group, kind: \"a/b\", namespace: dev, scope: World}\n"), wants: []string{
		`ingressclass.networking.k8s.io/c: spec.controller: Invalid value: "not-a-domain-path": must be a domain-prefixed path`,
		`ingressclass.networking.k8s.io/c: spec.parameters.apiGroup: Invalid value: "Bad_Group"`,
		`ingressclass.networking.k8s.io/c: spec.parameters.kind: Invalid value: "a/b"`,
		`ingressclass.networking.k8s.io/c: spec.parameters.name: Required value`,
		`ingressclass.networking.k8s.io/c: spec.parameters.scope: Unsupported value: "World": supported values: "Cluster", "Namespace"`}},
	{name: "cluster-scoped parameters with a namespace", in: classDoc("  controller: example.com/ingress\n  parameters: {kind: K, name: p, namespace: dev}\n"), wants: []string{
		"ingressclass.networking.k8s.io/c: spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"}},
	{name: "class in a namespace", in: strings.Replace(classDoc("  controller: example.com/ingress\n"), "{name: c}", "{name: c, namespace: dev}", 1), wants: []string{
		"ingressclass.networking.k8s.io/c: metadata.namespace: Forbidden: an IngressClass is not namespaced: remove metadata.namespace"}},
}

func TestDecodeIngresses(t *testing.T) {
	for _, tt := range ingressCases {
		t.Run(tt.name, func(t *testing.T) { checkDecode(t, tt.in, tt.docs, tt.wants) })
	}
}

func TestIngressDefaults(t *testing.T) {
	docs := checkDecode(t, ingressDoc("  defaultBackend: {service: {name: web, port: {number: 80}}}\n")+"---\n"+
		classDoc("  controller: example.com/ingress\n  parameters: {kind: K, name: p}\n"), 2, nil)
	ing := docs[0].Object.(*networkingv1.Ingress)
	if ing.Namespace != DefaultNamespace || ing.Spec.IngressClassName != nil {
		t.Errorf("defaulted Ingress: namespace %q, class %v", ing.Namespace, ing.Spec.IngressClassName)
	}
	c := docs[1].Object.(*networkingv1.IngressClass)
	if c.Namespace != "" || c.Spec.Parameters.Scope == nil || *c.Spec.Parameters.Scope != "Cluster" {
		t.Errorf("defaulted IngressClass: %+v", c)
	}
}

func TestPodnetIngressClass(t *testing.T) {
	c := PodnetIngressClass()
	if errs := Validate(c); len(errs) > 0 {
		t.Fatalf("the lab's IngressClass is invalid: %v", errs.ToAggregate())
	}
	if c.Name != "podnet" || c.Spec.Controller != "podnet.dev/ingress-controller" || !IsDefaultIngressClass(c) ||
		c.APIVersion != "networking.k8s.io/v1" || c.Kind != "IngressClass" {
		t.Errorf("PodnetIngressClass() = %+v", c)
	}
}

func TestServedByPodnet(t *testing.T) {
	class := func(name, controller string, def bool) *networkingv1.IngressClass {
		c := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.IngressClassSpec{Controller: controller}}
		if def {
			c.Annotations = map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}
		}
		return c
	}
	ing := func(className, annotation string) *networkingv1.Ingress {
		in := &networkingv1.Ingress{}
		if className != "" {
			in.Spec.IngressClassName = &className
		}
		if annotation != "" {
			in.Annotations = map[string]string{AnnotationIngressClass: annotation}
		}
		return in
	}
	podnet := PodnetIngressClass()
	nginx := class("nginx", "k8s.io/ingress-nginx", false)
	mine := class("mine", IngressController, false)
	nginxDefault := class("nginx", "k8s.io/ingress-nginx", true)
	tests := []struct {
		name    string
		ing     *networkingv1.Ingress
		classes []*networkingv1.IngressClass
		want    bool
	}{
		{"class podnet", ing("podnet", ""), []*networkingv1.IngressClass{podnet, nginx}, true},
		{"class podnet without the object (Kubernetes mode)", ing("podnet", ""), nil, true},
		{"no class: podnet is the default", ing("", ""), []*networkingv1.IngressClass{podnet, nginx}, true},
		{"no class: podnet and nginx are defaults", ing("", ""), []*networkingv1.IngressClass{podnet, nginxDefault}, true},
		{"no class, no default class", ing("", ""), []*networkingv1.IngressClass{class("podnet", IngressController, false), nginx}, false},
		{"no class, no class podnet", ing("", ""), []*networkingv1.IngressClass{nginx}, false},
		{"no class: nginx is the default", ing("", ""), []*networkingv1.IngressClass{class("podnet", IngressController, false), nginxDefault}, false},
		{"legacy annotation podnet", ing("", "podnet"), []*networkingv1.IngressClass{podnet}, true},
		{"legacy annotation nginx", ing("", "nginx"), []*networkingv1.IngressClass{podnet, nginx}, false},
		{"legacy annotation decides over the field", ing("podnet", "nginx"), []*networkingv1.IngressClass{podnet, nginx}, false},
		{"class nginx", ing("nginx", ""), []*networkingv1.IngressClass{podnet, nginx}, false},
		{"a user's class of podnet's controller is not podnet", ing("mine", ""), []*networkingv1.IngressClass{podnet, mine}, false},
		{"a class that does not exist", ing("gone", ""), []*networkingv1.IngressClass{podnet}, false},
	}
	for _, tt := range tests {
		if got := ServedByPodnet(tt.ing, tt.classes); got != tt.want {
			t.Errorf("%s: ServedByPodnet = %v, want %v", tt.name, got, tt.want)
		}
	}
}
