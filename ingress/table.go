package ingress

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// table is an immutable routing table: Update builds one and swaps it in;
// requests and TLS handshakes load it once and never lock.
type table struct {
	exact     map[string]*hostRoutes // by lower-case host
	wildcard  map[string]*hostRoutes // "*.example.com" under "example.com"
	any       *hostRoutes            // rules without host; nil if none
	def       *route                 // the oldest Ingress's defaultBackend; nil if none
	certs     map[string]*tls.Certificate
	wildCerts map[string]*tls.Certificate // "*.example.com" under "example.com"
}

// hostRoutes are the paths of one host, merged from all Ingresses.
type hostRoutes struct {
	exact  map[string]*route // Exact paths
	prefix map[string]*route // Prefix and ImplementationSpecific paths without their trailing "/" ("/" stays "/")
}

// route is a rule's path, or a default backend, and where it goes.
type route struct {
	ingress  string // namespace/name
	field    string // "spec.rules[0].http.paths[1]" or "spec.defaultBackend"
	host     string // as the rule has it: "", "a.example.com", "*.example.com"
	path     string // as written
	pathType networkingv1.PathType
	backend  *backend
}

// backend is a Service port and its ready endpoints, shared by every route
// to it in one table.
type backend struct {
	name        string   // "namespace/service:port" as the Ingress names the port
	eps         []string // "ip:port" of the ready endpoints
	unavailable string   // the 503 message when eps is empty
	proxy       *httputil.ReverseProxy
	turn        atomic.Uint64    // round-robin position
	ctr         *backendCounters // kept across Updates while the backend stays
}

// backendCounters count the responses to the requests routed to one
// backend, by status class (index 1 to 5), as Controller.responses does.
type backendCounters struct {
	responses [6]atomic.Uint64
}

// Update replaces the routing table with one built from cfg, atomically:
// requests already routed finish on the backends they were given, and no
// client connection is closed. It returns what is wrong with the Ingresses
// of class "podnet", oldest Ingress first; the parts at fault are left out
// and the rest is served. A problem is logged once, when it first appears.
//
// A missing Service, port or endpoint is not a problem of the Ingress: the
// route is kept and answers 503 until the Service is there.
func (c *Controller) Update(cfg Config) []Problem {
	c.updateMu.Lock()
	defer c.updateMu.Unlock()
	b := &builder{
		c:         c,
		t:         &table{exact: map[string]*hostRoutes{}, wildcard: map[string]*hostRoutes{}, certs: map[string]*tls.Certificate{}, wildCerts: map[string]*tls.Certificate{}},
		services:  make(map[string]*Service, len(cfg.Services)),
		secrets:   secretIndex(cfg.Secrets),
		backends:  map[string]*backend{},
		certOwner: map[string]certOwner{},
		used:      map[string]bool{},
	}
	for i := range cfg.Services {
		s := &cfg.Services[i]
		b.services[s.Namespace+"/"+s.Name] = s
	}
	var ings []*networkingv1.Ingress
	for _, ing := range cfg.Ingresses {
		if ing != nil && isOurs(ing, cfg.DefaultClass) {
			ings = append(ings, ing)
		}
	}
	slices.SortStableFunc(ings, olderFirst)
	for _, ing := range ings {
		b.addIngress(ing)
	}
	c.table.Store(b.t)
	ctrs := make(map[string]*backendCounters, len(b.backends))
	for name, be := range b.backends {
		ctrs[name] = be.ctr
	}
	c.backendCtrs.Store(&ctrs) // the counters of backends gone go with them

	for k := range c.certs {
		if !b.used[k] {
			delete(c.certs, k)
		}
	}
	seen := make(map[Problem]bool, len(b.problems))
	for _, p := range b.problems {
		seen[p] = true
		if !c.reported[p] {
			c.log.Warn("ingress problem", "ingress", p.Namespace+"/"+p.Name, "field", p.Field, "problem", p.Message)
		}
	}
	c.reported = seen
	return b.problems
}

// backendCounters returns the counters of the backend named name in the
// table in use, or new ones. The caller holds updateMu.
func (c *Controller) backendCounters(name string) *backendCounters {
	if m := c.backendCtrs.Load(); m != nil {
		if ctr := (*m)[name]; ctr != nil {
			return ctr
		}
	}
	return &backendCounters{}
}

// isOurs reports whether ing is of class "podnet": the legacy annotation
// decides when it is present, then spec.ingressClassName, then whether
// "podnet" is the default class.
func isOurs(ing *networkingv1.Ingress, defaultClass bool) bool {
	if v, ok := ing.Annotations["kubernetes.io/ingress.class"]; ok {
		return v == ClassName
	}
	if ing.Spec.IngressClassName != nil {
		return *ing.Spec.IngressClassName == ClassName
	}
	return defaultClass
}

// olderFirst orders Ingresses by creation time, then namespace and name: the
// order in which conflicts are decided (the first wins).
func olderFirst(a, b *networkingv1.Ingress) int {
	return cmp.Or(a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time),
		cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

type certOwner struct {
	ingress, secret string
}

type builder struct {
	c         *Controller
	t         *table
	services  map[string]*Service
	secrets   map[string]secretData
	backends  map[string]*backend
	certOwner map[string]certOwner // TLS host as written → the first to claim it
	used      map[string]bool      // certificate cache keys used by this table
	problems  []Problem
	ing       *networkingv1.Ingress // being added
}

func (b *builder) problem(field, format string, args ...any) {
	b.problems = append(b.problems, Problem{Namespace: b.ing.Namespace, Name: b.ing.Name, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (b *builder) addIngress(ing *networkingv1.Ingress) {
	b.ing = ing
	id := ing.Namespace + "/" + ing.Name
	for i := range ing.Spec.TLS {
		b.addTLS(id, fmt.Sprintf("spec.tls[%d]", i), &ing.Spec.TLS[i])
	}
	if db := ing.Spec.DefaultBackend; db != nil {
		const field = "spec.defaultBackend"
		if be := b.backend(field, db); be != nil {
			if d := b.t.def; d != nil && d.backend != be {
				b.problem(field, "ignored: the older Ingress %s sets the default backend (%s)", d.ingress, d.backend.name)
			} else if d == nil {
				b.t.def = &route{ingress: id, field: field, backend: be}
			}
		}
	}
	for i := range ing.Spec.Rules {
		rule := &ing.Spec.Rules[i]
		field := fmt.Sprintf("spec.rules[%d]", i)
		host := strings.ToLower(rule.Host)
		if host != "" {
			if msg := checkHost(host); msg != "" {
				b.problem(field+".host", "%s", msg)
				continue
			}
		}
		if rule.HTTP == nil {
			continue
		}
		for j := range rule.HTTP.Paths {
			p := &rule.HTTP.Paths[j]
			pf := fmt.Sprintf("%s.http.paths[%d]", field, j)
			key, ok := b.checkPath(pf, p)
			if !ok {
				continue
			}
			be := b.backend(pf+".backend", &p.Backend)
			if be == nil {
				continue
			}
			b.addRoute(&route{ingress: id, field: pf, host: host, path: p.Path, pathType: *p.PathType, backend: be}, key)
		}
	}
}

// addRoute adds r under its host; the first route of a host, path and type
// stays, and a later one to another backend is a problem.
func (b *builder) addRoute(r *route, key string) {
	hr := b.hostRoutes(r.host)
	m := hr.prefix
	if r.pathType == networkingv1.PathTypeExact {
		m = hr.exact
	}
	if old := m[key]; old != nil {
		if old.backend != r.backend {
			b.problem(r.field, "ignored: %s path %s (%s) is already routed by %s %s to %s",
				hostName(r.host), old.path, old.pathType, old.ingress, old.field, old.backend.name)
		}
		return
	}
	m[key] = r
}

// hostRoutes returns the routes of a rule's host, made on first use.
func (b *builder) hostRoutes(host string) *hostRoutes {
	if host == "" {
		if b.t.any == nil {
			b.t.any = &hostRoutes{exact: map[string]*route{}, prefix: map[string]*route{}}
		}
		return b.t.any
	}
	m, key := b.t.exact, host
	if strings.HasPrefix(host, "*.") {
		m, key = b.t.wildcard, host[2:]
	}
	hr := m[key]
	if hr == nil {
		hr = &hostRoutes{exact: map[string]*route{}, prefix: map[string]*route{}}
		m[key] = hr
	}
	return hr
}

func hostName(h string) string {
	if h == "" {
		return "any host's"
	}
	return "host " + h + "'s"
}

// checkHost validates a rule's or a TLS entry's host as the API server does.
func checkHost(host string) string {
	if _, err := netip.ParseAddr(host); err == nil {
		return fmt.Sprintf("%q must be a DNS name, not an IP address", host)
	}
	var errs []string
	if strings.HasPrefix(host, "*.") {
		errs = validation.IsWildcardDNS1123Subdomain(host)
	} else {
		errs = validation.IsDNS1123Subdomain(host)
	}
	if len(errs) > 0 {
		return fmt.Sprintf("invalid host %q: %s", host, strings.Join(errs, "; "))
	}
	return ""
}

// checkPath validates a path and returns its key in hostRoutes.
func (b *builder) checkPath(field string, p *networkingv1.HTTPIngressPath) (string, bool) {
	if p.PathType == nil {
		b.problem(field+".pathType", "must be set: Exact, Prefix or ImplementationSpecific")
		return "", false
	}
	path := p.Path
	switch *p.PathType {
	case networkingv1.PathTypeExact, networkingv1.PathTypePrefix:
	case networkingv1.PathTypeImplementationSpecific:
		if path == "" {
			path = "/"
		}
		if i := strings.IndexAny(path, `^$()[]{}|?*+\`); i >= 0 {
			b.problem(field+".path", "%q: regular expressions are not supported (ImplementationSpecific is matched as Prefix)", path)
			return "", false
		}
	default:
		b.problem(field+".pathType", "unsupported value %q: must be Exact, Prefix or ImplementationSpecific", *p.PathType)
		return "", false
	}
	if !strings.HasPrefix(path, "/") {
		b.problem(field+".path", "must start with / (is %q)", path)
		return "", false
	}
	for _, bad := range []string{"//", "/./", "/../", "%2f", "%2F"} {
		if strings.Contains(path, bad) {
			b.problem(field+".path", "%q must not contain %q", path, bad)
			return "", false
		}
	}
	for _, bad := range []string{"/..", "/."} {
		if strings.HasSuffix(path, bad) {
			b.problem(field+".path", "%q must not end with %q", path, bad)
			return "", false
		}
	}
	if *p.PathType == networkingv1.PathTypeExact || path == "/" {
		return path, true
	}
	return strings.TrimSuffix(path, "/"), true
}

// backend resolves an Ingress backend against the Services, or reports why
// it cannot be served and returns nil.
func (b *builder) backend(field string, ib *networkingv1.IngressBackend) *backend {
	switch {
	case ib.Service == nil && ib.Resource != nil:
		b.problem(field+".resource", "resource backends are not supported; use a Service")
		return nil
	case ib.Service == nil:
		b.problem(field+".service", "must be set")
		return nil
	case ib.Service.Name == "":
		b.problem(field+".service.name", "must be set")
		return nil
	}
	port := ib.Service.Port
	var portKey string
	switch {
	case port.Number != 0 && port.Name != "":
		b.problem(field+".service.port", "set number or name, not both")
		return nil
	case port.Name != "":
		portKey = port.Name
	case port.Number > 0 && port.Number <= 65535:
		portKey = fmt.Sprint(port.Number)
	case port.Number != 0:
		b.problem(field+".service.port.number", "%d is not a port number (1-65535)", port.Number)
		return nil
	default:
		b.problem(field+".service.port", "must set number or name")
		return nil
	}
	svcKey := b.ing.Namespace + "/" + ib.Service.Name
	name := svcKey + ":" + portKey
	if be := b.backends[name]; be != nil {
		return be
	}
	be := &backend{name: name, ctr: b.c.backendCounters(name)}
	switch svc := b.services[svcKey]; {
	case svc == nil:
		be.unavailable = "Service " + svcKey + " not found"
	default:
		i := slices.IndexFunc(svc.Ports, func(sp ServicePort) bool {
			if port.Name != "" {
				return sp.Name == port.Name
			}
			return sp.Port == port.Number
		})
		if i < 0 {
			be.unavailable = "Service " + svcKey + " has no port " + portKey
			break
		}
		for _, ep := range svc.Ports[i].Endpoints {
			if ep.Addr.IsValid() {
				be.eps = append(be.eps, ep.Addr.String())
			}
		}
		slices.Sort(be.eps)
		be.eps = slices.Compact(be.eps) // a duplicate endpoint counts once
		if len(be.eps) == 0 {
			be.unavailable = "no ready endpoint for " + name
		}
	}
	be.proxy = b.c.newReverseProxy(be)
	b.backends[name] = be
	return be
}
